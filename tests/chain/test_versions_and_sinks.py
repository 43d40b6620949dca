"""Which value is the sink, which version keeps a name, what the pasted code reads.

Focused cases of the cell backward's choices that the public passes
(tests/chain/test_public_passes.py) do not pin down alone: a scalar loss is the sink and
other arrays nothing reads take no cotangent (and without a scalar every such array is a
sink); an input changed in place keeps its name as the cell received it, an array the cell
fills in place as the cell left it; a value the namespace lost is read from the kept result
(``-o r``), or said and left as comments without one; a NumPy step made in place is
recomputed out of place. Every gradient is proven against ``jax.vjp`` of the same forward
pass written here with ``jax.numpy``, in float64.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from IPython.utils.capture import capture_output


jax = pytest.importorskip("jax")
jnp = jax.numpy

RNG = np.random.default_rng(7)


@pytest.fixture
def ip(shell):
    shell.push({"np": np})
    return shell


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    assert result.success, cap.stdout + str(result.error_in_exec)
    return cap


def backward(shell, cell: str, output: bool = True, **arrays):
    shell.push({k: np.array(v, copy=True) for k, v in arrays.items()})
    run(shell, ("%%einsum_grad -o r\n" if output else "%%einsum_grad\n") + cell)
    return shell.user_ns["r"].backward if output else None


def vjp(forward, arrays: dict, cotangent=1.0) -> dict:
    with jax.enable_x64(True):
        names = list(arrays)
        out, pull = jax.vjp(lambda *xs: forward(**dict(zip(names, xs))),
                            *[jnp.asarray(arrays[n]) for n in names])
        grads = pull(jnp.asarray(cotangent, dtype=jnp.float64) * jnp.ones_like(out))
    return {n: np.asarray(g) for n, g in zip(names, grads)}


def close(got, want, what):
    scale = max(float(np.max(np.abs(want))), 1e-12)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * scale, err_msg=what)


def pasted(shell, code: str, *grads: str) -> dict:
    for g in grads:
        shell.user_ns.pop(g, None)
    run(shell, code)
    return {g: shell.user_ns[g] for g in grads if g in shell.user_ns}


# -- sinks ---------------------------------------------------------------------------------------

def test_a_scalar_loss_is_the_sink_and_what_nothing_reads_takes_no_cotangent(ip):
    X, W, y = RNG.normal(size=(5, 3)), RNG.normal(size=(3, 2)), RNG.normal(size=5)
    cell = ("H = np.tanh(X @ W)\n"
            "running = 0.9 * H.mean(axis=0)\n"           # kept, read by nothing
            "errors = y - H.sum(axis=1)\n"
            "cost = (errors ** 2).sum() / 2.0\n")
    b = backward(ip, cell, X=X, W=W, y=y)
    assert b.sinks == ("cost",), b.sinks
    assert "running" not in b.gradients()
    want = vjp(lambda X, W: ((y - jnp.tanh(X @ W).sum(axis=1)) ** 2).sum() / 2.0,
               {"X": X, "W": W})
    got = b.gradients()                                   # no cotangent asked for
    for name in ("X", "W"):
        close(got[name], want[name], name)
        close(b.grad_of(ip.user_ns[name]), want[name], f"grad_of({name})")
    assert b.check.passed, b.check.summary


def test_without_a_scalar_every_array_nothing_reads_is_a_sink(ip):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    b = backward(ip, "Z = np.tanh(X @ W)\nR = 3.0 * X\n", X=X, W=W)
    assert set(b.sinks) == {"Z", "R"}
    with pytest.raises(ValueError, match="cotangent"):
        b.gradients()
    cz, cr = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 3))
    got = b.gradients({"Z": cz, "R": cr})
    with jax.enable_x64(True):
        _, pull = jax.vjp(lambda X, W: (jnp.tanh(X @ W), 3.0 * X), jnp.asarray(X), jnp.asarray(W))
        gX, gW = pull((jnp.asarray(cz), jnp.asarray(cr)))
    close(got["X"], np.asarray(gX), "X")
    close(got["W"], np.asarray(gW), "W")


def test_values_turned_into_python_numbers_cut_what_they_came_from(ip):
    """``tolist()`` of a value computed from X and W: no sink, and their gradients are not
    derived (what the cell did with the numbers the record met as constants: the array made
    again from them); that array's own gradient is derived. (Before, the value was a second
    sink and X and W had no gradient to say so: the check said PASS over an array that was
    the record's, not the math's.)"""
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    b = backward(ip, "Z = np.array((X @ W).tolist())\nloss = (Z ** 2).sum()\n", X=X, W=W)
    assert b.sinks == ("loss",), b.sinks
    summary = b.check.summary
    assert "PARTIAL" in summary and "`tolist()`, line 1" in summary, summary
    assert "X" not in b.gradients() and "W" not in b.gradients()
    with pytest.raises(KeyError, match="tolist"):
        b.grad_of(ip.user_ns["X"])
    Z = ip.user_ns["Z"]
    want = vjp(lambda Z: (Z ** 2).sum(), {"Z": Z})
    close(b.grad_of(Z), want["Z"], "grad_of(Z)")


def test_a_number_only_printed_or_logged_cuts_nothing_and_takes_nothing_from_the_sinks(ip):
    """``print(float(m))`` of a statistic, ``print(float(loss))``: nothing read the numbers, so
    the gradients stay derived and every scalar nothing read is still a sink (a review found
    the first change made such a loss lose its place to another scalar, and cut X)."""
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    b = backward(ip, "m = X.mean()\nprint('mean', float(m))\nloss = ((X - m) ** 2).sum()\n",
                 X=X, W=W)
    assert b.sinks == ("loss",) and b.check.passed, b.check.summary
    want = vjp(lambda X: ((X - X.mean()) ** 2).sum(), {"X": X})
    close(b.gradients()["X"], want["X"], "X")
    b = backward(ip, "P = X @ W\nloss = (P ** 2).mean()\nmae = np.abs(P).mean()\n"
                     "print(float(loss))\n", X=X, W=W)
    assert set(b.sinks) == {"loss", "mae"} and b.check.passed, b.check.summary


def test_a_number_read_in_a_loops_next_step_fed_it(ip):
    """``s`` is read on a line above the one binding it, in the loop's next step: it fed the
    computation (the first rule looked only below the line, and called it logged)."""
    X = RNG.normal(size=(4, 3))
    b = backward(ip, "s = 1.0\nY = X\nfor _ in range(2):\n    Y = Y / s\n"
                     "    s = float(np.abs(Y).sum())\nloss = (Y ** 2).sum()\n", X=X)
    summary = b.check.summary
    assert "PARTIAL" in summary and "`float()`, line 5" in summary, summary
    assert "X" not in b.gradients()


def test_int_of_a_value_is_an_exact_constant_and_no_sink(ip):
    """``k = int(np.abs(X).sum())``: ``int`` bypassed the escape, so the sum was a second sink
    with a cotangent of 1 (X's gradient off by sign(X)) under a PASS. An int's derivative is
    0 almost everywhere: k is a constant of the math, and X is derived."""
    X = RNG.normal(size=(4, 3))
    b = backward(ip, "k = int(np.abs(X).sum())\nloss = (X * k).sum()\n", X=X)
    assert b.sinks == ("loss",) and b.check.passed, b.check.summary
    k = int(np.abs(X).sum())
    close(b.gradients()["X"], np.full((4, 3), float(k)), "X")


# -- versions ------------------------------------------------------------------------------------

def test_an_array_the_cell_fills_in_place_is_named_as_the_cell_left_it(ip):
    x, W, dh = RNG.normal(size=(2, 3, 4)), RNG.normal(size=(4, 5)), RNG.normal(size=(2, 3, 5))
    cell = ("h = np.zeros((2, 3, 5))\n"
            "for t in range(3):\n"
            "    h[:, t, :] = np.tanh(x[:, t, :] @ W)\n"
            "loss = np.sum(h * dh)\n")
    b = backward(ip, cell, x=x, W=W, dh=dh)
    h = ip.user_ns["h"]
    assert b.names.name[b.recording.current(h)] == "h"      # the filled array the user holds
    assert {"h_1", "h_2", "h_3"} <= set(b.names.name.values())   # the earlier versions
    got = b.gradients()
    close(got["h"], dh, "gradients()['h']")
    close(b.grad_of(h), dh, "grad_of(h)")
    want = vjp(lambda x, W: jnp.sum(jnp.tanh(jnp.einsum("bti,ij->btj", x, W)) * dh),
               {"x": x, "W": W})
    close(got["W"], want["W"], "W")
    close(got["x"], want["x"], "x")
    assert b.check.passed, b.check.summary
    out = pasted(ip, b.code, "dL_dh", "dL_dW")
    close(out["dL_dh"], dh, "pasted dL_dh")
    close(out["dL_dW"], want["W"], "pasted dL_dW")


def test_an_input_changed_in_place_keeps_its_name_as_the_cell_received_it(ip):
    """``X *= 2`` before any step read X: the version before is kept (the replay and
    ``value('X')`` see the X the cell received), ``X`` names it and ``X_1`` the doubled one."""
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    b = backward(ip, "X *= 2\nH = X @ W\nL = np.sum(np.tanh(H))\n", X=X, W=W)
    np.testing.assert_array_equal(ip.user_ns["X"], 2 * X)         # the cell ran as written
    np.testing.assert_array_equal(b.value("X"), X)                # as received
    np.testing.assert_array_equal(b.value("X_1"), 2 * X)
    want = vjp(lambda X, W: jnp.sum(jnp.tanh((2 * X) @ W)), {"X": X, "W": W})
    close(b.gradients()["X"], want["X"], "gradients()['X']")
    close(b.grad_of(ip.user_ns["X"]), want["X"], "grad_of(X)")
    close(b.gradients()["W"], want["W"], "W")
    assert b.check.passed, b.check.summary
    out = pasted(ip, b.code, "dL_dX", "dL_dW")
    close(out["dL_dX"], want["X"], "pasted dL_dX")
    close(out["dL_dW"], want["W"], "pasted dL_dW")


def test_a_rebound_name_keeps_its_versions_in_order_and_grad_of_the_object_it_holds(ip):
    """``A = X @ W; A = np.tanh(A)``: two objects, ``A`` and ``A_1`` in the order of the run;
    ``grad_of`` of the array ``A`` holds after the cell is that object's gradient."""
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 2))
    b = backward(ip, "A = X @ W\nA = np.tanh(A)\nL = np.sum(A * A)\n", X=X, W=W)
    A = np.tanh(X @ W)
    got = b.gradients()
    close(got["A_1"], 2 * A, "gradients()['A_1']")
    close(got["A"], 2 * A * (1 - A ** 2), "gradients()['A'] (X @ W)")
    close(b.grad_of(ip.user_ns["A"]), 2 * A, "grad_of(A)")


# -- the pasted code -----------------------------------------------------------------------------

def test_a_value_changed_after_use_is_read_from_the_kept_result_or_said_missing(ip):
    X, W = RNG.normal(size=(4, 3)), RNG.normal(size=(3, 5))
    cell = "H = X @ W\nL = np.sum(np.tanh(H))\nW[:] = 0\n"
    b = backward(ip, cell, X=X, W=W)
    want = vjp(lambda X, W: jnp.sum(jnp.tanh(X @ W)), {"X": X, "W": W})
    code = b.code
    assert code.startswith("# not in the namespace any more") and "r.backward.value('W')" in code
    out = pasted(ip, code, "dL_dX", "dL_dW")
    close(out["dL_dX"], want["X"], "pasted dL_dX (reads W as line 1 did)")
    close(out["dL_dW"], want["W"], "pasted dL_dW")
    assert not np.any(ip.user_ns["W"])                            # the user's W untouched
    alone = dataclasses.replace(b, holder="").code                # no result kept
    assert "value(" not in alone and "-o NAME" in alone.splitlines()[0], alone
    out = pasted(ip, alone, "dL_dX", "dL_dW")
    assert "dL_dX" not in out                                     # never from the zeroed W
    close(out["dL_dW"], want["W"], "pasted dL_dW without -o")


def test_a_numpy_step_made_in_place_is_recomputed_out_of_place(ip):
    """``f -= f.max()``, then ``f *= 0.5``: the preamble recomputes the version the backward
    reads with the same ufunc out of place, so the code needs no kept result; the user's f is
    never rebound."""
    X, W = RNG.normal(size=(6, 3)), RNG.normal(size=(3, 4))
    idx = np.array([0, 3, 1, 2, 2, 0])
    cell = ("f = X @ W\nf -= np.max(f)\n"
            "p = np.exp(f) / np.sum(np.exp(f), axis=1, keepdims=True)\n"
            "loss = -np.mean(np.log(p[np.arange(6), idx]))\n"
            "f *= 0.5\n")
    b = backward(ip, cell, X=X, W=W, idx=idx)
    code = dataclasses.replace(b, holder="").code
    assert "np.subtract(" in code and "np.array([0, 1, 2, 3, 4, 5])" in code, code
    assert not code.startswith("#"), code                          # nothing missing
    f = ip.user_ns["f"]

    def forward(X, W):
        f = X @ W
        f = f - jnp.max(f)
        p = jnp.exp(f) / jnp.sum(jnp.exp(f), axis=1, keepdims=True)
        return -jnp.mean(jnp.log(p[jnp.arange(6), idx]))

    want = vjp(forward, {"X": X, "W": W})
    out = pasted(ip, code, "dL_dX", "dL_dW")
    assert ip.user_ns["f"] is f
    close(out["dL_dX"], want["X"], "pasted dL_dX")
    close(out["dL_dW"], want["W"], "pasted dL_dW")


def test_an_array_changed_after_the_loss_read_it_is_named_as_read(ip):
    """``H *= 0`` after the loss read ``H``: ``H`` names the values the loss read (its
    gradient is all ones), ``H_1`` the zeros the user holds; ``value`` gives the run's,
    read-only."""
    X, W = RNG.normal(size=(3, 3)), RNG.normal(size=(3, 2))
    b = backward(ip, "H = np.tanh(X @ W)\nL = np.sum(H)\nH *= 0\n", X=X, W=W)
    close(b.grad_of(ip.user_ns["H"]), np.ones((3, 2)), "grad_of(H)")
    close(b.gradients()["H"], np.ones((3, 2)), "gradients()['H']")
    assert not np.any(b.value("H_1"))
    v = b.value("H")
    np.testing.assert_allclose(v, np.tanh(X @ W), rtol=1e-15)
    with pytest.raises(ValueError):
        v[0, 0] = 1.0
    with pytest.raises(KeyError):
        b.value("nothing_of_the_cell")
