# Two commands do all the set-up: `make lab` (JupyterLab on the tutorial) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: lab test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[lab,test]"
	touch $@

# JupyterLab refuses to run as root unless told (containers often run as root).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(VENV)/.installed  ## JupyterLab on the tutorial notebook
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks/01_backprop_trick.ipynb

test: $(VENV)/.installed  ## the whole test suite, notebooks included
	$(BIN)/python -m pytest

bench: $(VENV)/.installed  ## every benchmark, written to benchmarks/RESULTS.md
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis artifacts
