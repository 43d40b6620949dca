"""modules.py: the one table of einsum functions, and that the cell's readers use it."""

from __future__ import annotations

import ast
import pathlib

import pytest

import einsum_magic.cell as cell
from einsum_magic.cell import calls, capture, modules, sites


def test_the_source_reader_and_the_capture_share_the_table():
    assert calls.EINSUM_MODULES is modules.EINSUM_MODULES
    assert calls.DEFAULT_ALIASES is modules.ALIASES
    assert {f.module for f in modules.OBSERVED} == {"numpy", "jax.numpy", "torch", "opt_einsum",
                                                    "einops"}


@pytest.mark.parametrize("function", modules.FUNCTIONS, ids=lambda f: f.name)
def test_every_known_function_is_read_from_the_source_under_its_short_name(function):
    alias, _, attribute = function.short.rpartition(".")
    source = (f"import {function.module} as {alias}\n" if alias not in modules.ALIASES else "")
    if function.style == "einops":
        source += f"{function.short}(x, w, 'b d, d o -> b o')"
    else:
        source += f"{function.short}('ij,jk->ik', x, w)"
    (call,) = calls.find_calls(source).calls
    assert call.module == function.module and call.equation in ("ij,jk->ik", "bd,do->bo")


def test_no_module_of_the_cell_keeps_a_table_of_its_own():
    """The table existed five times; module names as string constants live in modules.py only."""
    names = {f.name for f in modules.FUNCTIONS} | {   # ('numpy', 'einops' also name styles)
        f.module for f in modules.FUNCTIONS if "." in f.module or "_" in f.module}
    for path in pathlib.Path(cell.__file__).parent.glob("*.py"):
        if path.name == "modules.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                      and isinstance(n.body[0], ast.Expr)}
        found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                 and n.value in names and id(n) not in docstrings]
        assert found == [], f"{path.name} names einsum modules itself: {found}"


def test_the_display_spells_a_site_with_the_tables_short_name():
    site = capture.Site("opt_einsum.contract", "numpy", "ij->", None, ((2, 2),), ("float64",),
                        (0,), (None,), (None,), "lib.py", 3, 4, "f")
    assert sites.site_call(site, (), "<cell>").source == "oe.contract('ij->', A)"
