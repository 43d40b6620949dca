"""Binder's environment (``binder/``) and the nbval sanitize file, checked as Binder and CI use them.

The fast tests read the files: every requirement pinned, covering what the package needs; a
runtime the package supports; a ``postBuild`` Binder can execute; a sanitize file nbval reads
whole and that removes what varies between machines and nothing else.

``test_notebooks_pass_nbval_as_binder_builds_them`` (marked ``binder``) builds the environment as
Binder would, without Docker: a fresh virtual environment from ``binder/requirements.txt``,
``binder/postBuild`` run in a copy of the repository with that environment first on ``PATH``, then
every notebook under strict nbval in it. It installs from the package index (pip's cache is
reused), so it runs only under ``CI=true`` or ``EINSUM_MAGIC_BINDER=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
BINDER = REPO / "binder"
NOTEBOOKS = REPO / "notebooks"
SANITIZE = REPO / "einsum_magic" / "nbval_sanitize.cfg"

#: What Binder's image must hold besides the package's own dependencies.
FRONT_END = ("ipykernel", "jupyterlab", "jupyterlab-widgets", "nbval")
#: The package's extras the notebooks use.
EXTRAS = ("jax", "widgets")

BUILD_TIMEOUT_S = 1800
NBVAL_TIMEOUT_S = 900
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "artifacts", "__pycache__", ".hypothesis",
                                     ".pytest_cache", "*.egg-info", "build", "dist",
                                     ".ipynb_checkpoints", ".benchmarks", ".whl",
                                     "*.so")     # built here: Binder builds its own


def pins() -> dict[str, Requirement]:
    """binder/requirements.txt as {canonical name: requirement}."""
    found = {}
    for line in (BINDER / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def pinned_version(requirement: Requirement) -> Version | None:
    """The version of an exact ``name==X`` pin, else None."""
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
        return Version(specs[0].version)
    return None


def runtime_version() -> tuple[int, int]:
    """(3, 11) for a runtime.txt that says ``python-3.11``."""
    text = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert match, f"binder/runtime.txt should read python-X.Y, not {text!r}"
    return int(match[1]), int(match[2])


# --------------------------------------------------------------------------- the files, read

def test_every_requirement_is_pinned():
    loose = [str(r) for r in pins().values() if pinned_version(r) is None or r.marker or r.url]
    assert pins() and not loose, f"binder/requirements.txt should pin each package with ==: {loose}"


def test_requirements_cover_the_package_and_the_front_end():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needed = [Requirement(r) for r in project["dependencies"]]
    for extra in EXTRAS:
        needed += [Requirement(r) for r in project["optional-dependencies"][extra]]
    have = pins()
    missing = sorted({canonicalize_name(r.name) for r in needed} - set(have)
                     | set(map(canonicalize_name, FRONT_END)) - set(have))
    assert not missing, f"binder/requirements.txt lacks {missing}"
    for requirement in needed:
        version = pinned_version(have[canonicalize_name(requirement.name)])
        assert version in requirement.specifier, (
            f"binder/requirements.txt pins {requirement.name}=={version}, outside pyproject's {requirement}")


def test_runtime_is_a_python_the_package_supports():
    tomllib = pytest.importorskip("tomllib")
    supported = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    major, minor = runtime_version()
    assert Version(f"{major}.{minor}") in supported


def test_postbuild_is_an_executable_strict_bash_script():
    script = BINDER / "postBuild"
    lines = script.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/bin/bash"
    assert any(re.fullmatch(r"set -[a-z]*e[a-z]*( .*)?", line.strip()) for line in lines), "no set -e"
    assert os.access(script, os.X_OK), "binder/postBuild must be executable (git update-index --chmod=+x)"


# --------------------------------------------------------------------------- the sanitize file

def sanitize_patterns() -> list[tuple[str, str]]:
    """The (regex, replacement) pairs exactly as nbval reads them from the shipped sanitize file."""
    plugin = pytest.importorskip("nbval.plugin")
    return plugin.get_sanitize_patterns(SANITIZE.read_text(encoding="utf-8"))


def sanitized(text: str) -> str:
    """``text`` as nbval compares it (its IPyNbCell.sanitize, applied in file order)."""
    for regex, replacement in sanitize_patterns():
        text = re.sub(regex, replacement, text)
    return text


def test_nbval_reads_every_section_of_the_sanitize_file():
    sections = re.findall(r"^\[([\w-]+)\]$", SANITIZE.read_text(encoding="utf-8"), flags=re.M)
    patterns = sanitize_patterns()
    # A pair nbval cannot read (e.g. 'replace:' without its space) is dropped without a word.
    assert len(patterns) == len(sections), f"nbval reads {len(patterns)} of the {len(sections)} sections"
    for regex, _ in patterns:
        re.compile(regex)


JAX_WARNINGS = [
    "An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed. "
    "Falling back to cpu.\n",
    "WARNING:2026-01-02 03:04:05,678:jax._src.xla_bridge:891: An NVIDIA GPU may be present on this "
    "machine, but a CUDA-enabled jaxlib is not installed. Falling back to cpu.\n",
    "Platform 'METAL' is experimental and not all JAX functionality may be correctly supported!\n",
    "A Google TPU may be present on this machine, but either a TPU-enabled jaxlib or libtpu is not "
    "installed. Falling back to cpu.\n",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    "E0000 00:00:1732600000.123456   12345 cuda_dnn.cc:8310] Unable to register cuDNN factory\n",
    "W1126 05:43:07.123456    4242 gpu_blas_lt.cc:1234] TF32 tensor cores are used for float32 matmuls\n",
]
#: What the magic prints is compared as it is: the sanitize file must leave it alone.
MAGIC_TEXT = ("einsum_grad line 1: C = np.einsum('ij,jk->ik', A, B)\n"
              "shapes: A (2, 3), B (3, 4) -> C (2, 4)\n"
              "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)   reads dL_dC @ B.T\n"
              "check: PASS, 2/2 gradients match jax.vjp (float32)\n")


@pytest.mark.parametrize("warning", JAX_WARNINGS, ids=lambda w: re.sub(r"\W+", "-", w[:30]))
def test_platform_warnings_are_removed_and_the_rest_kept(warning):
    assert sanitized(warning + MAGIC_TEXT) == MAGIC_TEXT
    assert sanitized(MAGIC_TEXT + warning) == MAGIC_TEXT


@pytest.mark.parametrize("first, second", [
    ("<function f at 0x7f3a2b1c9d30>", "<function f at 0x7fa0000e1f70>"),
    ("derived 0.013 ms, jax.vjp 1.5 ms", "derived 0.2 ms, jax.vjp 12 ms"),
    ("Wall time: 2.31 s", "Wall time: 870 µs"),
    ("[CpuDevice(id=0)]", "[CudaDevice(id=0)]"),
    ("/home/a/.venv/lib/python3.11/site-packages/jax/_src/x.py:10: UserWarning",
     "/opt/conda/lib/python3.11/site-packages/jax/_src/x.py:10: UserWarning"),
])
def test_what_varies_between_runs_compares_equal(first, second):
    assert sanitized(first) == sanitized(second)
    assert sanitized(first) != first


def test_shapes_sizes_and_specs_are_left_alone():
    text = "--sizes i=2,j=3: 3 letters, 2 operands, 1 s-shaped loop; ij,jk->ik; x0 = 10; names ms, s"
    assert sanitized(text) == text
    assert sanitized(MAGIC_TEXT) == MAGIC_TEXT


# --------------------------------------------------------------------------- as Binder builds it

def _binder_python() -> str:
    """An interpreter of runtime.txt's version: this one, or pythonX.Y on PATH."""
    major, minor = runtime_version()
    if sys.version_info[:2] == (major, minor):
        return sys.executable
    found = shutil.which(f"python{major}.{minor}")
    if not found:
        pytest.skip(f"binder/runtime.txt asks for Python {major}.{minor}, not found on PATH")
    return found


def _code_cells(notebook: Path) -> int:
    """Code cells nbval runs (those not skipped by an nbval-skip tag or NBVAL_SKIP comment)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for cell in cells if cell["cell_type"] == "code"
               and "nbval-skip" not in cell.get("metadata", {}).get("tags", [])
               and "NBVAL_SKIP" not in "".join(cell["source"]))


def _run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: int) -> str:
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"{' '.join(command)} exited with {run.returncode}:\n{output[-6000:]}"
    return output


@pytest.mark.binder
def test_notebooks_pass_nbval_as_binder_builds_them(tmp_path):
    if not (os.environ.get("CI", "").lower() in ("true", "1") or os.environ.get("EINSUM_MAGIC_BINDER") == "1"):
        pytest.skip("installs from the package index: runs under CI=true or EINSUM_MAGIC_BINDER=1")
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb"))
    if not notebooks:
        pytest.skip("no notebooks written yet")

    repo, venv, home = tmp_path / "repo", tmp_path / "venv", tmp_path / "home"
    shutil.copytree(REPO, repo, ignore=COPY_IGNORE)
    subprocess.run([_binder_python(), "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv))
    for variable, name in [("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                           ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")]:
        (home / name).mkdir(parents=True)
        env[variable] = str(home / name)

    _run([python, "-m", "pip", "install", "-r", str(repo / "binder" / "requirements.txt")],
         cwd=repo, env=env, timeout=BUILD_TIMEOUT_S)
    _run([str(repo / "binder" / "postBuild")], cwd=repo, env=env, timeout=BUILD_TIMEOUT_S)

    # postBuild installed the package into the Binder environment, not a link to this checkout.
    where = _run([python, "-c", "import einsum_magic; print(einsum_magic.__file__)"],
                 cwd=tmp_path, env=env, timeout=120).strip().splitlines()[-1]
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    output = _run([python, "-m", "pytest", "--nbval", "notebooks/",
                   "--nbval-sanitize-with", "einsum_magic/nbval_sanitize.cfg", "-p", "no:cacheprovider"],
                  cwd=repo, env=env, timeout=NBVAL_TIMEOUT_S)
    cells = sum(_code_cells(notebook) for notebook in notebooks)
    assert re.search(rf"\b{cells} passed\b", output), f"expected {cells} cells to pass:\n{output[-3000:]}"
