"""The console script and ``python -m einsum_magic``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from einsum_magic import EinsumError
from einsum_magic.cli import main
from einsum_magic.core.shapes import parse_sizes, shapes_for


def test_prints_each_gradient(capsys):
    assert main(["ij,jk->ik"]) == 0
    out = capsys.readouterr().out
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in out
    assert "dL_dB = np.einsum('ik,ij->jk', dL_dC, A)" in out
    assert "reads dL_dA = dL_dC @ B.T" in out
    assert "check: not run (--check runs it)" in out


def test_loops_and_sizes(capsys):
    assert main(["...ij,jk->...ik", "--sizes", "i=2,j=3,k=4", "--loops"]) == 0
    out = capsys.readouterr().out
    assert "shapes:  A (5, 2, 3), B (3, 4) -> C (5, 2, 4)" in out
    assert "dL_dA[a, i, j] += dL_dC[a, i, k] * B[j, k]" in out
    assert "loops, forward C:" in out and "loops, dL_dB:" in out


def test_check_runs_jax(capsys):
    assert main(["ii->i", "--check", "--names", "M"]) == 0
    assert "check: PASS, 1/1 gradient matches jax.vjp (float32)" in capsys.readouterr().out


def test_bad_equation_exits_2_with_caret(capsys):
    assert main(["ij,j1->i"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].strip() == "^"
    assert "'1' is not a subscript letter" in err


@pytest.mark.parametrize("argv,message", [
    (["ij", "--sizes", "i=two"], "letter=size"),
    (["ij", "--sizes", "z=2"], "'z', which is not a letter of the equation"),
    (["ij", "--names", "1x"], "not a Python identifier"),
])
def test_bad_options_exit_2(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_dash_m():
    run = subprocess.run([sys.executable, "-m", "einsum_magic", "ii->i", "--names", "M"],
                         capture_output=True, text=True, check=True)
    assert "dL_dM = np.einsum('i,ij->ij', dL_dB, np.eye(M.shape[1]))" in run.stdout


def test_default_shapes_are_distinct():
    assert shapes_for("ij,jk->ik") == ((2, 3), (3, 4))
    assert shapes_for("ij,jk->ik", parse_sizes("j=2")) == ((3, 2), (2, 4))
    with pytest.raises(EinsumError, match="not a letter of the equation"):
        shapes_for("ij", {"z": 2})


@pytest.mark.parametrize("argv, message", [
    (["ij->", "--sizes", "i=2,i=3"], "einsum-grad: 'i' is given twice (i=2, then i=3): give "
                                     "each size once"),
    (["batch d, d out -> batch out"], "einsum-grad: 'batch' is an axis name, but an equation "
                                      "takes one letter per axis: write bd,do->bo, or keep "
                                      "the names inside einops.einsum(..., 'batch d, d out -> "
                                      "batch out')"),
])
def test_a_size_given_twice_and_axis_names_are_refused_in_the_users_words(capsys, argv,
                                                                          message):
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[0] == message
