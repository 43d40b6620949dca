"""The JAX recorder and the cell backward of JAX runs (einsum_magic.chain.recorders.jax).

Every gradient is proven against ``jax.vjp`` of the same code, computed here in float64 on
the cell's own values; never against the package's own check.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = jax.numpy

from jax._src import core, pjit  # noqa: E402

from einsum_magic.chain.recorders import recording  # noqa: E402
from einsum_magic.chain.recorders import jax as jax_recorder  # noqa: E402
from einsum_magic.chain.result import from_recording  # noqa: E402
from einsum_magic.chain.rules import RULES, Back, rule_for  # noqa: E402
import einsum_magic.chain.rules.jax  # noqa: E402,F401 - registers the rules the tests replace


def run(cell: str, ns: dict):
    """Record ``cell`` run in ``ns``; the record and the cell backward (checked)."""
    code = compile(cell, "<cell>", "exec")
    with recording(ns) as rec:
        exec(code, ns)
    return rec, (from_recording(rec, ns, cell) if rec.nodes and not rec.stopped else None)


def vjp(fn, primals: dict, cot=1.0) -> dict:
    """jax.vjp of ``fn(**primals)`` in float64, with cotangent ``cot``."""
    names = sorted(primals)
    with jax.enable_x64(True):
        xs = [jnp.asarray(np.asarray(primals[n], dtype=np.float64)) for n in names]
        out, pull = jax.vjp(lambda *a: fn(**dict(zip(names, a))), *xs)
        grads = pull(jnp.asarray(cot, dtype=out.dtype))
    return {n: np.asarray(g) for n, g in zip(names, grads)}


def close(got, want, what):
    scale = max(float(np.max(np.abs(want))), 1e-12)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-8, atol=1e-8 * scale,
                               err_msg=what)


def data(seed=0, *shapes):
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(s)) for s in shapes]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# -- what is recorded --------------------------------------------------------------------------

def test_eager_operations_are_lax_primitives_with_their_params(x64):
    X, W = data(0, (4, 3), (3, 5))
    ns = {"jnp": jnp, "X": X, "W": W}
    rec, b = run("H = X @ W\nZ = jnp.tanh(H)\nL = jnp.sum(Z ** 2) + X[0, 1]\n", ns)
    ops = [(n.op, n.kw().get("name")) for n in rec.nodes]
    assert ops[:2] == [("jax.lax.jit", "matmul"), ("jax.lax.jit", "tanh")]
    assert ("jax.lax.slice", None) in ops and ("jax.lax.squeeze", None) in ops
    assert all(op.startswith("jax.lax.") for op, _ in ops)
    matmul = rec.nodes[0]
    assert rec.values[matmul.outs[0]] is ns["H"]           # the run's own result, no copy
    assert "jaxpr" in matmul.kw()                            # the primitive's params
    # the user's names, by identity; the product's part is a dot_general with its params
    assert {"X", "W", "H", "Z", "L"} <= set(b.names.name.values())
    dots = [p for p in b.program.parts if p.op == "jax.lax.dot_general"]
    assert dots and dots[0].kw()["dimension_numbers"] == (((1,), (0,)), ((), ()))
    assert any("np.einsum('ac,bc->ab'" in line.code or "np.einsum(" in line.code
               for line in b.lines if line.rule.startswith("swap"))
    want = vjp(lambda X, W: jnp.sum(jnp.tanh(X @ W) ** 2) + X[0, 1], {"X": X, "W": W})
    got = b.gradients()
    for n in ("X", "W"):
        close(got[n], want[n], n)
    assert b.check.status == "PASS", b.check.summary


def test_a_jitted_function_is_one_node_decomposed_into_its_inner_ops(x64):
    X, W, b0 = data(1, (6, 4), (4, 3), (3,))
    f = jax.jit(lambda x, w, b: jnp.tanh(x @ w + b) * 2.0)
    f(X, W, b0)                           # traced and cached before the cell, as in a notebook
    ns = {"jnp": jnp, "f": f, "X": X, "W": W, "b": b0}
    rec, bw = run("Y = f(X, W, b)\nL = jnp.sum(Y * Y)\n", ns)
    assert [n.op for n in rec.nodes] == ["jax.lax.jit", "jax.lax.jit", "jax.lax.jit"]
    assert rec.nodes[0].kw()["name"] == "<lambda>"
    inner = [p.op for p in bw.program.parts if p.index == 0]
    assert {"jax.lax.dot_general", "jax.lax.add", "jax.lax.tanh", "jax.lax.mul"} <= set(inner)
    want = vjp(lambda X, W, b: jnp.sum((jnp.tanh(X @ W + b) * 2.0) ** 2),
               {"X": X, "W": W, "b": b0})
    got = bw.gradients()
    for n in ("X", "W", "b"):
        close(got[n], want[n], n)
    assert bw.check.status == "PASS", bw.check.summary
    # the C++ fast path is back after the block: a plain call records nothing anywhere
    assert jax_recorder._ACTIVE[0] is None


def test_custom_jvp_relu_is_kept_whole_with_its_own_gradient_at_zero(x64):
    X, W, C = data(2, (4, 3), (3, 5), (4, 5))
    X = X.at[1].set(0.0)                                   # a row of X @ W is exactly 0
    ns = {"jax": jax, "jnp": jnp, "X": X, "W": W, "C": C}
    rec, b = run("Z = jax.nn.relu(X @ W)\nL = jnp.sum(Z * C)\n", ns)
    relu = [n for n in rec.nodes if n.op == "jax.lax.custom_jvp_call"]
    assert len(relu) == 1 and not any(n.kw().get("name") == "relu" and n.op == "jax.lax.jit"
                                      for n in rec.nodes)
    want = vjp(lambda X, W: jnp.sum(jax.nn.relu(X @ W) * C), {"X": X, "W": W})
    got = b.gradients()
    for n in ("X", "W"):
        close(got[n], want[n], n)
    assert np.all(got["X"][1] == 0)                         # relu passes nothing at 0
    tie = vjp(lambda X, W: jnp.sum(jnp.maximum(X @ W, 0.0) * C), {"X": X, "W": W})
    assert not np.allclose(tie["X"][1], 0)                  # max would pass half there
    assert b.check.status == "PASS", b.check.summary


def test_custom_jvp_inside_a_jitted_function_is_kept_whole_among_its_parts(x64):
    X, W = data(3, (4, 3), (3, 2))
    X = X.at[0].set(0.0)
    g = jax.jit(lambda x, w: jax.nn.relu(x @ w))
    ns = {"jnp": jnp, "g": g, "X": X, "W": W}
    rec, b = run("L = jnp.sum(g(X, W) ** 3)\n", ns)
    ops = [p.op for p in b.program.parts]
    assert "jax.lax.custom_jvp_call" in ops and "jax.lax.max" not in ops
    want = vjp(lambda X, W: jnp.sum(jax.nn.relu(X @ W) ** 3), {"X": X, "W": W})
    got = b.gradients()
    for n in ("X", "W"):
        close(got[n], want[n], n)
    assert b.check.status == "PASS", b.check.summary


@pytest.mark.parametrize("seed", range(4))
def test_an_mlp_with_logsumexp_and_vmap_equals_jax_vjp(x64, seed):
    from jax.scipy.special import logsumexp

    X, W1, b1, W2, T = data(seed, (5, 4), (4, 6), (6,), (6, 3), (5, 3))

    def predict(x, W1, b1, W2):
        h = jnp.tanh(jnp.dot(x, W1) + b1)
        logits = h @ W2
        return logits - logsumexp(logits)

    batched = jax.vmap(predict, in_axes=(0, None, None, None))
    ns = {"jnp": jnp, "batched": batched, "X": X, "W1": W1, "b1": b1, "W2": W2, "T": T}
    rec, b = run("P = batched(X, W1, b1, W2)\nL = -jnp.mean(P * T)\n", ns)
    want = vjp(lambda W1, b1, W2: -jnp.mean(batched(X, W1, b1, W2) * T),
               {"W1": W1, "b1": b1, "W2": W2})
    got = b.gradients()
    for n in ("W1", "b1", "W2"):
        close(got[n], want[n], n)
    assert b.check.status == "PASS", b.check.summary


def test_integer_indexing_gathers_and_scatters_back(x64):
    (E, V) = data(4, (7, 3), (4, 3))
    idx = jnp.array([0, 2, 2, 6])
    ns = {"jnp": jnp, "E": E, "V": V, "idx": idx}
    rec, b = run("rows = E[idx]\nL = jnp.sum(rows * V) + jnp.sum(E[1:3] ** 2)\n", ns)
    want = vjp(lambda E: jnp.sum(E[idx] * V) + jnp.sum(E[1:3] ** 2), {"E": E})
    close(b.gradients()["E"], want["E"], "E")
    assert any("np.add.at" in line.code for line in b.lines)
    assert b.check.status == "PASS", b.check.summary


@pytest.mark.parametrize("axis, index", [
    (1, [[0], [3], [1], [4]]),                          # a cross entropy's picked log-probability
    (0, [[0, -1, 2, 3, 1], [3, 3, 0, 1, 1]]),          # negative and repeated indices
])
def test_take_along_axis_scatters_back_where_it_took(x64, axis, index):
    (x,) = data(5, (4, 5))
    y = jnp.array(index)
    ns = {"jnp": jnp, "jax": jax, "x": x, "y": y}
    rec, b = run(f"lp = jax.nn.log_softmax(x)\nL = -jnp.take_along_axis(jnp.sin(lp), y, "
                 f"axis={axis}).sum()\n", ns)
    want = vjp(lambda x: -jnp.take_along_axis(jnp.sin(jax.nn.log_softmax(x)), y, axis=axis)
               .sum(), {"x": x})
    assert not b.program.opaque, b.notes
    close(b.gradients()["x"], want["x"], "x")
    assert b.check.status == "PASS", b.check.summary


def test_take_along_axis_of_three_axes(x64):
    (x,) = data(6, (2, 4, 5))
    y = jnp.asarray(np.random.default_rng(1).integers(0, 4, (2, 3, 5)))
    ns = {"jnp": jnp, "x": x, "y": y}
    rec, b = run("L = jnp.sum(jnp.take_along_axis(x, y, axis=1) ** 2)\n", ns)
    want = vjp(lambda x: jnp.sum(jnp.take_along_axis(x, y, axis=1) ** 2), {"x": x})
    close(b.gradients()["x"], want["x"], "x")
    assert b.check.status == "PASS", b.check.summary


def test_every_line_of_elementwise_primitives_says_its_rule(x64):
    (x,) = data(9, (3, 4))
    rec, b = run("L = jnp.sum(jnp.exp(-x) * jnp.tanh(x) + jnp.log(x ** 2 + 1))\n",
                 {"jnp": jnp, "x": x})
    assert all(line.rule for line in b.lines), [(line.code, line.rule) for line in b.lines]
    assert any(line.rule == "y = exp(x): g * y" for line in b.lines)


def test_a_float32_run_is_checked_in_float64():
    rng = np.random.default_rng(5)
    X = jnp.asarray(rng.standard_normal((4, 3)), dtype=jnp.float32)
    W = jnp.asarray(rng.standard_normal((3, 2)), dtype=jnp.float32)
    ns = {"jnp": jnp, "X": X, "W": W}
    rec, b = run("L = jnp.sum(jnp.tanh(X @ W) ** 2)\n", ns)
    assert ns["L"].dtype == jnp.float32
    assert b.check.status == "PASS", b.check.summary
    want = vjp(lambda W: jnp.sum(jnp.tanh(jnp.asarray(X, jnp.float64) @ W) ** 2), {"W": W})
    np.testing.assert_allclose(b.gradients()["W"], want["W"], rtol=1e-4, atol=1e-5)


# -- the rules decide: a wrong rule FAILs, a removed one is PARTIAL ------------------------------

CELL = "H = X @ W\nZ = jnp.tanh(H)\nL = jnp.sum(Z * Y) + jnp.sum(V * X)\n"


def _cell_ns():
    X, W, Y, V = data(6, (4, 3), (3, 5), (4, 5), (4, 3))
    return {"jnp": jnp, "X": X, "W": W, "Y": Y, "V": V}


def _wrong_tanh(node, ctx):
    return [Back(node.args[0], f"{ctx.g(0)} * (1 - {ctx.out(0)})")]     # not 1 - y²


def test_a_wrong_jax_rule_makes_the_check_fail(x64, monkeypatch):
    rule_for(type("N", (), {"framework": "jax", "op": "jax.lax.tanh"})())
    monkeypatch.setitem(RULES, "jax.lax.tanh", _wrong_tanh)
    rec, b = run(CELL, _cell_ns())
    assert b.check.status == "FAIL", b.check.summary
    wrong = b.check.summary.split("wrong: ")[1]
    assert "W" in wrong.split(", ") and "H" in wrong.split(", ")
    assert "Z" not in wrong.split(", ")                     # after tanh: still right


def test_a_removed_jax_rule_makes_the_check_partial_never_pass(x64, monkeypatch):
    rule_for(type("N", (), {"framework": "jax", "op": "jax.lax.tanh"})())
    monkeypatch.delitem(RULES, "jax.lax.tanh")
    ns = _cell_ns()
    rec, b = run(CELL, ns)
    assert b.check.status == "PARTIAL" and "PASS" not in b.check.summary
    assert "`jax.lax.tanh`, line 2" in b.check.summary
    assert {"W", "H"} <= set(b.not_derived)
    got = b.gradients()
    assert "W" not in got and "X" not in got                # X crosses tanh on one path
    want = vjp(lambda Z: jnp.sum(Z * ns["Y"]), {"Z": ns["Z"]})
    close(got["Z"], want["Z"], "Z")


def test_an_operation_without_a_rule_is_opaque_and_named(x64):
    X, Y, W = data(7, (4, 3), (5, 3), (3, 2))
    ns = {"jnp": jnp, "X": X, "Y": Y, "W": W}
    rec, b = run("A = X @ X.T\nevals = jnp.linalg.eigh(A)[0]\n"
                 "L = jnp.sum(evals) + jnp.sum((Y @ W) ** 2)\n", ns)
    assert b.check.status == "PARTIAL" and "`jax.lax.eigh`, line 2" in b.check.summary
    assert "X" in b.not_derived and "eigh" in b.not_derived["X"]
    want = vjp(lambda Y, W: jnp.sum((Y @ W) ** 2), {"Y": Y, "W": W})
    got = b.gradients()
    for n in ("Y", "W"):
        close(got[n], want[n], n)


@pytest.mark.parametrize("loop", [
    "h, hs = jax.lax.scan(step, jnp.zeros(3, jnp.float32), X)\nS = hs.sum()",
    "S = jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 0.9), (0, X))[1]"
    ".sum()",
    "S = jax.lax.cond(True, lambda a: a * 2, lambda a: a, X).sum()",
], ids=["scan", "while", "cond"])
def test_a_loop_traced_in_float32_is_opaque_and_the_other_paths_are_checked(loop):
    """A float32 run: the replay in float64 binds the loop on the dtypes its body was traced
    for (before, the check was not run at all); what crosses it is not derived."""
    X, W, V = (np.asarray(a, np.float32) for a in data(8, (5, 3), (3, 3), (3, 2)))
    X, W, V = jnp.asarray(X), jnp.asarray(W), jnp.asarray(V)

    def step(h, xt):
        h = jnp.tanh(h @ W + xt)
        return h, h

    ns = {"jnp": jnp, "jax": jax, "X": X, "W": W, "V": V, "step": step}
    rec, b = run(loop + "\nL = S + jnp.sum(jnp.sin(X @ V))\n", ns)
    assert b.check is not None, b.check_note
    assert b.check.status == "PARTIAL", b.check.summary
    assert "X" in b.not_derived
    want = vjp(lambda V: jnp.sum(jnp.sin(jnp.asarray(X, jnp.float64) @ V)), {"V": V})
    np.testing.assert_allclose(b.gradients()["V"], want["V"], rtol=1e-5)   # float32's run


# -- the recorder leaves JAX as it found it -------------------------------------------------------

def _internals():
    return (core.EvalTrace.__dict__["process_primitive"],
            core.EvalTrace.__dict__["process_custom_jvp_call"],
            pjit._get_fastpath_data, pjit._run_python_pjit)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_the_recorder_is_removed_after_the_block_even_on_an_error(error):
    before = _internals()
    X = jnp.ones((2, 2))
    with pytest.raises(error):
        with recording({"X": X}) as rec:
            assert _internals() != before                   # observing inside the block
            X @ X
            raise error("the cell failed")
    assert _internals() == before and jax_recorder._ACTIVE[0] is None
    assert [n.op for n in rec.nodes] == ["jax.lax.jit"]
    seen = []
    with recording({}) as other:
        pass
    X @ X                                                   # outside: nothing is recorded
    assert not other.nodes and not seen


def test_a_record_stopped_for_any_reason_puts_jax_back_at_once():
    before = _internals()
    X = jnp.ones((2, 2))
    with recording({"X": X}) as rec:
        assert _internals() != before
        rec.stop("stopped elsewhere (the NumPy side's budget, say)")
        assert _internals() == before and jax_recorder._ACTIVE[0] is None
        X @ X                                               # runs as without the magic
    assert _internals() == before and not rec.nodes


def test_the_version_guard_says_why_in_one_line(monkeypatch):
    assert jax_recorder.unavailable() == ""                 # the installed JAX is covered
    why = jax_recorder.unavailable((0, 4, 1))
    assert "JAX 0.4.1" in why and "\n" not in why
    monkeypatch.setattr(jax, "__version_info__", (0, 4, 1))
    before = _internals()
    X = jnp.ones((2, 2))
    ns = {"jnp": jnp, "X": X}
    code = compile("Y = X @ X\n", "<cell>", "exec")
    with recording(ns) as rec:
        assert _internals() == before                       # nothing patched
        exec(code, ns)
    assert rec.stopped == ("JAX operations are not recorded (Y is a JAX array the cell "
                           "computed): " + why)
    assert not rec.nodes


def test_a_missing_internal_is_said_not_patched(monkeypatch):
    monkeypatch.delattr(pjit, "_run_python_pjit")
    assert jax_recorder.unavailable() == ("this JAX lacks the internals the recorder "
                                          "observes (_run_python_pjit)")
