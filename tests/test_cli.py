"""The console script and ``python -m einsum_magic``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from einsum_magic.cli import main
from einsum_magic.shapes import parse_sizes, shapes_for
from einsum_magic import EinsumError


def test_prints_each_gradient(capsys):
    assert main(["ij,jk->ik"]) == 0
    out = capsys.readouterr().out
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in out
    assert "dL_dB = np.einsum('ik,ij->jk', dL_dC, A)" in out
    assert "reads: dL_dA = dL_dC @ B.T" in out


def test_loops_and_sizes(capsys):
    assert main(["...ij,jk->...ik", "--sizes", "i=2,j=3,k=4", "--loops"]) == 0
    out = capsys.readouterr().out
    assert "shapes:  A(5, 2, 3), B(3, 4) -> C(5, 2, 4)" in out
    assert "for i in range(n_i):" in out


def test_bad_equation_exits_2_with_caret(capsys):
    assert main(["ij,j1->i"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].strip() == "^"
    assert "'1' is not a subscript letter" in err


def test_bad_sizes_exit_2(capsys):
    assert main(["ij", "--sizes", "i=two"]) == 2
    assert "letter=size" in capsys.readouterr().err


def test_python_dash_m():
    run = subprocess.run([sys.executable, "-m", "einsum_magic", "ii->i", "--names", "M"],
                         capture_output=True, text=True, check=True)
    assert "dL_dM = np.einsum('i,ij->ij', dL_dB, np.eye(M.shape[1]))" in run.stdout


def test_default_shapes_are_distinct():
    assert shapes_for("ij,jk->ik") == ((2, 3), (3, 4))
    assert shapes_for("ij,jk->ik", parse_sizes("j=2")) == ((3, 2), (2, 4))
    with pytest.raises(EinsumError, match="not a letter of the equation"):
        shapes_for("ij", {"z": 2})
