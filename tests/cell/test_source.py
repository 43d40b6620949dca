"""One parse per cell (einsum_magic.cell.source): every reader of a cell shares the tree."""

from __future__ import annotations

import ast

import numpy as np
import pytest
from IPython.utils.capture import capture_output

from einsum_magic.cell import source

CELLS = {
    "numpy": ("H = X @ W\nZ = np.tanh(H)\nC = np.einsum('ij,jk->ik', Z, W)\nL = C.sum()\n",
              "import numpy as np\nX = np.ones((2, 3)); W = np.ones((3, 3))"),
    "torch": ("H = X @ W\nZ = torch.tanh(H)\nC = torch.einsum('ij,jk->ik', Z, W)\nL = C.sum()\n",
              "import torch\nX = torch.ones(2, 3); W = torch.ones(3, 3)"),
    "no-run": ("H = X @ W\nZ = np.tanh(H)\nC = np.einsum('ij,jk->ik', Z, W)\nL = C.sum()\n",
               "import numpy as np\nX = np.ones((2, 3)); W = np.ones((3, 3))"),
}


@pytest.fixture
def ip(shell):
    return shell


def _ready(ip, kind: str) -> str:
    """The cell of ``kind``, its arrays set up in ``ip``."""
    cell, setup = CELLS[kind]
    if kind == "torch":
        pytest.importorskip("torch")
    ip.run_cell(setup).raise_error()
    return cell


def _run(ip, kind: str, cell: str) -> None:
    """Run ``cell`` under the magic; what it shows must hold its derived backward."""
    flags = "--no-run" if kind == "no-run" else "--no-check"
    with capture_output() as cap:
        ip.run_cell(f"%%einsum_grad -o r {flags}\n{cell}").raise_error()
    shown = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert "einsum('ik,jk->ij'" in shown                 # the cell was read and derived


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_cell_is_parsed_once(ip, monkeypatch, kind):
    cell = _ready(ip, kind)
    parses = []
    real = ast.parse

    def counting(text, *args, **kwargs):
        if isinstance(text, str) and "Z = " in text and "C = " in text:
            parses.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting)
    source.tree.cache_clear()
    _run(ip, kind, cell)
    assert len(parses) == 1, parses


def test_the_tree_is_shared_and_errors_are_not_kept():
    assert source.tree("a = 1") is source.tree("a = 1")
    with pytest.raises(SyntaxError):
        source.tree("a = (")


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_cell_is_walked_once(ip, monkeypatch, kind):
    """Every reader picks its nodes from one walk of the cell's tree (source.nodes)."""
    cell = _ready(ip, kind)
    source.tree.cache_clear()
    source.nodes.cache_clear()
    source.of.cache_clear()
    tree = source.tree(ip.transform_cell(cell))
    walks = []
    real = ast.walk

    def counting(node):
        if node is tree:
            walks.append(node)
        return real(node)

    monkeypatch.setattr(ast, "walk", counting)
    _run(ip, kind, cell)
    assert len(walks) == 1


@pytest.mark.parametrize("body", ["H = X @ W\nZ = np.tanh(H)\n",
                                  "import asyncio\nawait asyncio.sleep(0)\nH = X @ W\n"])
def test_the_body_is_transformed_once(ip, monkeypatch, body):
    """IPython's input transforms of the cell's body run once per magic cell, as for the
    body alone (a cell without ``await`` is not transformed to look for one)."""
    ip.run_cell(CELLS["numpy"][1]).raise_error()
    seen = []
    real = ip.transform_cell

    def counting(cell):
        seen.append(cell)
        return real(cell)

    monkeypatch.setattr(ip, "transform_cell", counting)
    with capture_output():
        ip.run_cell(f"%%einsum_grad --no-check\n{body}").raise_error()
    assert seen.count(body) == 1, seen
    assert ip.user_ns["H"].shape == (2, 3)


def test_nodes_and_of_follow_the_walk():
    tree = source.tree("y = f(x) @ g(x)\nimport os")
    assert source.nodes(tree) == tuple(ast.walk(tree))
    assert source.of(tree, ast.Call, ast.Import) == tuple(
        n for n in ast.walk(tree) if isinstance(n, (ast.Call, ast.Import)))
    assert source.nodes(tree) is source.nodes(tree)
