# Two commands do all the set-up: `make lab` (JupyterLab on the tutorial) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: lab test bench clean

# PyTorch for the torch cells of the tests and of notebook 05 (the cell backward of torch code).
TORCH  ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[lab,test]" "$(TORCH)"
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
