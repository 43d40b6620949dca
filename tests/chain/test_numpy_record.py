"""The cell backward of NumPy cells from the record of the run, through a real IPython shell.

Every gradient is proven against ``jax.vjp`` of the same forward pass written by the test
itself with ``jax.numpy`` (the cell's source executed with ``np`` meaning ``jax.numpy``, or a
rewrite by hand where the cell changes arrays in place), in float64, rtol 1e-6; never
against the package's own check. The cases of the retiring text reading
(tests/chain/test_chain.py) are here on the record, with the cases of issue 18 it got wrong.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.utils.capture import capture_output

from einsum_magic.chain.recorders.numpy import Boxed
from einsum_magic.chain.rules import RULES
import einsum_magic.chain.rules.numpy  # noqa: E402,F401 - registers the NumPy rules the tests replace

import mlp
from mlp import MLP_CELL

jax = pytest.importorskip("jax")
jnp = jax.numpy

RTOL = 1e-6


@pytest.fixture
def ip(shell):
    shell.push({"np": np})
    return shell


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def backward_of(shell, cell: str, **arrays):
    """Push ``arrays``, run ``cell`` under the magic, return its CellBackward."""
    shell.push({k: np.array(v, copy=True) for k, v in arrays.items()})
    result, cap = run(shell, "%%einsum_grad -o res\n" + cell)
    assert result.success, cap.stdout + str(result.error_in_exec)
    b = shell.user_ns["res"].backward
    assert b is not None, cap.stdout
    return b, cap


def vjp(forward, arrays: dict, cotangents):
    """jax.vjp of ``forward(**arrays)`` (a tuple of sinks) in float64: name → gradient."""
    names = list(arrays)
    with jax.enable_x64(True):
        xs = [jnp.asarray(np.asarray(arrays[n], dtype=np.float64)) for n in names]
        out, pull = jax.vjp(lambda *v: forward(**dict(zip(names, v))), *xs)
        cots = tuple(jnp.asarray(c, dtype=jnp.float64) for c in cotangents)
        return {n: np.asarray(g) for n, g in zip(names, pull(cots))}


def source_forward(source: str, sinks, extra=None):
    """The cell's source run with ``np`` meaning jax.numpy (the test's own rewrite)."""
    def forward(**xs):
        ns = {"np": jnp, "jnp": jnp, "jax": jax, **(extra or {}), **xs}
        exec(source, ns)
        return tuple(ns[s] for s in sinks)

    return forward


def assert_close(got, want, name):
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    np.testing.assert_allclose(got, want, rtol=0, atol=RTOL * max(scale, 1e-12), err_msg=name)


def assert_matches_jax(shell, cell, arrays, *, forward=None, seed=0, extra=None):
    """Every input's gradient of the recorded backward equals jax.vjp of the test's rewrite."""
    b, cap = backward_of(shell, cell, **arrays)
    rng = np.random.default_rng(seed)
    rec = b.recording
    cots = {}
    for s, v in zip(b.sinks, b.program.sinks):
        shape = rec.info[v].shape
        cots[s] = np.float64(1.0) if not shape else rng.standard_normal(shape)
    ours = b.gradients(cots)
    inputs = [n for n in b.inputs if n in arrays]
    assert inputs, b.inputs
    want = vjp(forward or source_forward(cell, b.sinks, extra), {n: arrays[n] for n in inputs},
               [cots[s] for s in b.sinks])
    for name in inputs:
        assert ours[name].shape == np.shape(arrays[name]), name
        assert_close(ours[name], want[name], name)
    return b, cap


def no_boxes(ns) -> bool:
    for v in ns.values():
        if isinstance(v, Boxed):
            return False
        if type(v) in (list, tuple) and any(isinstance(x, Boxed) for x in v):
            return False
        if type(v) is dict and any(isinstance(x, Boxed) for x in v.values()):
            return False
    return True


RNG = np.random.default_rng(1)
MLP = mlp.arrays(RNG)


# -- the MLP of the text reading, on the record -------------------------------------------------

def test_the_mlp_backward_reads_in_the_tricks_words_and_matches_jax(ip):
    b, cap = assert_matches_jax(ip, MLP_CELL, MLP)
    assert b.inputs == ("X", "W1", "b1", "W2") and b.sinks == ("P",)
    code = b.code
    assert "dL_dZ = np.einsum('bk,jk->bj', dL_dS, W2)" in code
    assert re.search(r"dL_dW1 = np.einsum\('bj,bi->ij', dL_deinsum\w*, X\)", code)
    assert "dL_dH = dL_dZ * ((H > 0) + 0.5 * (H == 0))" in code     # jax.vjp's tie
    assert ".sum(axis=0)" in code                         # the bias summed back
    assert b.check.passed, b.check.summary
    assert b.check.summary == ("cell check: PASS, 12/12 gradients match jax autograd of the "
                               "replayed run (float64)")
    assert no_boxes(ip.user_ns) and type(ip.user_ns["P"]) is np.ndarray


def test_a_removed_rule_makes_the_check_partial_never_pass(ip, monkeypatch):
    ip.push({"A": MLP["X"], "B": MLP["W1"]})
    monkeypatch.delitem(RULES, "numpy.tanh")
    result, cap = run(ip, "%%einsum_grad -o res\nH = A @ B\nZ = np.tanh(H) + A.sum()")
    assert result.success, cap.stdout
    b = ip.user_ns["res"].backward
    assert b.check.status == "PARTIAL" and not b.check.passed
    assert "not derived across `numpy.tanh`, line 2" in b.check.summary
    assert set(b.not_derived) == {"A", "B", "H"}


@pytest.fixture
def mlp_names(ip):
    ip.push({"MLP_X": MLP["X"], "MLP_W": MLP["W1"]})


def test_a_wrong_rule_is_reported_as_fail(ip, mlp_names, monkeypatch):
    good = RULES["numpy.tanh"]

    def wrong(node, ctx):
        (back,) = good(node, ctx)
        return [type(back)(back.ref, back.expr.replace("1 -", "1.5 -"))]

    monkeypatch.setitem(RULES, "numpy.tanh", wrong)
    result, cap = run(ip, "%%einsum_grad -o res\nH = MLP_X @ MLP_W\nZ = np.tanh(H)")
    assert not result.success and "cell check: FAIL" in str(result.error_in_exec)
    assert "wrong: MLP_X, MLP_W, H" in str(result.error_in_exec)


def test_the_magic_displays_the_cell_backward_last_and_o_stores_it(ip):
    ip.push(MLP)
    result, cap = run(ip, "%%einsum_grad -o res\n" + MLP_CELL)
    assert result.success, cap.stdout
    bundles = [o.data for o in cap.outputs if "text/plain" in o.data]
    assert len(bundles) == 3                       # two einsums, then the cell
    cell = bundles[-1]
    assert cell["text/plain"].splitlines()[0] == ("cell backward: cell check: PASS, 12/12 "
                                                  "gradients match jax autograd of the replayed "
                                                  "run (float64)")
    assert "Cell backward" in cell["text/html"]
    again = run(ip, "%%einsum_grad -o res\n" + MLP_CELL)[1]
    assert [o.data for o in again.outputs][-1] == cell       # deterministic (nbval)
    b = ip.user_ns["res"].backward
    assert b.inputs == ("X", "W1", "b1", "W2") and b.sinks == ("P",) and b.check.passed


def test_values_drawn_from_the_users_generator_come_from_the_run_not_a_second_draw(ip):
    cell = ("rng = np.random.default_rng(1)\ntokens = rng.normal(size=(6, 4))\n"
            "W = np.ones((4, 3))\nH = np.einsum('sm,mk->sk', tokens, W)\nZ = np.tanh(H)")
    b, cap = backward_of(ip, cell)
    after = ip.user_ns["rng"].bit_generator.state
    tokens = np.random.default_rng(1).normal(size=(6, 4))
    np.testing.assert_array_equal(ip.user_ns["tokens"], tokens)
    assert b.check.passed and "rng" not in b.inputs
    cot = np.random.default_rng(2).standard_normal((6, 3))
    want = vjp(lambda t, W: (jnp.tanh(t @ W),), {"t": tokens, "W": np.ones((4, 3))}, [cot])
    got = b.gradients({"Z": cot})
    assert_close(got["tokens"], want["t"], "tokens")
    assert_close(got["W"], want["W"], "W")
    assert ip.user_ns["rng"].bit_generator.state == after          # not drawn from again


# -- products and every linear op --------------------------------------------------------------

@pytest.mark.parametrize("cell, shapes", [
    ("C = A @ B", [(2, 3), (3, 4)]),
    ("C = A @ B", [(5, 2, 3), (3, 4)]),
    ("C = np.matmul(A, B)", [(3,), (3, 4)]),
    ("C = np.dot(A, B)", [(2, 3), (4, 3, 5)]),
    ("C = A.dot(B)", [(2, 3), (3,)]),
    ("C = np.inner(A, B)", [(2, 3), (4, 3)]),
    ("C = np.outer(A, B)", [(2,), (3,)]),
    ("C = np.tensordot(A, B, axes=([1], [0]))", [(2, 3), (3, 4)]),
    ("C = np.tensordot(A, B, axes=2)", [(2, 3, 4), (3, 4, 5)]),
    ("C = np.trace(A)", [(3, 3)]),
    ("C = np.diagonal(A)", [(3, 3)]),
    ("C = np.swapaxes(A, 0, 2)", [(2, 3, 4)]),
    ("C = A.transpose(1, 0, 2) + np.transpose(A, (1, 0, 2))", [(2, 3, 4)]),
    ("C = A.sum(axis=0)", [(2, 3)]),
    ("C = np.einsum('bij,bjk->bik', A, B)", [(2, 3, 4), (2, 4, 5)]),
    ("C = A.reshape(3, 2).T.ravel()[None, :]", [(2, 3)]),
    ("C = np.squeeze(np.expand_dims(A, 1), axis=1) * np.broadcast_to(B, (4, 3))", [(4, 3), (3,)]),
])
def test_products_and_linear_ops_match_jax(ip, cell, shapes):
    arrays = {n: RNG.normal(size=s) for n, s in zip("AB", shapes)}
    b, _ = assert_matches_jax(ip, cell + "\nY = np.tanh(C)", arrays)
    assert b.check.passed, b.check.summary


@pytest.mark.parametrize("cell, equation", [
    ("C = A @ B", "ij,jk->ik"), ("C = A.T", "ij->ji"),
    ("C = np.tensordot(A, B, axes=1)", "ij,jl->il")])
def test_a_product_alone_keeps_its_einsum_display(ip, cell, equation):
    ip.push({"A": RNG.normal(size=(2, 3)), "B": RNG.normal(size=(3, 4))})
    result, cap = run(ip, "%%einsum_grad -o res\n" + cell)
    assert result.success, cap.stdout
    res = ip.user_ns["res"]
    (d,) = res.derivations
    assert d.equation == equation and res.backward is None and res.report.passed


def test_two_products_get_the_cell_backward(ip):
    b, _ = assert_matches_jax(ip, "C = np.trace(A @ A.T)", {"A": RNG.normal(size=(3, 4))})
    assert b.check.passed and b.sinks == ("C",)


# -- elementwise, reductions, kinks ------------------------------------------------------------

@pytest.mark.parametrize("cell, shapes", [
    ("Y = np.tanh(X) ** 3 - np.sin(X) / (2 + np.cos(X))", {"X": (3, 4)}),
    ("Y = np.sqrt(np.abs(X) + 1) * np.log(X ** 2 + 1)", {"X": (3, 4)}),
    ("Y = -X.mean(axis=0, keepdims=True) + X.T.reshape(4, 3).T", {"X": (3, 4)}),
    ("Y = (X * X).sum() + np.einsum('ij,ij->', X, X)", {"X": (3, 4)}),
    ("Y = X / c", {"X": (3, 4), "c": (1, 4)}),
    ("Y = np.max(X, axis=1) + X.min() + np.amax(X, axis=0).sum()", {"X": (3, 4)}),
    ("Z = X @ np.transpose(X)\nY = Z.sum(axis=1) * np.diagonal(Z)", {"X": (3, 4)}),
    ("Y = np.exp(X) - np.expm1(X) + np.log1p(X ** 2) + 1 / (1 + np.exp(-X))", {"X": (3, 4)}),
    ("Y = np.clip(X, -0.5, 0.5) + np.minimum(X, 0.2) + np.power(X, 3) + np.square(X)",
     {"X": (3, 4)}),
    ("Y = np.where(X > 0, X, 0.1 * X) + X.var(axis=0) + np.std(X, axis=1, keepdims=True)",
     {"X": (3, 4)}),
    ("Y = np.concatenate([X, 2 * X], axis=1) @ np.stack([X[0], X[1]] * 4, axis=0)",
     {"X": (3, 4)}),
    ("a, b = np.split(X, 2, axis=1)\nY = a * b + np.cumsum(X, axis=0)[:, :2]", {"X": (3, 4)}),
    ("Y = np.sqrt(X ** 2 + 1) ** 0.5 + X ** -1", {"X": (3, 4)}),
    ("Y = np.exp2(X) + np.log2(X ** 2 + 1) + np.log10(X ** 2 + 2) + np.sinh(X) + np.cosh(X)"
     " + np.tan(X / 4) + np.arctan(X) + np.cbrt(X ** 2 + 1)", {"X": (3, 4)}),
    ("Y = np.hstack([X, 2 * X]).sum() + np.vstack([X, X ** 2]).max() + "
     "np.moveaxis(X, 0, 1)[0].sum() + np.fmax(X, 0.3).sum() + "
     "np.float_power(X ** 2 + 1, 1.5).sum()",
     {"X": (3, 4)}),
    ("a, b = np.array_split(X, [1], axis=0)\nY = (a ** 2).sum() + b.std() + "
     "np.maximum.reduce(X, axis=1).sum() + np.add.reduce(X ** 2).sum()", {"X": (3, 4)}),
    ("Y = np.array(X) * np.asarray(X) + np.atleast_2d(X[0]) + np.ravel(X).reshape(3, 4)",
     {"X": (3, 4)}),
    ("Y = np.linalg.norm(X, axis=1) + np.linalg.norm(X) + np.linalg.norm(X, 2, 0, True).sum()"
     " + np.linalg.norm(X, 'fro', (0, 1))", {"X": (3, 4)}),
    ("Y = np.tanh(np.diag(X[0]) @ X.T).sum() + np.diag(X[:, :3]).sum()", {"X": (3, 4)}),
])
def test_elementwise_steps_reductions_and_broadcasting_match_jax(ip, cell, shapes):
    arrays = {n: RNG.normal(size=s) for n, s in shapes.items()}
    b, _ = assert_matches_jax(ip, cell, arrays)
    assert b.check.passed, b.check.summary


def test_ties_and_kinks_follow_jax_vjp(ip):
    """``np.maximum(h, 0)`` at 0, a max over ties, ``abs`` and ``clip`` at their kinks."""
    X = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 2.0]])        # a tie for the max in row 0
    W = np.eye(3)
    cell = ("H = X @ W\nR = np.maximum(H, 0)\nM = H.max(axis=1) + np.abs(H).sum()\n"
            "K = np.clip(H, 0.0, 1.0)\nL = (R * 3).sum() + (M * 2).sum() + (K ** 2).sum()")
    b, _ = assert_matches_jax(ip, cell, {"X": X, "W": W})
    assert b.check.passed and b.sinks == ("L",)


# -- indexing -----------------------------------------------------------------------------------

def test_a_hand_written_softmax_cross_entropy_with_fancy_indexing_matches_jax(ip):
    # cs231n assignment 1, softmax.py (softmax_loss_vectorized), adapted: one batch
    cell = """N = X.shape[0]
scores = X @ W
scores = scores - scores.max(axis=1, keepdims=True)
probs = np.exp(scores)
probs = probs / probs.sum(axis=1, keepdims=True)
loss = -np.log(probs[np.arange(N), y]).sum() / N + 0.5 * reg * np.sum(W * W)
"""
    arrays = {"X": RNG.normal(size=(5, 4)), "W": RNG.normal(size=(4, 3))}
    ip.push({"y": np.array([0, 2, 1, 1, 0]), "reg": 0.1})
    b, _ = assert_matches_jax(ip, cell, arrays, extra={"y": np.array([0, 2, 1, 1, 0]),
                                                       "reg": 0.1})
    assert b.check.passed and b.sinks == ("loss",)
    assert "np.add.at(" in b.code and "np.arange(5)" in b.code


def test_slices_gathers_with_repeats_and_setitem_match_jax(ip):
    cell = ("H = 3\na = X @ W\nz = np.tanh(a[:, :H]) * a[:, H:2 * H]\n"
            "e = C[idx]\nloss = (z ** 2).sum() + (e * e[::-1]).sum()")
    arrays = {"X": RNG.normal(size=(4, 5)), "W": RNG.normal(size=(5, 6)),
              "C": RNG.normal(size=(7, 2))}
    idx = np.array([1, 1, 3, 6, 1])
    ip.push({"idx": idx})
    b, _ = assert_matches_jax(ip, cell, arrays, extra={"idx": idx})
    assert b.check.passed, b.check.summary


def test_setitem_and_add_at_match_jax(ip):
    cell = ("out = np.zeros((3, 4))\nout[1:] = X[:2] * 2\nout[0] = np.tanh(X[2])\n"
            "np.add.at(out, [0, 0, 2], X)\nloss = (out ** 2).sum()")

    def forward(X):
        out = jnp.zeros((3, 4)).at[1:].set(X[:2] * 2).at[0].set(jnp.tanh(X[2]))
        out = out.at[jnp.array([0, 0, 2])].add(X)
        return ((out ** 2).sum(),)

    b, _ = assert_matches_jax(ip, cell, {"X": RNG.normal(size=(3, 4))}, forward=forward)
    assert b.check.passed, b.check.summary


# -- issue 18: values changed after the cell read them, draws, side effects ---------------------

INPLACE = [
    ("W[:] = 0", None),
    ("W.fill(0)", None),
    ("np.multiply(W, 0, out=W)", None),
    ("W *= 0", None),
]


@pytest.mark.parametrize("after", [a for a, _ in INPLACE])
def test_an_array_changed_after_the_product_gives_the_right_gradient(ip, after):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    cell = f"H = X @ W\nZ = np.tanh(H)\n{after}"
    b, _ = assert_matches_jax(ip, cell, {"X": X, "W": W},
                              forward=lambda X, W: (jnp.tanh(X @ W),))
    assert b.check.passed, b.check.summary
    assert np.all(ip.user_ns["W"] == 0)                       # the cell ran as written
    assert "not in the namespace any more" in b.code          # says what it cannot read


def test_an_alias_changed_in_place_keeps_the_value_the_product_read(ip):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    cell = "H = X @ W\nZ = np.tanh(H)\nV = X\nV *= 2"
    b, _ = assert_matches_jax(ip, cell, {"X": X, "W": W},
                              forward=lambda X, W: (jnp.tanh(X @ W),))
    assert b.check.passed and np.allclose(ip.user_ns["X"], 2 * X)


def test_a_write_through_a_view_is_never_derived_as_if_it_had_not_happened(ip):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    cell = "a = X[:, :2]\nH = X @ W\na[:] = 0\nZ = np.tanh(X @ W) + np.tanh(H)"
    b, _ = backward_of(ip, cell, X=X, W=W)
    assert b.check.status != "PASS"
    assert "written through another view" in b.check.reason + b.check_note + " ".join(b.notes)
    assert "X" in b.not_derived and "H" not in b.not_derived
    cot = np.random.default_rng(0).standard_normal((4, 5))
    want = vjp(lambda H: (jnp.tanh(H),), {"H": X @ W}, [cot])
    assert_close(b.gradients({"Z": cot})["H"], want["H"], "H")


def test_a_constant_rebound_later_keeps_its_value_at_the_step(ip):
    X, c = RNG.normal(size=(4, 3)), np.full(3, 2.0)
    ip.push({"c": c})
    cell = "k = 3.0\nY = X * c * k\nc = 5.0\nk = -1.0\nZ = np.sin(Y)"
    b, _ = assert_matches_jax(ip, cell, {"X": X},
                              forward=lambda X: (jnp.sin(X * 2.0 * 3.0),))
    assert b.check.passed and ip.user_ns["c"] == 5.0
    cot = np.random.default_rng(0).standard_normal((4, 3))
    want = vjp(lambda X, c: (jnp.sin(X * c * 3.0),), {"X": X, "c": c}, [cot])
    assert_close(b.grad_of(c, {"Z": cot}), want["c"], "c")   # the array c held, by identity


def test_a_random_draw_in_an_expression_is_the_runs_not_drawn_again(ip):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    np.random.seed(7)
    cell = "H = X @ W + np.random.rand(4, 5)\nZ = np.tanh(H)"
    b, _ = backward_of(ip, cell, X=X, W=W)
    after = np.random.get_state()[2]
    np.random.seed(7)
    noise = np.random.rand(4, 5)
    assert np.random.get_state()[2] == after                 # drawn once, in the run
    np.testing.assert_allclose(ip.user_ns["H"], X @ W + noise)
    cot = np.random.default_rng(0).standard_normal((4, 5))
    ours = b.gradients({"Z": cot})
    want = vjp(lambda X, W: (jnp.tanh(X @ W + noise),), {"X": X, "W": W}, [cot])
    for n in ("X", "W"):
        assert_close(ours[n], want[n], n)
    assert b.check.passed


def test_print_and_os_system_run_once(ip, tmp_path):
    target = tmp_path / "ran.txt"
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    cell = (f"import os\nos.system('echo ran >> {target}')\nprint('hello')\n"
            "H = X @ W\nZ = np.tanh(H)")
    b, cap = backward_of(ip, cell, X=X, W=W)
    assert target.read_text() == "ran\n"
    assert cap.stdout.count("hello") == 1 and b.check.passed


def test_the_shown_code_runs_pasted_after_the_cell(ip):
    b, _ = backward_of(ip, MLP_CELL, **MLP)
    want = b.gradients({"P": np.ones((4, 2))})
    result, cap = run(ip, b.code)
    assert result.success, cap.stdout + str(result.error_in_exec)
    for name in b.inputs:
        np.testing.assert_allclose(ip.user_ns[b.gradient(name)], want[name], rtol=1e-12)


# -- functions, classes, the namespace after the cell -----------------------------------------

def test_a_forward_inside_functions_and_a_class_is_recorded(ip):
    cell = """class Layer:
    def __init__(self, w, b):
        self.w, self.b = w, b
    def __call__(self, x):
        return np.tanh(x @ self.w + self.b)

def loss_of(p, t):
    return ((p - t) ** 2).mean()

layers = [Layer(W1, b1), Layer(W2, b2)]
h = X
for layer in layers:
    h = layer(h)
loss = loss_of(h, T)
"""
    arrays = {"X": RNG.normal(size=(4, 3)), "W1": RNG.normal(size=(3, 5)),
              "b1": RNG.normal(size=5), "W2": RNG.normal(size=(5, 2)), "b2": RNG.normal(size=2),
              "T": RNG.normal(size=(4, 2))}

    def forward(X, W1, b1, W2, b2, T):
        h = jnp.tanh(jnp.tanh(X @ W1 + b1) @ W2 + b2)
        return (((h - T) ** 2).mean(),)

    b, _ = assert_matches_jax(ip, cell, arrays, forward=forward)
    assert b.check.passed and b.sinks == ("loss",)
    assert set(b.inputs) >= {"W1", "b1", "W2", "b2", "X"}
    layers = ip.user_ns["layers"]
    assert type(layers[0].w) is np.ndarray and layers[0].w is ip.user_ns["W1"]


def test_nothing_boxed_is_left_in_the_namespace_also_after_an_error(ip):
    W = RNG.normal(size=(3, 3))
    ip.push({"W": W, "keep": {"w": W}, "ws": [W]})
    result, _ = run(ip, "%%einsum_grad\nH = W @ W\npair = (H, W)\nd = {'h': H}\n"
                        "raise ValueError('boom')")
    assert not result.success
    ns = ip.user_ns
    assert no_boxes(ns) and ns["W"] is W and ns["keep"]["w"] is W and ns["ws"][0] is W
    assert type(ns["pair"][0]) is np.ndarray and type(ns["d"]["h"]) is np.ndarray
    result, _ = run(ip, "%%einsum_grad\nH = np.tanh(W)\nraise KeyboardInterrupt")
    assert no_boxes(ns) and ns["W"] is W


def test_the_output_cache_holds_plain_arrays_as_without_the_magic(ip, monkeypatch):
    import builtins

    # a doctest run earlier in this process leaves builtins._ (Python's own displayhook),
    # and IPython leaves _ alone while it is there: clear it, as in a fresh shell
    monkeypatch.delattr(builtins, "_", raising=False)
    hook = ip.displayhook                   # in step with the namespace, as in a fresh shell
    ip.push({"W": RNG.normal(size=(3, 3)), "_": hook._, "__": hook.__, "___": hook.___})
    run(ip, "W @ W")
    first = ip.user_ns["_"]
    np.testing.assert_array_equal(first, ip.user_ns["W"] @ ip.user_ns["W"])
    result, _ = run(ip, "%%einsum_grad\nH = W @ W\nnp.tanh(H)")
    assert result.success and ip.user_ns["__"] is first
    run(ip, "1 + 1")
    run(ip, "2 + 2")
    assert no_boxes(ip.user_ns) and type(ip.user_ns["___"]) is np.ndarray
    assert all(type(v) is not Boxed for v in ip.user_ns["Out"].values())


def test_scalars_come_back_as_the_scalars_numpy_gives(ip):
    b, _ = backward_of(ip, "s = (X ** 2).sum()\nt = s * 2\nt += 1", X=RNG.normal(size=3))
    assert type(ip.user_ns["s"]) is np.float64 and type(ip.user_ns["t"]) is np.float64
    np.testing.assert_allclose(b.gradients()["X"], 4 * ip.user_ns["X"])


def test_an_operation_without_a_rule_is_never_hidden(ip):
    arrays = {"A": RNG.normal(size=(3, 3)) + 3 * np.eye(3), "C": RNG.normal(size=(3, 2))}
    b, _ = backward_of(ip, "B = np.linalg.inv(A) @ C\nZ = np.tanh(B)", **arrays)
    assert b.check.status == "PARTIAL"
    assert "not derived across `numpy.linalg.inv`, line 1" in b.check.summary
    assert "A" in b.not_derived and "dL_dA" not in b.code
    cot = np.ones((3, 2))
    want = vjp(lambda A, C: (jnp.tanh(jnp.linalg.inv(A) @ C),), arrays, [cot])
    assert_close(b.gradients({"Z": cot})["C"], want["C"], "C")


def test_a_jax_cell_is_recorded_by_the_jax_recorder_not_refused(ip):
    """JAX steps are recorded now (chain.recorders.jax): the NumPy product and the JAX
    functions after it are one record, never a line saying JAX is not recorded."""
    ip.push({"jnp": jnp, "X": RNG.normal(size=(3, 3))})
    result, cap = run(ip, "%%einsum_grad -o res\nY = jnp.tanh(X @ X)\nZ = jnp.sin(Y)")
    assert result.success
    assert "not recorded" not in cap.stdout
    b = ip.user_ns["res"].backward
    assert {n.framework for n in b.recording.nodes} == {"numpy", "jax"}


# -- random programs --------------------------------------------------------------------------

SIZES = {"b": 2, "i": 3, "j": 4}


@st.composite
def programs(draw):
    """(source, arrays): a random program of elementwise ops, products, sums and indexing."""
    values = {"A": "bi", "B": "ij", "C": "j", "D": "bj"}
    lines = []
    for n in range(draw(st.integers(2, 6))):
        names = sorted(values)
        x = draw(st.sampled_from(names))
        sx = values[x]
        kind = draw(st.sampled_from(["einsum", "binary", "unary", "sum", "matmul",
                                     "getitem", "transpose"]))
        new = f"v{n}"
        if kind == "einsum":
            y = draw(st.sampled_from(names))
            letters = sorted(set(sx + values[y]))
            out = "".join(draw(st.permutations(letters))[:draw(st.integers(0, len(letters)))])
            expr, subs = f"np.einsum('{sx},{values[y]}->{out}', {x}, {y})", out
        elif kind == "binary":
            y = draw(st.sampled_from([m for m in names if sx.endswith(values[m])]))
            op = draw(st.sampled_from(["+", "-", "*", "/"]))
            expr, subs = f"{x} {op} " + (f"(1.5 + {y} ** 2)" if op == "/" else y), sx
        elif kind == "unary":
            f = draw(st.sampled_from(["np.tanh({})", "np.exp(np.tanh({}))", "np.sin({})",
                                      "np.maximum({}, 0.1)", "-{}", "{} ** 2",
                                      "np.sqrt({} ** 2 + 1)", "np.log(np.abs({}) + 1)",
                                      "2.5 * {}"]))
            expr, subs = f.format(x), sx
        elif kind == "sum" and sx:
            axis = draw(st.integers(0, len(sx) - 1))
            keep = draw(st.booleans())
            how = draw(st.sampled_from(["sum", "mean", "max"]))
            expr = f"{x}.{how}(axis={axis}{', keepdims=True' if keep else ''})"
            if keep:
                expr, subs = f"{x} - {expr}", sx
            else:
                subs = sx[:axis] + sx[axis + 1:]
        elif kind == "matmul" and len(sx) == 2:
            ys = [m for m in names if len(values[m]) == 2 and values[m][0] == sx[1]]
            if not ys:
                continue
            y = draw(st.sampled_from(ys))
            expr, subs = f"{x} @ {y}", sx[0] + values[y][1]
        elif kind == "getitem" and sx:
            n0 = SIZES[sx[0]]
            how = draw(st.sampled_from(["slice", "gather", "pair"]))
            if how == "slice":
                expr, subs = f"{x}[1:]", None
            elif how == "gather" or len(sx) == 1:
                idx = draw(st.lists(st.integers(0, n0 - 1), min_size=n0, max_size=n0))
                expr, subs = f"{x}[np.array({idx})]", sx
            else:
                cols = draw(st.lists(st.integers(0, SIZES[sx[1]] - 1), min_size=n0,
                                     max_size=n0))
                expr, subs = f"{x}[np.arange({n0}), np.array({cols})]", sx[0]
            if subs is None:              # a slice: padded back to the full size at once
                expr, subs = f"np.concatenate([{expr}, {x}[:1]], axis=0)", sx
        elif kind == "transpose" and len(sx) == 2:
            expr, subs = f"{x}.T", sx[::-1]
        else:
            continue
        lines.append(f"{new} = {expr}")
        values[new] = subs
    if not lines:
        lines.append("v9 = np.einsum('bi,ij->bj', A, B) * D")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = {n: rng.standard_normal(tuple(SIZES[c] for c in values[n])) for n in "ABCD"}
    return "\n".join(lines), arrays


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(programs())
def test_random_programs_gradients_match_jax_vjp(ip, case):
    source, arrays = case
    ip.push(arrays)
    with capture_output():
        result = ip.run_cell("%%einsum_grad -o res\n" + source)
    assert result.success, source
    b = ip.user_ns["res"].backward
    if b is None:                          # one product alone: its einsum display
        return
    used = {n: arrays[n] for n in b.inputs if n in arrays}
    if not used:
        return
    rng = np.random.default_rng(0)
    cots = {s: (np.float64(1.0) if not b.recording.info[v].shape
                else rng.standard_normal(b.recording.info[v].shape))
            for s, v in zip(b.sinks, b.program.sinks)}
    ours = b.gradients(cots)
    rest = {n: a for n, a in arrays.items() if n not in used}     # read, not differentiated
    want = vjp(source_forward(source, b.sinks, rest), used, [cots[s] for s in b.sinks])
    for name in used:
        assert_close(ours[name], want[name], f"{name} in\n{source}")
    assert b.check is not None and b.check.status == "PASS", (source, b.check)


def test_library_einsums_are_one_step_each(ip):
    """``opt_einsum.contract`` and ``einops.einsum`` are recorded as the one einsum they are."""
    ip.run_cell("import opt_einsum as oe\nimport einops")
    cell = ("H = oe.contract('bi,ij->bj', X, W)\n"
            "Z = einops.einsum(np.tanh(H), V, 'batch hidden, hidden out -> batch out')")
    arrays = {"X": RNG.normal(size=(4, 3)), "W": RNG.normal(size=(3, 5)),
              "V": RNG.normal(size=(5, 2))}
    b, _ = assert_matches_jax(ip, cell, arrays,
                              forward=lambda X, W, V: (jnp.tanh(X @ W) @ V,))
    ops = [n.op for n in b.recording.nodes]
    assert ops == ["opt_einsum.contract", "numpy.tanh", "einops.einsum"]
    assert b.check.passed


def test_a_jax_step_that_binds_no_array_gets_no_reading_of_the_text(ip):
    """A JAX step is recorded: its backward, if any, comes from the record, never from the
    retiring reading of the text."""
    ip.push({"jnp": jnp, "X": RNG.normal(size=(3, 3))})
    result, cap = run(ip, "%%einsum_grad -o res\nprint(float(jnp.sum(jnp.tanh(jnp.asarray(X)))))")
    assert result.success
    b = ip.user_ns["res"].backward
    assert b is None or b.recording.nodes


def test_once_the_record_stops_the_rest_of_the_run_is_plain_numpy(ip):
    """A long loop stops the record: from then on the cell's own names hold plain arrays
    again (the rest of the run pays nothing), and the cell says why in one line."""
    from einsum_magic.chain.record import MAX_REPEATS

    ip.user_ns.update(A=np.ones((3, 3)), B=np.ones((3, 3)))
    with capture_output() as cap:                   # a loop whose length the run tells only
        ip.run_cell("%%einsum_grad --no-check\nfor _ in [0] * 300:\n    H = A @ B\n"
                    "kinds = (type(A), type(H))")
    assert ip.user_ns["kinds"] == (np.ndarray, np.ndarray)
    assert f"more than {MAX_REPEATS} times (a loop)" in cap.stdout


@pytest.mark.parametrize("loop, steps", [("for _ in range(300):", 300),
                                         ("for _ in range(n_steps):", 1000),
                                         ("for _ in range(3):\n    for _ in range(2, 40, 2):", 57)])
def test_a_loop_over_a_range_longer_than_the_cap_stops_the_record_at_its_second_step(
        ip, loop, steps):
    """Its length is read from the loop's ``range`` when a call repeats: the record stops
    there (the run pays for one recorded step, not 32), saying how long the loop is."""
    from einsum_magic.chain.record import MAX_REPEATS

    ip.user_ns.update(A=np.ones((3, 3)), B=np.ones((3, 3)))
    indent = "    " * (loop.count("\n") + 1)
    body = f"{loop}\n{indent}H = A @ B\n{indent}seen.append(type(A))\n"
    with capture_output() as cap:
        ip.run_cell("%%einsum_grad --no-check\nn_steps = 1000\nseen = []\n" + body)
    # stopped at the 2nd step's product; the namespace is plain from the next call on
    assert ip.user_ns["seen"][:3] == [Boxed, Boxed, np.ndarray]
    assert f"runs {steps} times (the loop" in cap.stdout and f"more than {MAX_REPEATS}" in cap.stdout


def test_a_loop_over_a_range_within_the_cap_is_recorded_whole(ip):
    """An RNN unrolled over 25 steps: its loop is read, and recorded (25 <= 32)."""
    b, _ = assert_matches_jax(ip, "h = h0\nfor t in range(25):\n    h = np.tanh(h @ A)\n"
                                  "L = h.sum()", {"A": np.full((3, 3), 0.1), "h0": np.ones((1, 3))})
    assert b.check.passed and len(b.recording.nodes) >= 50, b.check.summary


def test_the_backward_of_a_30_step_loop_runs_pasted_with_every_step_recomputed(ip):
    """Each step's values are older versions of ``h``: the pasted code's preamble recomputes
    all of them from ``x`` (a chain 90 calls long), none is left out as out of reach."""
    arrays = {"x": np.full((2, 3), 0.5), "W": np.eye(3) * 0.9, "c": np.full(3, 0.1)}
    b, _ = assert_matches_jax(ip, "h = x\nfor _k in range(30):\n    h = np.tanh(h @ W) + c\n"
                                  "L = h.sum()", arrays)
    assert b.program.unavailable == ()
    pasted = {"np": np, **arrays, "h": ip.user_ns["h"], "L": ip.user_ns["L"], "dL_dL": 1.0}
    exec(b.code, pasted)
    want = b.gradients({"L": 1.0})
    for name in arrays:
        np.testing.assert_allclose(pasted[f"dL_d{name}"], want[name], rtol=1e-12)


def test_an_array_bound_to_two_names_takes_the_name_the_cell_uses(ip):
    """``A0 = …; X = A0``: the cell reads ``X``, so its gradient is ``dL_dX``, whatever name
    came first in the namespace."""
    ip.run_cell("import numpy as np\nA0 = np.full((2, 3), 0.5)\nB0 = np.ones((3, 4))\nX, W = A0, B0")
    with capture_output():
        ip.run_cell("%%einsum_grad --no-check -o r_alias\nH = X @ W\nZ = np.tanh(H)")
    assert ip.user_ns["r_alias"].backward.inputs == ("X", "W")


@pytest.mark.parametrize("last", ["W.fill(0)", "W[:] = 0", "np.add.at(W, [0, 0], 1.0)"])
def test_an_in_place_call_returns_what_numpy_returns(ip, last):
    """A cell ending on ``W.fill(0)`` shows no ``Out`` under the magic, as without it."""
    ip.user_ns.update(X=RNG.normal(size=(2, 3)), W=RNG.normal(size=(3, 4)))
    with capture_output() as cap:
        result = ip.run_cell(f"%%einsum_grad --no-check\nH = X @ W\nZ = np.tanh(H)\n{last}")
    assert result.success and result.result is None
    assert "Out[" not in cap.stdout


# -- every line of the backward says its rule ----------------------------------------------------

def test_every_backward_line_of_elementwise_steps_says_its_rule(ip):
    """An elementwise function's line says its derivative (``y = log(x): g / x``), where
    before the page's rule cell was empty for them (negation, log, exp, square, …)."""
    cell = "H = X @ W\nZ = -np.log(np.exp(H) + 1) - np.tanh(H) ** 2 + np.sqrt(np.abs(H) + 1)\n" \
           "loss = Z.mean()"
    b, _ = assert_matches_jax(ip, cell, {"X": RNG.normal(size=(4, 3)),
                                         "W": RNG.normal(size=(3, 2))})
    assert all(line.rule for line in b.lines), [(line.code, line.rule) for line in b.lines]
    rules = {line.rule for line in b.lines}
    assert {"y = log(x): g / x", "y = exp(x): g * y", "y = negative(x): -g"} <= rules, rules
