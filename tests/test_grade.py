"""Grading a hand-written backward cell line by line (einsum_magic.grade).

Every learner answer below runs as a learner's cell would, on the namespace of a forward
pass; the reference is torch.autograd in float64, computed independently of the package
(tests/grade_cases.py). Each answer is graded with the verdict and reason it must get.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from einsum_magic.grade import (ROUNDOFF, Grading, Reference, answers_from_code, assignments,
                                grade)

sys.path.insert(0, str(Path(__file__).parent))
import grade_cases as cases  # noqa: E402


@pytest.fixture(scope="module")
def makemore():
    return cases.makemore(0)


@pytest.fixture(scope="module")
def mlp():
    return cases.mlp(0)


@pytest.fixture(scope="module")
def attention():
    return cases.attention(0)


def _swap(solution: str, old: str, new: str) -> str:
    assert old in solution, old
    return solution.replace(old, new, 1)


def _graded(case, cell) -> Grading:
    ns, ref = case
    return grade(cell, cases.learner(cell, ns), ref)


def _line(g: Grading, target: str):
    return next(line for line in g.lines if line.target == target)


S = cases.SOLUTION

#: (old line of the lecture's answer, the learner's line, target, verdict, reason, words)
MAKEMORE_MISTAKES = [
    # the embedding: a scatter that loses repeated rows
    ("    dC[ix] += demb[k,j]", "    dC[ix] = demb[k,j]", "dC", "wrong", "scatter",
     "looked up more than once"),
    ("dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
     "    ix = Xb[k,j]\n    dC[ix] += demb[k,j]\n",
     "dC = torch.zeros_like(C)\ndC[Xb] += demb\n", "dC", "wrong", "scatter", "index_add_"),
    ("dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
     "    ix = Xb[k,j]\n    dC[ix] += demb[k,j]\n",
     "dC = torch.zeros_like(C)\ndC[Xb] = demb\n", "dC", "wrong", "scatter", "rows "),
    # sums back over a broadcast
    ("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
     "dcounts_sum_inv = counts * dprobs", "dcounts_sum_inv", "wrong", "broadcast",
     "`dcounts_sum_inv` has shape (32, 27); `counts_sum_inv` has shape (32, 1): it was "
     "broadcast over axis 1 (size 27), so its gradient is summed over that axis "
     "(np.einsum('ij->i', dcounts_sum_inv), size-1 axes kept: dcounts_sum_inv.sum(1, "
     "keepdim=True))"),
    ("db1 = dhprebn.sum(0)", "db1 = dhprebn", "db1", "wrong", "broadcast",
     "`db1` has shape (32, 64); `b1` has shape (64,): it was broadcast over axis 0 (size 32), "
     "so its gradient is summed over that axis (np.einsum('ij->j', dhprebn))"),
    ("db1 = dhprebn.sum(0)", "db1 = dhprebn.sum(1)", "db1", "wrong", "shape",
     "`db1` has shape (32,); `b1` has shape (64,)"),
    ("dbnmeani = (-dbndiff).sum(0)", "dbnmeani = -dbndiff", "dbnmeani", "wrong", "broadcast",
     "`dbnmeani` has shape (32, 64); `bnmeani` has shape (1, 64)"),
    ("db2 = dlogits.sum(0)", "db2 = dlogits", "db2", "wrong", "broadcast",
     "so its gradient is summed over that axis"),
    ("dbnbias = dhpreact.sum(0, keepdim=True)", "dbnbias = dhpreact", "dbnbias", "wrong",
     "broadcast", "keepdim=True"),
    # a value used twice: one path only
    ("dcounts += torch.ones_like(counts) * dcounts_sum",
     "dcounts = torch.ones_like(counts) * dcounts_sum", "dcounts", "wrong", "path",
     "`counts` is used on lines 21 and 23: its gradient is the sum of both contributions; "
     "yours has only the one from line 21"),
    ("dcounts += torch.ones_like(counts) * dcounts_sum", "pass", "dcounts", "wrong", "path",
     "yours has only the one from line 23"),
    ("dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)", "pass", "dhprebn", "wrong",
     "path", "`hprebn` is used on lines 6 and 7"),
    ("dbndiff += (2*bndiff) * dbndiff2", "pass", "dbndiff", "wrong", "path",
     "`bndiff` is used on lines 8 and 11"),
    # the max
    ("dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)", "dlogit_maxes = -dnorm_logits",
     "dlogit_maxes", "wrong", "broadcast",
     "`dlogit_maxes` has shape (32, 27); `logit_maxes` has shape (32, 1)"),
    ("dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)",
     "dlogit_maxes = (-dnorm_logits).sum(0, keepdim=True)", "dlogit_maxes", "wrong", "shape",
     "`dlogit_maxes` has shape (1, 27); `logit_maxes` has shape (32, 1)"),
    # Bessel's correction
    ("dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
     "dbndiff2 = (1.0/n)*torch.ones_like(bndiff2) * dbnvar", "dbndiff2", "wrong", "bessel",
     "(n-1)/n = 31/32"),
    ("dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
     "dbndiff2 = torch.ones_like(bndiff2) * dbnvar / n", "dbndiff2", "wrong", "bessel",
     "Bessel's correction"),
    ("dhprebn += 1.0/n * (torch.ones_like(hprebn) * dbnmeani)",
     "dhprebn += 1.0/(n-1) * (torch.ones_like(hprebn) * dbnmeani)", "dhprebn", "wrong",
     "values", "differs from the gradient of `hprebn`"),
    # a transposed product
    ("dW2 = h.T @ dlogits", "dW2 = dlogits.T @ h", "dW2", "wrong", "transpose",
     "`dW2` has shape (27, 64); `W2` has shape (64, 27): it is transposed"),
    ("dW1 = embcat.T @ dhprebn", "dW1 = dhprebn.T @ embcat", "dW1", "wrong", "transpose",
     "it is transposed"),
    # a sign
    ("dlogprobs[range(n), Yb] = -1.0/n", "dlogprobs[range(n), Yb] = 1.0/n", "dlogprobs",
     "wrong", "sign", "minus the gradient of `logprobs`"),
    ("dbnbias = dhpreact.sum(0, keepdim=True)", "dbnbias = -dhpreact.sum(0, keepdim=True)",
     "dbnbias", "wrong", "sign", "the wrong sign"),
    ("dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv",
     "dcounts_sum = (counts_sum**-2) * dcounts_sum_inv", "dcounts_sum", "wrong", "sign",
     "the wrong sign"),
    # the tanh
    ("dhpreact = (1.0 - h**2) * dh", "dhpreact = dh", "dhpreact", "wrong", "elementwise",
     "the factor (1 - h**2) is missing: the derivative of tanh at its output `h`"),
    ("dhpreact = (1.0 - h**2) * dh", "dhpreact = dh.clone()", "dhpreact", "wrong",
     "elementwise", "(1 - h**2)"),
    # a constant factor
    ("dlogprobs[range(n), Yb] = -1.0/n", "dlogprobs[range(n), Yb] = -1.0", "dlogprobs",
     "wrong", "factor", "is 32 times the gradient of `logprobs`: a factor 1/32 is missing"),
    ("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)",
     "dcounts_sum_inv = (counts * dprobs).mean(1, keepdim=True)", "dcounts_sum_inv", "wrong",
     "factor", "is 1/27 of the gradient of `counts_sum_inv`: an extra factor 1/27"),
    ("dbnvar = (-0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv",
     "dbnvar = (0.5*(bnvar + 1e-5)**-1.5) * dbnvar_inv", "dbnvar", "wrong", "sign", "sign"),
    # an elementwise factor of a product
    ("dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs", "dprobs", "wrong",
     "elementwise", "the factor 1/probs is missing"),
    ("dbnraw = bngain * dhpreact", "dbnraw = dhpreact", "dbnraw", "wrong", "elementwise",
     "the factor bngain is missing"),
]


@pytest.mark.parametrize("old,new,target,verdict,reason,words", MAKEMORE_MISTAKES,
                         ids=[f"{m[2]}-{k}" for k, m in enumerate(MAKEMORE_MISTAKES)])
def test_makemore_mistake(makemore, old, new, target, verdict, reason, words):
    g = _graded(makemore, _swap(S, old, new))
    line = _line(g, target)
    assert (line.verdict, line.reason) == (verdict, reason), line.message
    assert words in line.message
    assert g.failed
    assert g.first_wrong.target == target
    # every other line is right, or right from the wrong one (its own rule is right)
    for other in g.lines:
        if other.target != target:
            assert other.passed or other.verdict == "upstream", (other.target, other.message)


def test_upstream_line_names_the_first_wrong(makemore):
    cell = _swap(S, "dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs")
    g = _graded(makemore, cell)
    line = _line(g, "dcounts_sum_inv")
    assert line.verdict == "upstream"
    assert line.message == "right from your `dprobs`, which is wrong (line 3); fix that line first"
    assert _line(g, "dC").verdict == "upstream"
    assert g.first_wrong.target == "dprobs"
    assert _line(g, "dprobs").message.startswith("the factor 1/probs is missing: the "
                                                  "derivative of log at its input `probs`")
    # the max's and b1's gradients are zero (up to round-off) whatever comes before them
    assert g.summary == "grade: WRONG, 3 of 26 right, 23 wrong (first wrong: dprobs, line 3)"


def test_wrong_line_after_a_wrong_upstream_stays_wrong(makemore):
    cell = _swap(_swap(S, "dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs"),
                 "dW2 = h.T @ dlogits", "dW2 = dlogits.T @ h")
    g = _graded(makemore, cell)
    assert (_line(g, "dW2").verdict, _line(g, "dW2").reason) == ("wrong", "transpose")


#: Right answers written otherwise than the lecture: (old, new, target, verdict)
MAKEMORE_RIGHT = [
    ("dbnmeani = (-dbndiff).sum(0)", "dbnmeani = (-dbndiff).sum(0, keepdim=True)", "dbnmeani",
     "roundoff"),
    ("db1 = dhprebn.sum(0)", "db1 = dhprebn.sum(0, keepdim=True)", "db1", "size1"),
    ("dbnbias = dhpreact.sum(0, keepdim=True)", "dbnbias = dhpreact.sum(0)", "dbnbias", "size1"),
    ("dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
     "pass", "dlogits", "roundoff"),       # the max's path carries zero, up to round-off
    ("dW2 = h.T @ dlogits", "dW2 = torch.einsum('bi,bj->ij', h, dlogits)", "dW2", "roundoff"),
    ("dh = dlogits @ W2.T", "dh = torch.einsum('bj,ij->bi', dlogits, W2)", "dh", "roundoff"),
    ("dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
     "    ix = Xb[k,j]\n    dC[ix] += demb[k,j]\n",
     "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.view(-1), demb.view(-1, demb.shape[2]))\n",
     "dC", "roundoff"),
    ("dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n  for j in range(Xb.shape[1]):\n"
     "    ix = Xb[k,j]\n    dC[ix] += demb[k,j]\n",
     "dC = torch.einsum('bkv,bkd->vd', F.one_hot(Xb, C.shape[0]).float(), demb)\n", "dC",
     "roundoff"),
    ("dbndiff2 = (1.0/(n-1))*torch.ones_like(bndiff2) * dbnvar",
     "dbndiff2 = dbnvar.expand_as(bndiff2) / (n - 1)", "dbndiff2", "roundoff"),
    ("dhpreact = (1.0 - h**2) * dh", "dhpreact = (1.0 - torch.tanh(hpreact)**2) * dh",
     "dhpreact", "roundoff"),
    ("dlogits = dnorm_logits.clone()\n", "dL_dlogits = dnorm_logits.clone()\n", None, None),
]


@pytest.mark.parametrize("old,new,target,verdict", MAKEMORE_RIGHT,
                         ids=[f"right-{k}" for k in range(len(MAKEMORE_RIGHT))])
def test_makemore_right_otherwise(makemore, old, new, target, verdict):
    cell = _swap(S, old, new)
    if target is None:        # the dL_d spelling: every later dlogits reads dL_dlogits
        cell = cell.replace("dlogits +=", "dL_dlogits +=").replace("dlogits @", "dL_dlogits @")
        cell = cell.replace("@ dlogits", "@ dL_dlogits").replace("dlogits.sum", "dL_dlogits.sum")
        target, verdict = "dL_dlogits", "roundoff"
    g = _graded(makemore, cell)
    assert not g.failed, g.summary
    assert _line(g, target).verdict == verdict, _line(g, target).message


def test_the_lectures_solution_line_by_line(makemore):
    """Karpathy's own Exercise 1 answer: every one of its 26 gradients right, in order."""
    g = _graded(makemore, S)
    assert sorted(line.name for line in g.lines) == sorted(cases.GRADIENTS)
    assert [line.lines for line in g.lines] == sorted(line.lines for line in g.lines)
    assert all(line.passed for line in g.lines), [(l.target, l.message) for l in g.lines]
    assert not g.failed and g.summary == "grade: RIGHT, 26 of 26 right"
    # the lecture's dbnmeani is (64,) for a (1, 64) value: right, with a note
    assert "differ by size-1 axes only" in _line(g, "dbnmeani").message
    assert _line(g, "dcounts").lines == (5, 7)
    assert _line(g, "dC").lines == (31, 35)
    assert "float32 round-off" in _line(g, "dprobs").message


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_lectures_solution_other_data(seed):
    g = _graded(cases.makemore(seed), S)
    assert not g.failed and g.counts["right"] == 26, g.summary


def test_float64_learner_is_right(makemore):
    g = _graded(cases.makemore(0, torch.float64), S)
    assert all(line.verdict in ("right", "roundoff", "size1") for line in g.lines)
    assert all(line.error < ROUNDOFF["float64"] for line in g.lines), g.summary


def test_missing_lines_fail_nothing(makemore):
    blanks = "\n".join(f"d{name} = ...  # TODO" for name in cases.GRADIENTS[:3])
    cell = blanks + "\n" + "dW2 = h.T @ dlogits_given\n"
    ns, ref = makemore
    learner_ns = cases.learner("dlogits_given = torch.zeros_like(logits)\n", ns)
    g = grade(cell, cases.learner(cell, learner_ns), ref)
    assert [line.verdict for line in g.lines[:3]] == ["missing"] * 3
    assert _line(g, "dlogprobs").message == "`dlogprobs` is not written yet"
    assert _line(g, "dC").verdict == "missing" and _line(g, "dC").lines == ()
    assert _line(g, "dW2").verdict == "wrong"
    assert g.summary.startswith("grade: WRONG, 0 of 26 right, 1 wrong, 25 not written yet")


def test_all_blank_is_open(makemore):
    cell = "\n".join(f"d{name} = None" for name in cases.GRADIENTS)
    g = _graded(makemore, cell)
    assert not g.failed and g.summary == "grade: OPEN, 0 of 26 right, 26 not written yet"


def test_numpy_learner(makemore):
    """A learner working in NumPy on the same values: graded the same way."""
    ns, ref = makemore
    cell = ("dlogprobs = np.zeros_like(logprobs)\n"
            "dlogprobs[range(n), Yb] = -1.0/n\n"
            "dprobs = dlogprobs / probs\n"
            "dcounts_sum_inv = np.einsum('ij,ij->i', counts, dprobs)\n")
    npns = cases.numpy_like(ns)
    npns["np"] = np
    g = grade(cell, cases.learner(cell, npns), ref)
    assert [l.verdict for l in g.lines[:3]] == ["right", "roundoff", "size1"]
    assert "`dcounts_sum_inv` has shape (32,) where `counts_sum_inv` has (32, 1)" in \
        _line(g, "dcounts_sum_inv").message
    wrong = cell.replace("np.einsum('ij,ij->i', counts, dprobs)", "counts * dprobs")
    g = grade(wrong, cases.learner(wrong, npns), ref)
    assert _line(g, "dcounts_sum_inv").reason == "broadcast"


MLP_MISTAKES = [
    ("dpre = (1 - act**2) * dact", "dpre = dact", "dpre", "elementwise", "(1 - act**2)"),
    ("dout = 2 * (out - y) / out.numel()", "dout = 2 * (out - y)", "dout", "factor",
     "is 24 times the gradient of `out`"),
    ("dout = 2 * (out - y) / out.numel()", "dout = 2 * (y - out) / out.numel()", "dout", "sign",
     "sign"),
    ("db = dpre.sum(0)", "db = dpre", "db", "broadcast",
     "`db` has shape (8, 6); `b` has shape (6,)"),
    ("dV = act.T @ dout", "dV = dout.T @ act", "dV", "transpose", "transposed"),
    ("dW = x.T @ dpre", "dW = dpre.T @ x", "dW", "transpose", "transposed"),
]


@pytest.mark.parametrize("old,new,target,reason,words", MLP_MISTAKES,
                         ids=[f"mlp-{m[2]}-{k}" for k, m in enumerate(MLP_MISTAKES)])
def test_mlp_mistake(mlp, old, new, target, reason, words):
    g = _graded(mlp, _swap(cases.MLP_SOLUTION, old, new))
    line = _line(g, target)
    assert (line.verdict, line.reason) == ("wrong", reason), line.message
    assert words in line.message
    assert g.first_wrong.target == target


A = cases.ATTENTION_SOLUTION

ATTENTION_MISTAKES = [
    # square (T, T) and (d, d) matrices: a transpose keeps the shape
    ("dq = (dscores * scale) @ k", "dq = (dscores * scale).T @ k", "dq", "values", ""),
    ("dWq = x.T @ dq", "dWq = dq.T @ x", "dWq", "transpose", "is the transpose of the gradient"),
    ("dv = att.T @ dy", "dv = att @ dy", "dv", "values", "differs"),
    ("datt = dy @ v.T", "datt = v @ dy.T", "datt", "transpose", "is the transpose"),
    ("dx = dq @ Wq.T + dk @ Wk.T + dv @ Wv.T", "dx = dq @ Wq.T + dk @ Wk.T", "dx", "path",
     "`x` is used on lines 1, 2 and 3: its gradient is the sum of all contributions; yours "
     "has only those from lines 1 and 2"),
    ("dx = dq @ Wq.T + dk @ Wk.T + dv @ Wv.T", "dx = dv @ Wv.T", "dx", "path",
     "yours has only the one from line 3"),
    ("dscores = att * (datt - (att * datt).sum(-1, keepdim=True))", "dscores = att * datt",
     "dscores", "values", "differs"),
    ("dq = (dscores * scale) @ k", "dq = dscores @ k", "dq", "factor", ""),
]


@pytest.mark.parametrize("old,new,target,reason,words", ATTENTION_MISTAKES,
                         ids=[f"att-{m[2]}-{k}" for k, m in enumerate(ATTENTION_MISTAKES)])
def test_attention_mistake(attention, old, new, target, reason, words):
    g = _graded(attention, _swap(A, old, new))
    line = _line(g, target)
    assert (line.verdict, line.reason) == ("wrong", reason), line.message
    assert words in line.message


def test_attention_solution_right(attention):
    g = _graded(attention, A)
    assert not g.failed and g.summary == "grade: RIGHT, 10 of 10 right"


def test_the_notebooks_attention_head():
    """The class-hour chain of notebooks 05: its 6 answers right, a softmax slip wrong."""
    case = cases.head(0)
    g = _graded(case, cases.HEAD_SOLUTION)
    assert g.summary == "grade: RIGHT, 6 of 6 right"
    g = _graded(case, cases.HEAD_SOLUTION.replace("dscores = att * (datt - (att * datt).sum(-1, "
                                                  "keepdim=True))", "dscores = att * datt"))
    assert (_line(g, "dscores").verdict, _line(g, "dq").verdict) == ("wrong", "upstream")
    g = _graded(case, cases.HEAD_SOLUTION.replace("dv = att.T @ dy", "dv = att @ dy"))
    assert _line(g, "dv").verdict == "wrong"


# -- reading the cell ------------------------------------------------------------------------

def test_assignments_in_execution_order():
    names = set(cases.GRADIENTS)
    found = assignments(S, names)
    assert list(found)[:5] == ["dlogprobs", "dprobs", "dcounts_sum_inv", "dcounts",
                               "dcounts_sum"]
    assert found["dlogprobs"][1] == (1, 2)          # zeros_like, then item assignment
    assert found["dlogits"][1] == (9, 11)           # .clone(), then +=
    assert found["dhprebn"][1] == (24, 26)
    assert "ix" not in found and "k" not in found    # loop variables are no gradients


def test_hint_is_rule_and_shape_not_answer(makemore):
    _, ref = makemore
    hint = ref.hints["b1"]
    assert hint == ("`b1` (64,) is used on line 4 (sum: the gradient passes through; "
                    "broadcast from (64,) to (32, 64): summed back over the broadcast axes); "
                    "its gradient has shape (64,)")
    assert "broadcast from (32, 1) to (32, 27)" in ref.hints["counts_sum_inv"]
    assert "broadcast" not in ref.hints["W1"]
    assert "sum over its uses" in ref.hints["counts"]
    assert "indexing" in ref.hints["C"]


def test_answers_from_code():
    code = "dL_dy = dL_dz * 2\ndL_dx = dL_dy @ W.T\ndL_dx += dL_dy\n"
    assert answers_from_code(code, {"x", "y"}) == {"y": "dL_dy = dL_dz * 2",
                                                   "x": "dL_dx = dL_dy @ W.T\ndL_dx += dL_dy"}


def test_rerunning_a_line_prints_nothing(makemore, capsys):
    cell = _swap(S, "dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs")
    cell = _swap(cell, "dcounts = counts_sum_inv * dprobs",
                 "dcounts = counts_sum_inv * dprobs; print('hello')")
    ns, ref = makemore
    after = cases.learner(cell, ns)
    capsys.readouterr()
    g = grade(cell, after, ref)
    assert _line(g, "dcounts").verdict == "upstream"
    assert capsys.readouterr().out == ""


def test_grading_never_changes_the_learners_values(makemore):
    ns, ref = makemore
    cell = _swap(S, "dprobs = (1.0 / probs) * dlogprobs", "dprobs = dlogprobs")
    after = cases.learner(cell, ns)
    before = {k: v.clone() for k, v in after.items() if torch.is_tensor(v)}
    grade(cell, after, ref)
    assert all(torch.equal(before[k], after[k]) for k in before)


# -- the property --------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 16), log_size=st.floats(-13, 0),
       dtype=st.sampled_from(["float32", "float64"]),
       shape=st.sampled_from([(5,), (3, 4), (2, 3, 2)]))
def test_right_exactly_within_roundoff(seed, log_size, dtype, shape):
    """A proposed line is graded right exactly when it equals the reference gradient within
    the dtype's round-off, relative to the gradient's largest entry."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(shape)
    noise = rng.standard_normal(shape)
    proposal = (r + 10 ** log_size * np.abs(r).max() * noise / np.abs(noise).max())
    proposal = proposal.astype(dtype)
    err = np.abs(proposal.astype(np.float64) - r).max() / np.abs(r).max()
    tol = ROUNDOFF[dtype]
    assume(abs(np.log10(err / tol)) > 0.01)     # not on the boundary itself
    ref = Reference({"W": r}, {"W": shape})
    g = grade("dW = proposal", {"proposal": proposal, "dW": proposal}, ref)
    assert g.lines[0].passed == (err <= tol), (err, tol, g.lines[0].message)
    assert g.lines[0].failed == (err > tol)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 16), n=st.integers(2, 6), m=st.integers(2, 6))
def test_broadcast_sum_diagnosed_from_shapes(seed, n, m):
    """A bias gradient left unsummed is told by its shape, with the sum that fixes it."""
    rng = np.random.default_rng(seed)
    up = rng.standard_normal((n, m))
    ref = Reference({"b": up.sum(0)}, {"b": (m,)})
    line = grade("db = up", {"up": up, "db": up}, ref).lines[0]
    assert line.reason == "broadcast"
    assert f"np.einsum('ij->j', db)" in line.message
    assert "still wrong" not in line.message


def test_the_tables_are_large_enough():
    """At least 50 learner answers, each common mistake at least twice."""
    answers = (len(MAKEMORE_MISTAKES) + len(MAKEMORE_RIGHT) + len(MLP_MISTAKES)
               + len(ATTENTION_MISTAKES) + len(cases.GRADIENTS))
    assert answers >= 50
    by_target = {}
    for _, _, target, _, reason, _ in MAKEMORE_MISTAKES:
        by_target.setdefault(reason, []).append(target)
    assert len(by_target["scatter"]) >= 2 and set(by_target["scatter"]) == {"dC"}
    assert {"dcounts_sum_inv", "db1", "dbnmeani"} <= set(by_target["broadcast"])
    assert by_target["path"].count("dcounts") >= 2
    assert sum(t == "dlogit_maxes" for _, _, t, *_ in MAKEMORE_MISTAKES) >= 2
    for reason in ("bessel", "transpose", "sign", "elementwise", "factor"):
        assert len(by_target[reason]) >= 2, reason
    assert sum("(1 - h**2)" in m[5] or m[4] == "elementwise" and m[2] == "dhpreact"
               for m in MAKEMORE_MISTAKES) >= 2
