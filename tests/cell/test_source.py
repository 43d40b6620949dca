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


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_cell_is_parsed_once(ip, monkeypatch, kind):
    cell, setup = CELLS[kind]
    if kind == "torch":
        pytest.importorskip("torch")
    ip.run_cell(setup).raise_error()
    parses = []
    real = ast.parse

    def counting(text, *args, **kwargs):
        if isinstance(text, str) and "Z = " in text and "C = " in text:
            parses.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting)
    source.tree.cache_clear()
    flags = "--no-run" if kind == "no-run" else "--no-check"
    with capture_output() as cap:
        result = ip.run_cell(f"%%einsum_grad -o r {flags}\n{cell}")
    result.raise_error()
    shown = cap.stdout + "".join(o.data.get("text/plain", "") for o in cap.outputs)
    assert "einsum('ik,jk->ij'" in shown                 # the cell was read and derived
    assert len(parses) == 1, parses


def test_the_tree_is_shared_and_errors_are_not_kept():
    assert source.tree("a = 1") is source.tree("a = 1")
    with pytest.raises(SyntaxError):
        source.tree("a = (")
