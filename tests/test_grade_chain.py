"""``--exercise`` and ``--grade`` over the real cell backward: a recorded forward, a learner graded.

tests/test_grade_magic.py grades against a stand-in backward (torch.autograd's gradients);
here the forward runs under the magic, so the reference is the backward the package derived
from the record of the run, and torch.autograd of the same code is computed here to show
that a line graded right is right.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from IPython.utils.capture import capture_output  # noqa: E402

from einsum_magic.grading import GradeFailed  # noqa: E402

SETUP = """\
import torch
g = torch.Generator().manual_seed(0)
x = torch.randn(8, 5, generator=g, dtype=torch.float64)
W = torch.randn(5, 3, generator=g, dtype=torch.float64)
b = torch.randn(3, generator=g, dtype=torch.float64)
"""
FORWARD = """\
%%einsum_grad -o fwd --exercise
h = torch.tanh(x @ W + b)
loss = (h ** 2).mean()
"""
RIGHT = """\
%%einsum_grad --grade fwd
dh = 2 * h / h.numel()
dpre = dh * (1 - h**2)
dW = x.T @ dpre
db = dpre.sum(0)
dx = dpre @ W.T
"""


@pytest.fixture
def ip(shell):
    shell.run_cell(SETUP)
    return shell


def run(shell, source):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def test_an_exercise_forward_is_derived_checked_and_not_shown(ip):
    result, cap = run(ip, FORWARD)
    assert result.success
    assert "the cell's backward is an exercise (cell check: PASS)" in cap.stdout
    assert "%%einsum_grad --grade fwd" in cap.stdout
    shown = cap.stdout + "".join(str(o.data) for o in cap.outputs)
    assert "dL_d" not in shown and "einsum(" not in shown     # no answer on the page
    assert set(ip.user_ns["fwd"].backward.gradients()) >= {"x", "W", "b", "h"}


def test_right_lines_are_graded_right_against_the_recorded_backward(ip):
    run(ip, FORWARD)
    result, cap = run(ip, RIGHT)
    assert result.success, cap.stdout
    (page,) = cap.outputs
    assert page.data["text/plain"].startswith("grade: RIGHT, 4 of 4 right")
    # and they are right: torch.autograd of the same forward, computed here
    ns = ip.user_ns
    x, W, b = (ns[k].clone().requires_grad_() for k in ("x", "W", "b"))
    loss = (torch.tanh(x @ W + b) ** 2).mean()
    for name, grad in zip(("dx", "dW", "db"), torch.autograd.grad(loss, (x, W, b))):
        torch.testing.assert_close(ns[name], grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("line, reason", [
    ("db = dpre", "summed over"),                 # the broadcast of b over the batch
    ("db = -dpre.sum(0)", "sign"),
])
def test_a_wrong_line_fails_the_cell_with_its_reason(ip, line, reason):
    run(ip, FORWARD)
    result, cap = run(ip, RIGHT.replace("db = dpre.sum(0)", line))
    assert type(result.error_in_exec) is GradeFailed
    assert "db" in str(result.error_in_exec) and reason in str(result.error_in_exec)


TWICE = """\
%%einsum_grad -o fwd --exercise
h = torch.tanh(x @ W)
a = h * 3
loss = (a ** 2).mean() + (h ** 2).mean()
"""


def test_a_value_used_twice_has_one_term_per_use_and_a_missing_one_is_named(ip):
    run(ip, TWICE)
    backward = ip.user_ns["fwd"].backward
    terms = backward.contributions("h")
    assert [line for line, _ in terms] == [2, 3]
    torch.testing.assert_close(torch.as_tensor(sum(t for _, t in terms)),
                               torch.as_tensor(backward.gradients()["h"]))
    result, cap = run(ip, "%%einsum_grad --grade fwd\ndh = 2 * h / h.numel()\n")
    assert type(result.error_in_exec) is GradeFailed
    assert "`h` is used on lines 2 and 3" in str(result.error_in_exec)
    assert "dh +=" in str(result.error_in_exec)
