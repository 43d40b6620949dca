"""``%%einsum_grad --grade fwd``: the learner's backward cell runs, is graded and shown.

The forward result is a stand-in that keeps the cell backward's contract
(``fwd.backward.gradients()``, ``.contributions(name)``, ``.code``, ``.source``), its
gradients computed by torch.autograd in float64 (tests/grade_cases.py), so these tests
do not depend on how the package derives them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from einsum_magic.grading import GradedCodeFailed, GradeFailed

sys.path.insert(0, str(Path(__file__).parent))
import grade_cases as cases  # noqa: E402


class Backward:
    """The contract ``--grade`` reads of a cell backward, over a reference of the tests."""

    def __init__(self, reference, source):
        self.reference = reference
        self.source = source
        self.code = "\n".join(f"dL_d{k} = REFERENCE[{k!r}]" for k in reference.gradients)

    def gradients(self, cotangents=None):
        return dict(self.reference.gradients)

    def contributions(self, name):
        return self.reference.contributions.get(name, ())


@pytest.fixture
def ip(shell):
    ns, ref = cases.makemore(0)
    shell.user_ns.update(ns)
    shell.user_ns["fwd"] = SimpleNamespace(backward=Backward(ref, cases.FORWARD))
    return shell


def run(shell, source):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def test_the_lectures_answer_passes(ip):
    result, cap = run(ip, "%%einsum_grad --grade fwd\n" + cases.SOLUTION)
    assert result.success, result.error_in_exec
    (shown,) = [o.data["text/plain"] for o in cap.outputs]
    (page,) = [o.data["text/html"] for o in cap.outputs]
    assert shown.splitlines()[0] == "grade: RIGHT, 26 of 26 right"
    assert "  right dlogprobs       lines 1, 2    right\n" in shown
    assert "largest difference" not in shown           # figures vary by machine: HTML only
    assert "largest difference" in page
    assert "<script" not in page and " open>" not in page
    assert "<!-- einsum_grad meaning: grade: RIGHT, 26 of 26 right | dlogprobs: right" in page
    assert "REFERENCE" not in page                      # no answer revealed when right


def test_a_wrong_line_fails_the_cell_with_its_reason(ip):
    cell = cases.SOLUTION.replace("db1 = dhprebn.sum(0)", "db1 = dhprebn")
    result, cap = run(ip, "%%einsum_grad --grade fwd\n" + cell)
    error = result.error_in_exec
    assert type(error) is GradeFailed and isinstance(error, AssertionError)
    assert str(error).startswith("grade: WRONG, 25 of 26 right, 1 wrong (first wrong: db1, "
                                 "line 29) — db1, line 29: `db1` has shape (32, 64); `b1` has "
                                 "shape (64,): it was broadcast over axis 0 (size 32)")
    (shown,) = [o.data["text/plain"] for o in cap.outputs]
    assert "> wrong db1" in shown and "np.einsum('ij->j', dhprebn)" in shown
    (page,) = [o.data["text/html"] for o in cap.outputs]
    assert page.count(" open>") == 1
    assert '<details class="eg-line eg-line-wrong" open><summary><span class="eg-fail">wrong' \
           '</span> <code>db1</code>' in page
    assert "Hint: the rule and the shape" in page and "Reveal the answer for <code>db1" in page
    assert "<script" not in page and "src=" not in page and "<link" not in page
    assert "GradeFailed: grade: WRONG" in cap.stdout or "Traceback" not in cap.stdout


def test_blanks_are_missing_and_pass(ip):
    cell = "\n".join(f"d{name} = ...  # your answer" for name in cases.GRADIENTS)
    result, cap = run(ip, "%%einsum_grad --grade fwd\n" + cell)
    assert result.success
    (shown,) = [o.data["text/plain"] for o in cap.outputs]
    assert shown.splitlines()[0] == "grade: OPEN, 0 of 26 right, 26 not written yet"
    (page,) = [o.data["text/html"] for o in cap.outputs]
    assert '<details class="eg-reveal">' in page        # the answer only behind Reveal
    assert "eg-badge-open" in page


def test_an_upstream_mistake_is_named(ip):
    cell = cases.SOLUTION.replace("dh = dlogits @ W2.T", "dh = dlogits @ W2.T * 2")
    result, cap = run(ip, "%%einsum_grad --grade fwd\n" + cell)
    (shown,) = [o.data["text/plain"] for o in cap.outputs]
    assert "> wrong dh" in shown
    assert "right from your `dh`, which is wrong (line 12); fix that line first" in shown
    assert "is 2 times the gradient of `h`" in str(result.error_in_exec)


def test_usage_errors(ip):
    for line, words in (("--grade nothing", "there is no nothing"),
                        ("--grade n", "holds no cell backward"),
                        ("--grade '1x'", "not '1x'")):
        result, _ = run(ip, f"%%einsum_grad {line}\ndW2 = h.T @ dlogits\n")
        assert type(result.error_in_exec) is UsageError, result.error_in_exec
        assert words in str(result.error_in_exec)
    for value, words in ((SimpleNamespace(backward=None), "has no cell backward"),
                         (SimpleNamespace(backward=object()), "cannot give its gradients")):
        ip.user_ns["fwd0"] = value
        result, _ = run(ip, "%%einsum_grad --grade fwd0\ndW2 = h.T @ dlogits\n")
        assert type(result.error_in_exec) is UsageError and words in str(result.error_in_exec)
    result, _ = run(ip, "%einsum_grad --grade fwd")
    assert type(result.error_in_exec) is UsageError


def test_the_learners_error_fails_the_cell_with_the_learners_exception(ip):
    """As without the magic: ``%tb``, ``%debug`` and ``sys.last_value`` see the learner's error."""
    result, cap = run(ip, "%%einsum_grad --grade fwd\ndh = dlogits @ W2\n")
    assert type(result.error_in_exec) is NameError             # dlogits is not written yet
    assert "were not graded" in cap.stdout and "GradedCodeFailed" not in cap.stdout


def test_nothing_is_added_to_the_namespace(ip):
    before = set(ip.user_ns)
    run(ip, "%%einsum_grad --grade fwd\ndW2 = h.T @ (probs - 1)\n")
    assert set(ip.user_ns) - before == {"dW2"}
