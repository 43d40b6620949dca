"""The cell check without JAX: NumPy's adjoint test of a NumPy replay, as for one einsum.

JAX is made unavailable the way the einsum tests of the fallback do it (``sys.modules["jax"]
= None``: not installed). The verdicts are proven, not assumed: a right backward PASSes, a
deliberately wrong rule (the tanh of tests/chain/test_record.py, in NumPy) FAILs the cell and
names exactly the gradients upstream of it, an opaque step is PARTIAL, never PASS, and a kink
is "not checked", never a FAIL of a right subgradient. The gradients themselves are proven
against a hand-written backward in NumPy here, never against the package's own check.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from IPython.utils.capture import capture_output

import einsum_magic.chain.rules.numpy  # noqa: F401 - registers the NumPy rules the tests replace
from einsum_magic.chain.replay_numpy import ADJOINT_RTOL, adjoint_numpy
from einsum_magic.chain.rules import RULES
from einsum_magic.check.jax import INSTALL

import mlp
from mlp import MLP_CELL

MLP = mlp.arrays(3)
WITHOUT = f"checked with NumPy (adjoint test), JAX not available: not installed ({INSTALL})"


@pytest.fixture
def ip(shell, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)          # as if JAX were not installed
    monkeypatch.setitem(sys.modules, "jax.numpy", None)
    shell.push({"np": np})
    return shell


def run(shell, cell: str, **arrays):
    shell.push({k: np.array(v, copy=True) for k, v in arrays.items()})
    with capture_output() as cap:
        result = shell.run_cell("%%einsum_grad -o res\n" + cell)
    return result, cap, shell.user_ns.get("res")


def mlp_gradients(X, W1, b1, W2, dP):
    """The MLP's backward written out by hand (softmax, relu with jax.vjp's half at a tie)."""
    H = X @ W1 + b1
    Z = np.maximum(H, 0)
    S = Z @ W2
    E = np.exp(S - S.max(axis=1, keepdims=True))
    P = E / E.sum(axis=1, keepdims=True)
    dS = P * (dP - (dP * P).sum(axis=1, keepdims=True))
    dZ = dS @ W2.T
    dH = dZ * ((H > 0) + 0.5 * (H == 0))
    return {"X": dH @ W1.T, "W1": X.T @ dH, "b1": dH.sum(axis=0), "W2": Z.T @ dS}


def test_a_right_backward_passes_the_adjoint_test_without_jax(ip):
    result, cap, res = run(ip, MLP_CELL, **MLP)
    assert result.success, cap.stdout + str(result.error_in_exec)
    b = res.backward
    r = b.check
    assert r.status == "PASS" and r.reference == "adjoint" and r.framework == "numpy"
    assert r.summary == ("cell check: PASS, 12/12 gradients pass the adjoint test of the NumPy "
                         f"replay (float64); {WITHOUT}")
    assert {row.against for row in r.rows} == {"adjoint test"}
    assert all(row.max_abs_error <= ADJOINT_RTOL * row.scale + row.atol for row in r.rows)
    # what passed is right: the derived gradients against the backward written by hand
    dP = np.random.default_rng(7).standard_normal((4, 2))
    ours = b.gradients({"P": dP})
    want = mlp_gradients(**MLP, dP=dP)
    for name, w in want.items():
        np.testing.assert_allclose(ours[name], w, rtol=1e-10, atol=1e-12, err_msg=name)
    # the display says which reference ran, first line and HTML
    text = [o.data for o in cap.outputs if "text/plain" in o.data][-1]
    assert text["text/plain"].splitlines()[0] == "cell backward: " + r.summary
    assert "NumPy's adjoint test &lt;u, J d&gt; = &lt;g, d&gt;" in text["text/html"]
    assert "not installed" in text["text/html"]


def test_a_wrong_rule_fails_the_adjoint_test_and_the_cell(ip, monkeypatch):
    good = RULES["numpy.tanh"]

    def wrong(node, ctx):                     # tests/chain/test_numpy_record.py's wrong tanh
        (back,) = good(node, ctx)
        return [type(back)(back.ref, back.expr.replace("1 -", "1.5 -"))]

    monkeypatch.setitem(RULES, "numpy.tanh", wrong)
    cell = "H = X @ W1\nZ = np.tanh(H)\nL = (Z * Z).sum() + (X * X).sum()"
    result, cap, res = run(ip, cell, X=MLP["X"], W1=MLP["W1"])
    assert not result.success and "cell check: FAIL" in str(result.error_in_exec)
    r = res.backward.check
    assert r.status == "FAIL" and r.reference == "adjoint"
    assert {row.name for row in r.rows if row.status == "fail"} == {"X", "W1", "H"}
    assert "Z" in {row.name for row in r.rows if row.passed}          # after tanh: right
    assert r.summary.endswith("; wrong: X, W1, H; " + WITHOUT)
    assert "fails the adjoint test" in next(row for row in r.rows if row.name == "W1").message


def test_a_subtly_wrong_rule_fails_too(ip, monkeypatch):
    """``1 - y`` for ``1 - y ** 2`` (test_record.py's wrong tanh): off by far less than the
    values, still far over the test's tolerance."""
    def subtle(node, ctx):
        from einsum_magic.chain.rules import Back

        return [Back(node.args[0], f"{ctx.g(0)} * (1 - {ctx.out(0)} ** 2 + 1e-3)")]

    monkeypatch.setitem(RULES, "numpy.tanh", subtle)
    result, cap, res = run(ip, "H = X @ W1\nZ = np.tanh(H)", X=MLP["X"], W1=MLP["W1"])
    assert not result.success
    assert res.backward.check.status == "FAIL"
    assert {row.name for row in res.backward.check.rows if row.status == "fail"} == \
        {"X", "W1", "H"}


def test_an_opaque_step_is_partial_never_pass(ip, monkeypatch):
    monkeypatch.delitem(RULES, "numpy.tanh")
    result, cap, res = run(ip, "H = A @ B\nZ = np.tanh(H) + A.sum()", A=MLP["X"], B=MLP["W1"])
    assert result.success, cap.stdout                     # PARTIAL is no failure of the cell
    r = res.backward.check
    assert r.status == "PARTIAL" and not r.passed and r.reference == "adjoint"
    assert "not derived across `numpy.tanh`, line 2" in r.summary and "PASS" not in r.summary
    assert r.summary.endswith(WITHOUT)
    assert {row.name for row in r.rows if row.status == "not derived"} == {"A", "B", "H"}


def test_an_opaque_library_call_is_partial(ip):
    S = MLP["W1"] @ MLP["W1"].T + 3 * np.eye(3)
    result, cap, res = run(ip, "Si = np.linalg.inv(S)\nL = (Si * Y).sum() + (Y * Y).sum()",
                           S=S, Y=MLP["X"][:3])
    assert result.success, cap.stdout
    r = res.backward.check
    assert r.status == "PARTIAL" and "not derived across `numpy.linalg.inv`, line 1" in r.summary
    assert any(row.name == "Y" and row.passed for row in r.rows)     # the rest is checked


def test_a_kink_is_not_checked_never_a_fail_of_a_right_subgradient(ip):
    X = np.array([[0.0, 1.5, -2.0], [0.5, 0.0, -1.0]])
    result, cap, res = run(ip, "A = np.abs(X)\nL = (A * W).sum()", X=X, W=MLP["W1"].T[:2])
    assert result.success, cap.stdout
    r = res.backward.check
    assert r.status == "PARTIAL", r.summary
    (x,) = [row for row in r.rows if row.name == "X"]
    assert x.status == "not checked" and "one-sided" in x.skipped
    assert "the adjoint test could not judge dL_dX" in r.summary


def test_a_stationary_point_is_judged_not_taken_for_a_kink(ip):
    """The gradient of a centred square with respect to the mean it subtracts is 0: its
    one-sided differences disagree by the curvature alone, which shrinks with the step."""
    X = np.array([[0.1, -0.4, 0.7, 0.2], [-0.5, 0.3, 1.3, 0.9]])
    result, cap, res = run(ip, "V = np.tanh(X)\nC = V - V.mean(axis=1, keepdims=True)\n"
                           "L = (C * C).sum()", X=X)
    assert result.success, cap.stdout
    r = res.backward.check
    assert r.reference == "adjoint" and r.status == "PASS", r.summary
    (mean,) = [row for row in r.rows if row.name == "mean"]
    assert mean.status == "pass"


def test_over_its_budget_the_adjoint_test_says_so(ip, monkeypatch):
    from einsum_magic.chain import replay_numpy

    result, cap, res = run(ip, MLP_CELL, **MLP)
    b = res.backward
    rec = b.recording
    size = sum(int(np.prod(rec.info[o].shape)) for n in rec.nodes for o in n.outs)
    r = adjoint_numpy(b, budget=size - 1)
    assert r.status == "UNCHECKED" and r.summary.startswith(
        f"cell check: not run: the replay would recompute {size} elements")
    assert r.summary.endswith("; checked with NumPy (adjoint test)")
    assert adjoint_numpy(b, budget=size).status == "PASS"
    monkeypatch.setattr(replay_numpy, "ADJOINT_ELEMENTS", 1)   # the replay fits, its 24 do not
    r = adjoint_numpy(b, budget=size)
    assert r.status == "UNCHECKED" and "the adjoint test would recompute" in r.reason


def test_a_stiff_chain_is_judged_with_a_shorter_step(ip, monkeypatch):
    """exp of a product of exps: central differences at the usual step err by the curvature
    (X's row failed a right gradient); a ten times shorter step shrinks the error of a right
    gradient, so the test passes it, and a gradient wrong by 1 % still fails."""
    X = np.array([[0.68217667, 0.12669366, 1.23976629, -0.40193797],
                  [2.52165278, 0.42300751, -0.87427952, 0.76800118],
                  [-0.01095422, -1.05768026, -1.36740437, 0.2025818]])
    cell = ("V0 = np.exp(0.3 * X)\nV1 = V0 * X\nV2 = V1 * X\nV3 = np.exp(0.3 * V2)\n"
            "V4 = V3 * V2\nV5 = np.exp(0.3 * V4)\nL = (V5 * X).sum()")
    result, cap, res = run(ip, cell, X=X)
    assert result.success, cap.stdout
    r = res.backward.check
    (x,) = [row for row in r.rows if row.name == "X"]
    assert x.status == "pass", r.summary
    assert "FAIL" not in r.summary and r.status == "PARTIAL", r.summary   # V4, V5: not checked
    good = RULES["numpy.exp"]

    def off(node, ctx):                        # exp's rule wrong by 1 %
        (back,) = good(node, ctx)
        return [type(back)(back.ref, f"1.01 * ({back.expr})")]

    monkeypatch.setitem(RULES, "numpy.exp", off)
    result, cap, res = run(ip, cell, X=X)
    (x,) = [row for row in res.backward.check.rows if row.name == "X"]
    assert x.status == "fail" and not x.passed, res.backward.check.summary


# -- random smooth programs: the adjoint test's verdict is the truth ------------------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

STEPS = ["np.tanh({x})", "np.exp(0.3 * {x})", "{x} * {y}", "np.sin({x}) + {y}",
         "{x} / (1 + {x} ** 2)", "{x} @ W", "np.einsum('ij,kj->ik', {x}, W)",
         "{x} - {x}.mean(axis=1, keepdims=True)", "np.sqrt(1 + {x} ** 2)"]


@st.composite
def smooth_programs(draw):
    """A cell of 2 to 6 smooth steps over X (3, 4) and W (4, 4), and a scalar loss."""
    names = ["X"]
    lines = []
    for k in range(draw(st.integers(2, 6))):
        step = draw(st.sampled_from(STEPS))
        x, y = names[-1], draw(st.sampled_from(names))       # a chain: one sink, L
        lines.append(f"V{k} = " + step.format(x=x, y=y))
        names.append(f"V{k}")
    lines.append(f"L = ({names[-1]} * {draw(st.sampled_from(names))}).sum()")
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return "\n".join(lines), {"X": rng.normal(size=(3, 4)), "W": rng.normal(size=(4, 4)) / 2}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(smooth_programs())
def test_random_smooth_programs_pass_and_their_gradients_are_jax_s(ip, monkeypatch, case):
    source, arrays = case
    result, cap, res = run(ip, source, **arrays)
    # a program whose values overflow (exp of exp of exp) has no gradient to judge
    assume(all(np.isfinite(ip.user_ns[f"V{k}"]).all() for k in range(source.count("\nV") + 1)))
    assert result.success, source + cap.stdout
    b = res.backward
    if b is None:                              # one product alone: its einsum display
        return
    assert b.check.reference == "adjoint", b.check
    # every gradient passes, but for a value whose magnitudes span more orders than one
    # step suits (exp of exp): not checked, never a FAIL of a right gradient
    unjudged = [r for r in b.check.rows if r.status == "not checked"]
    assert all("orders" in r.skipped for r in unjudged), (source, b.check)
    assert b.check.status == ("PARTIAL" if unjudged else "PASS"), (source, b.check)
    ours = b.gradients()
    with monkeypatch.context() as m:           # JAX back, for the test's own reference
        m.delitem(sys.modules, "jax")
        m.delitem(sys.modules, "jax.numpy")
        jax = pytest.importorskip("jax")
        jnp = jax.numpy

        def loss(X, W):
            ns = {"np": jnp, "X": X, "W": W}
            exec(source, ns)
            return ns["L"]

        with jax.enable_x64(True):
            want = jax.grad(loss, argnums=(0, 1))(jnp.asarray(arrays["X"]),
                                                  jnp.asarray(arrays["W"]))
    for name, w in zip(("X", "W"), want):
        if name in b.inputs:
            np.testing.assert_allclose(ours[name], np.asarray(w), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name} in\n{source}")


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(smooth_programs())
def test_a_rule_wrong_by_one_percent_fails_in_random_programs(ip, monkeypatch, case):
    source, arrays = case
    source = "T = np.tanh(X)\n" + source.replace("X", "T").replace("T = np.tanh(T)",
                                                                      "T = np.tanh(X)")
    good = RULES["numpy.tanh"]

    def off(node, ctx):
        (back,) = good(node, ctx)
        return [type(back)(back.ref, f"1.01 * ({back.expr})")]

    monkeypatch.setitem(RULES, "numpy.tanh", off)
    result, cap, res = run(ip, source, **arrays)
    assert not result.success, source
    r = res.backward.check
    assert r.status == "FAIL" and "X" in {row.name for row in r.rows if row.status == "fail"}, \
        (source, r.summary)
    if "tanh" not in case[0]:                  # the only tanh: what comes after it is right
        assert "T" not in {row.name for row in r.rows if row.status == "fail"}, r.summary
