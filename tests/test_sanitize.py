"""nbval with the shipped sanitize file compares what a display means, not its markup."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from einsum_magic import sanitize
from einsum_magic.views import html
from einsum_magic.cell.analysis import Analysis
from einsum_magic.cell.calls import find_calls
from einsum_magic import derive

REPO = Path(__file__).resolve().parents[1]
CELLS = ("import numpy as np\n%load_ext einsum_magic\n"
         "A = np.arange(6.0).reshape(2, 3)\nB = np.ones((3, 4))",
         "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")


def patterns():
    from nbval.plugin import get_sanitize_patterns

    return get_sanitize_patterns(sanitize.path().read_text(encoding="utf-8"))


def sanitized(text: str) -> str:
    for regex, replacement in patterns():
        text = re.sub(regex, replacement, text)
    return text


def analysis(source="C = np.einsum('ij,jk->ik', A, B)", shapes=((2, 3), (3, 4))):
    call = find_calls(source).calls[0]
    d = derive(call.equation, call.names, call.output, shapes)
    return Analysis(call, d, "sizes from your arrays", check_note="skipped (--no-check)")


def test_the_path_is_one_line_away():
    out = subprocess.run([sys.executable, "-m", "einsum_magic", "--nbval-sanitize-path"],
                         capture_output=True, text=True, check=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out == f"{sanitize.path()}\n" and sanitize.path().is_file()


def test_the_sanitize_file_is_package_data():
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert sanitize.FILE in config["tool"]["setuptools"]["package-data"]["einsum_magic"]
    assert f"--nbval-sanitize-with einsum_magic/{sanitize.FILE}" in \
        config["tool"]["pytest"]["ini_options"]["addopts"]


def test_every_subpackage_is_packaged():
    """The sanitize file ships as package data; every subpackage ships too (a wheel lists them)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "einsum_magic").rglob("__init__.py")}
    assert found == packages


def test_a_page_reduces_to_its_meaning_line():
    a = analysis()
    assert sanitized(html.page(a)) == f"einsum_grad meaning: {html.meaning(a)}"
    restyled = re.sub(r"(?s)<style>.*?</style>", "<style>.x{color:red}</style>", html.page(a))
    assert sanitized(restyled) == sanitized(html.page(a))
    other = analysis("C = np.einsum('ij,jk->ik', A, B)", ((2, 5), (5, 4)))
    assert sanitized(html.page(other)) != sanitized(html.page(a))        # shapes count
    assert sanitized("plain text, no display") == "plain text, no display"
    tricky = analysis("C = np.einsum('ij,jk->ik', A, B)")
    tricky = Analysis(tricky.call, tricky.derivation, "x", check_note="skipped (--no-check) -->")
    page = html.page(tricky)
    assert page.count("-->") == 1                        # the comment ends where it should
    assert sanitized(page).endswith("dL_dC, A)")


# -- nbval on a stored notebook ---------------------------------------------------------

@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """The notebook of CELLS, executed as a user would commit it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(tmp_path_factory.mktemp("run"))}}).execute()
    return nb


def page_output(nb):
    (out,) = [o for o in nb.cells[1].outputs if o.get("data", {}).get("text/html")]
    return out


def nbval(nb, tmp_path, sanitize_file: Path | None) -> subprocess.CompletedProcess:
    import nbformat

    notebook = tmp_path / "stored.ipynb"
    nbformat.write(nb, notebook)
    options = [] if sanitize_file is None else ["--nbval-sanitize-with", str(sanitize_file)]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval", str(notebook), *options], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(REPO), os.environ.get("PYTHONPATH", "")])})


def edited(nb, edit):
    import copy

    nb = copy.deepcopy(nb)
    out = page_output(nb)
    out["data"]["text/html"] = edit(out["data"]["text/html"])
    return nb


def restyle(page: str) -> str:
    """Other CSS, other highlighting, other classes: the same meaning."""
    page = re.sub(r"(?s)<style>.*?</style>", "<style>.einsum-grad pre { color: teal }</style>", page)
    page = re.sub(r'<span class="(\w+)">([^<]*)</span>', r'<b class="tok-\1">\2</b>', page)
    return page.replace("eg-panel", "panel").replace("<pre", '<pre data-theme="dark"')


def test_nbval_passes_other_markup_with_the_same_meaning(executed, tmp_path):
    nb = edited(executed, restyle)
    assert page_output(nb)["data"]["text/html"] != page_output(executed)["data"]["text/html"]
    run = nbval(nb, tmp_path, sanitize.path())
    assert run.returncode == 0, run.stdout[-3000:]
    run = nbval(nb, tmp_path, None)                      # without it, the markup differs
    assert run.returncode != 0 and "text/html" in run.stdout


@pytest.mark.parametrize("change", [
    ("'ik,jk->ij'", "'ik,jk->ji'"),                      # another backward equation
    ("check: PASS", "check: FAIL"),                      # another verdict
])
def test_nbval_fails_another_meaning(executed, tmp_path, change):
    old, new = change
    nb = edited(executed, lambda page: restyle(page).replace(old, new))
    assert new in page_output(nb)["data"]["text/html"]
    run = nbval(nb, tmp_path, sanitize.path())
    assert run.returncode != 0, run.stdout[-3000:]
    assert "mismatch 'text/html'" in run.stdout and "Cell outputs differ" in run.stdout


# -- the Cell backward display ----------------------------------------------------------

def chain_page():
    import numpy as np
    from einsum_magic.chain import cell_backward
    from einsum_magic.views import chain as view

    b = cell_backward("H = np.einsum('ij,jk->ik', X, W)\nZ = np.maximum(H, 0)",
                      {"X": np.ones((2, 3)), "W": np.ones((3, 4))}, check=False)
    return b, view.html(b)


def test_a_chain_page_reduces_to_its_meaning_line():
    from einsum_magic.views import chain as view

    b, page = chain_page()
    assert sanitized(page) == f"einsum_grad meaning: {view.meaning(b)}"
    assert "dL_dX = np.einsum('ik,jk->ij', dL_dH, W) # (2, 3)" in view.meaning(b)
    assert page.count("-->") == 1


def test_a_chain_page_with_other_markup_and_the_same_meaning_compares_equal():
    _, page = chain_page()
    assert restyle(page) != page
    assert sanitized(restyle(page)) == sanitized(page)


def test_a_chain_page_with_another_backward_line_compares_unequal():
    _, page = chain_page()
    other = page.replace("'ik,jk->ij'", "'ik,jk->ji'")
    assert other != page
    assert sanitized(other) != sanitized(page)
