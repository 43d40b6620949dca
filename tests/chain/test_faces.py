"""One record, two faces: every product a cell ran gets the einsum display an einsum call gets.

Through a real IPython shell: the products of the record (``x @ W1``, ``F.linear``, NumPy's
``@``, batched attention scores) are shown as the einsum each equals, at the line they ran on,
with derived gradients proven here against the framework's own autodiff of the product
(torch.autograd, jax.vjp), computed by the test on copies; the equations of
:mod:`einsum_magic.chain.faces` are proven against the frameworks' own products on random
shapes (hypothesis); an explicit einsum is shown once; the cell backward is the same with or
without the products' displays.
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.utils.capture import capture_output

from einsum_magic import flow
from einsum_magic.chain import faces

torch = pytest.importorskip("torch")
F = torch.nn.functional
jax = pytest.importorskip("jax")
jnp = jax.numpy

import makemore  # noqa: E402


@pytest.fixture
def ip(shell):
    shell.run_cell("import torch\nimport torch.nn.functional as F\nimport numpy as np\n"
                   "torch.manual_seed(0)")
    return shell


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def shown(cap) -> list[str]:
    return [o.data["text/plain"] for o in cap.outputs if o.data.get("text/plain")]


def titles(cap) -> list[str]:
    """The title line of every per-call display (the cell backward's display has none)."""
    return [t.splitlines()[1] for t in shown(cap) if t.splitlines()[1].startswith("einsum_grad:")]


def torch_vjp(fn, arrays, cotangent) -> list[np.ndarray]:
    """torch.autograd of ``fn`` at copies of ``arrays`` (float64), against ``cotangent``."""
    leaves = [torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
    out = fn(*leaves)
    grads = torch.autograd.grad(out, leaves, torch.tensor(cotangent, dtype=torch.float64))
    return [g.numpy() for g in grads]


def proven_by_torch(analysis, operands, fn, seed=0):
    """The derived gradients of ``analysis`` equal torch.autograd of ``fn`` (float64)."""
    d = analysis.derivation
    cot = np.random.default_rng(seed).standard_normal(d.output_shape)
    ours = d.vjp(cot, *[np.asarray(o, dtype=np.float64) for o in operands])
    want = torch_vjp(fn, operands, cot)
    for got, ref, g in zip(ours, want, d.grads):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=g.target)


# -- the magic ----------------------------------------------------------------------------------

TORCH_SETUP = ("x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)\n"
               "W1 = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)\n"
               "W2 = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)\n"
               "b = torch.randn(2, dtype=torch.float64, requires_grad=True)")


def test_a_torch_product_and_f_linear_get_their_einsum_displays(ip):
    ip.run_cell(TORCH_SETUP)
    result, cap = run(ip, "%%einsum_grad -o r\nh = x @ W1\ny = F.linear(h, W2, b)")
    assert result.success, cap.stdout
    assert titles(cap) == [
        "einsum_grad: x @ W1  (einsum 1 of 2, line 1) is the einsum 'ij,jk->ik'",
        "einsum_grad: F.linear(h, W2, b)  (einsum 2 of 2, line 2) is the einsum 'ij,kj->ik', "
        "plus the bias b"]
    r = ip.user_ns["r"]
    first, second = r.analyses
    assert first.derivation.equation == "ij,jk->ik" and first.call.names == ("x", "W1")
    assert first.call.output == "h" and first.derivation.shapes == ((4, 3), (3, 5))
    assert second.derivation.equation == "ij,kj->ik" and second.call.names == ("h", "W2")
    assert [a.check.passed for a in r.analyses] == [True, True]
    assert [t.splitlines()[0] for t in shown(cap)[:2]] == ["check PASS", "check PASS"]
    ns = ip.user_ns
    proven_by_torch(first, (ns["x"].detach(), ns["W1"].detach()), lambda a, b: a @ b)
    proven_by_torch(second, (ns["h"].detach(), ns["W2"].detach()),
                    lambda a, w: F.linear(a, w, ns["b"].detach()))
    assert "dL_dx = np.einsum('ik,jk->ij', dL_dh, W1)" in shown(cap)[0]
    assert r.backward.check.passed                      # the cell backward, still shown
    assert shown(cap)[-1].startswith("cell backward: cell check: PASS")


def test_a_numpy_product_in_a_cell_of_several_steps_is_displayed(ip):
    ip.run_cell("A = np.arange(6.0).reshape(2, 3)\nB = np.arange(12.0).reshape(3, 4) - 5")
    result, cap = run(ip, "%%einsum_grad -o r\nH = A @ B\nZ = np.tanh(H)\nS = Z.dot(B.T)")
    assert result.success, cap.stdout
    assert titles(cap) == [
        "einsum_grad: A @ B  (einsum 1 of 2, line 1) is the einsum 'ij,jk->ik'",
        "einsum_grad: Z.dot(B.T)  (einsum 2 of 2, line 3) is the einsum 'ij,jk->ik'"]
    r = ip.user_ns["r"]
    assert all(a.check.passed for a in r.analyses)
    A, B = ip.user_ns["A"], ip.user_ns["B"]
    d = r.analyses[0].derivation
    cot = np.random.default_rng(1).standard_normal((2, 4))
    with jax.enable_x64(True):
        _, vjp = jax.vjp(jnp.matmul, jnp.asarray(A), jnp.asarray(B))
        want = [np.asarray(w) for w in vjp(jnp.asarray(cot))]
    for got, ref in zip(d.vjp(cot, A, B), want):
        np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert r.analyses[1].call.legend == (("op2", "B.T"),)
    assert isinstance(ip.user_ns["H"], np.ndarray) and type(ip.user_ns["H"]) is np.ndarray


def test_expect_grades_a_product_as_it_grades_an_einsum(ip):
    from einsum_magic.magic import ExpectationFailed

    ip.run_cell("A = np.arange(6.0).reshape(2, 3)\nB = np.arange(12.0).reshape(3, 4) - 5")
    cell = "H = A @ B\nZ = np.tanh(H)"
    result, cap = run(ip, "%%einsum_grad --no-check --expect A=ik,jk->ij\n" + cell)
    assert result.success, cap.stdout
    assert "expect dL_dA = 'ik,jk->ij'" in shown(cap)[0]
    result, cap = run(ip, "%%einsum_grad --no-check --expect A=ki,jk->ij\n" + cell)
    assert isinstance(result.error_in_exec, ExpectationFailed)
    result, cap = run(ip, "%%einsum_grad --no-check --expect A=?\n" + cell)
    assert result.success and "dL_dA =" not in "".join(shown(cap))     # the answer stays hidden
    assert "the cell's backward is shown once its exercise is solved" in cap.stdout


def test_batched_attention_scores_get_explicit_letters_for_their_rank(ip):
    ip.run_cell("q = torch.randn(2, 3, 4, 5, dtype=torch.float64)\n"
                "k = torch.randn(2, 3, 4, 5, dtype=torch.float64)")
    result, cap = run(ip, "%%einsum_grad -o r\natt = q @ k.transpose(-2, -1)\n"
                          "y = att.softmax(-1)")
    assert result.success, cap.stdout
    (a,) = ip.user_ns["r"].analyses
    assert a.derivation.equation == "abij,abjk->abik"
    assert a.call.source == "q @ k.transpose(-2, -1)" and a.call.legend == (
        ("op2", "k.transpose(-2, -1)"),)
    assert a.derivation.shapes == ((2, 3, 4, 5), (2, 3, 5, 4)) and a.check.passed
    ns = ip.user_ns
    proven_by_torch(a, (ns["q"], ns["k"].transpose(-2, -1)), lambda u, v: u @ v)


def test_an_explicit_einsum_is_displayed_once(ip):
    pytest.importorskip("opt_einsum")
    ip.run_cell(TORCH_SETUP + "\nimport opt_einsum as oe\nA = np.ones((2, 3))")
    result, cap = run(ip, "%%einsum_grad -o r\n"
                          "h = torch.einsum('ij,jk->ik', x, W1)\n"
                          "g = oe.contract('ij,jk->ik', h, W1.T)\n"
                          "s = np.einsum('ij->', A @ np.ones((3, 3)))\n"
                          "y = torch.tanh(g @ W1).sum()")
    assert result.success, cap.stdout
    assert [t.split("  (")[0] for t in titles(cap)] == [
        "einsum_grad: torch.einsum('ij,jk->ik', x, W1)",
        "einsum_grad: oe.contract('ij,jk->ik', h, W1.T)",
        "einsum_grad: A @ np.ones((3, 3))",
        "einsum_grad: np.einsum('ij->', A @ np.ones((3, 3)))",
        "einsum_grad: g @ W1"]
    assert [a.equals != "" for a in ip.user_ns["r"].analyses] == [False, False, True, False, True]


def test_the_cell_backward_is_the_same_with_and_without_the_products_displays(ip, monkeypatch):
    ip.run_cell(TORCH_SETUP)
    cell = "%%einsum_grad -o r\nh = torch.tanh(x @ W1)\ny = F.linear(h, W2, b)\nL = y.pow(2).sum()"
    result, with_products = run(ip, cell)
    assert result.success and len(shown(with_products)) == 3
    backward = ip.user_ns["r"].backward
    monkeypatch.setattr(flow.Run, "_with_products", lambda self, sites, cell_file: list(sites))
    ip.run_cell(TORCH_SETUP)
    result, without = run(ip, cell)
    assert result.success and len(shown(without)) == 1
    assert shown(with_products)[-1] == shown(without)[-1]
    assert ip.user_ns["r"].backward.code == backward.code


def test_a_product_in_a_loop_says_how_often_it_ran_and_a_function_where_it_is(ip):
    ip.run_cell(TORCH_SETUP)
    result, cap = run(ip, "%%einsum_grad -o r\n"
                          "def layer(u, w):\n"
                          "    return torch.tanh(u @ w)\n"
                          "h = x\n"
                          "for _ in range(3):\n"
                          "    h = layer(h, W1) @ W1.T\n"
                          "L = h.sum()")
    assert result.success, cap.stdout
    a, b = ip.user_ns["r"].analyses
    assert (a.call.source, a.call.where, a.sizes_from) == ("u @ w", "layer(), line 2",
                                                           "from the run; ran 3 times")
    assert (b.call.source, b.call.line, b.sizes_from) == ("layer(h, W1) @ W1.T", 5,
                                                          "from the run; ran 3 times")
    assert titles(cap)[0] == ("einsum_grad: u @ w  (einsum 1 of 2, layer(), line 2) is the "
                              "einsum 'ij,jk->ik'")


def test_an_nn_sequential_shows_each_linear_by_its_parameters_paths(ip):
    ip.run_cell("model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(),\n"
                "                            torch.nn.Linear(5, 2)).double()\n"
                "x = torch.randn(4, 3, dtype=torch.float64)")
    result, cap = run(ip, "%%einsum_grad -o r\ny = model(x)\nL = y.pow(2).sum()")
    assert result.success, cap.stdout
    first, second = ip.user_ns["r"].analyses
    assert first.call.source == "F.linear(x, model[0].weight, model[0].bias)"
    assert first.call.legend == (("model_0_weight", "model[0].weight"),)
    assert first.equals == "the einsum 'ij,kj->ik', plus the bias model[0].bias"
    assert second.derivation.shapes == ((4, 5), (2, 5)) and first.check.passed
    w = ip.user_ns["model"][0].weight.detach()
    proven_by_torch(first, (ip.user_ns["x"], w), lambda u, v: F.linear(u, v))


def test_an_exercise_of_the_whole_backward_shows_no_products(ip):
    ip.run_cell(TORCH_SETUP)
    result, cap = run(ip, "%%einsum_grad --exercise -o r\nh = x @ W1\nL = h.pow(2).sum()")
    assert result.success, cap.stdout
    assert titles(cap) == [] and ip.user_ns["r"].analyses == ()


def test_products_count_against_max_displays(ip):
    ip.run_cell(TORCH_SETUP)
    m = next(c for c in ip.configurables if type(c).__name__ == "EinsumGradMagics")
    before = m.max_displays
    m.max_displays = 2
    try:
        result, cap = run(ip, "%%einsum_grad --no-check\na = x @ W1\nb2 = a @ W1.T\n"
                              "c = torch.einsum('ij,jk->ik', b2, W1)\nL = c.sum()")
    finally:
        m.max_displays = before
    assert result.success, cap.stdout
    assert len(titles(cap)) == 2
    assert "1 more einsum call sites ran; the first 2 are shown" in cap.stdout


def test_the_makemore_cell_shows_its_products(ip):
    ip.push(makemore.data(0))
    result, cap = run(ip, "%%einsum_grad -o r\n" + makemore.FORWARD)
    assert result.success, cap.stdout
    r = ip.user_ns["r"]
    assert [(a.call.source, a.call.line, a.derivation.equation) for a in r.analyses] == [
        ("embcat @ W1", 6, "ij,jk->ik"), ("h @ W2", 18, "ij,jk->ik")]
    assert [a.derivation.shapes for a in r.analyses] == [((32, 30), (30, 64)), ((32, 64), (64, 27))]
    assert all(a.check.passed for a in r.analyses)
    assert r.backward.check.status == "PASS"
    ns = ip.user_ns
    proven_by_torch(r.analyses[0], (ns["embcat"].detach(), ns["W1"].detach()), lambda a, b: a @ b)
    proven_by_torch(r.analyses[1], (ns["h"].detach(), ns["W2"].detach()), lambda a, b: a @ b)


# -- the equations, against each framework's own product -----------------------------------------

def _shape(draw, rank, sizes=st.integers(1, 3)):
    return tuple(draw(st.lists(sizes, min_size=rank, max_size=rank)))


@st.composite
def matmul_shapes(draw):
    na, nb = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    j = draw(st.integers(1, 3))
    batch = _shape(draw, max(na, nb) - 2) if max(na, nb) > 2 else ()

    def side(n, last):
        if n == 1:
            return (j,)
        mine = batch[len(batch) - (n - 2):] if n > 2 else ()
        mine = tuple(1 if draw(st.booleans()) else s for s in mine)      # size-1 broadcasting
        return mine + last

    return side(na, (draw(st.integers(1, 3)), j)), side(nb, (j, draw(st.integers(1, 3))))


@settings(max_examples=150, deadline=None)
@given(matmul_shapes(), st.integers(0, 2**31))
def test_matmul_equation_is_the_matmul_numpy_and_torch_compute(shapes, seed):
    sa, sb = shapes
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    eq = faces.matmul_equation(sa, sb)
    want = np.matmul(a, b)
    np.testing.assert_allclose(np.einsum(eq, a, b), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((torch.tensor(a) @ torch.tensor(b)).numpy(), want, rtol=1e-12,
                               atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.sampled_from([1, 2]), st.integers(0, 2**31))
def test_linear_equation_is_f_linear(rank, wrank, seed):
    rng = np.random.default_rng(seed)
    sx = tuple(rng.integers(1, 4, rank))
    sw = (3, sx[-1]) if wrank == 2 else (sx[-1],)
    x, w = rng.standard_normal(sx), rng.standard_normal(sw)
    want = F.linear(torch.tensor(x), torch.tensor(w)).numpy()
    np.testing.assert_allclose(np.einsum(faces.linear_equation(sx, sw), x, w), want, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**31))
def test_dot_and_inner_equations_are_numpys(na, nb, seed):
    rng = np.random.default_rng(seed)
    j = 3
    sa = tuple(rng.integers(1, 4, na - 1)) + (j,)
    sb = tuple(rng.integers(1, 4, nb - 1)) + (j,)
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    # a sum of j products that cancels is exact only to the rounding of its terms
    atol = 1e-12 * j * np.abs(a).max() * np.abs(b).max()
    np.testing.assert_allclose(np.einsum(faces.inner_equation(sa, sb), a, b), np.inner(a, b),
                               rtol=1e-12, atol=atol)
    sb = sb if nb == 1 else sb[:-2] + (j, sb[-2])             # dot: b's second-to-last axis
    b = rng.standard_normal(sb)
    atol = 1e-12 * j * np.abs(a).max() * np.abs(b).max()
    np.testing.assert_allclose(np.einsum(faces.dot_equation(sa, sb), a, b), np.dot(a, b),
                               rtol=1e-12, atol=atol)


@st.composite
def dot_generals(draw):
    """Shapes and dimension numbers of a valid ``jax.lax.dot_general``."""
    nbatch, ncon = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    nfl, nfr = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    batch, con = _shape(draw, nbatch), _shape(draw, ncon)
    roles_l = draw(st.permutations(["b"] * nbatch + ["c"] * ncon + ["f"] * nfl))
    roles_r = draw(st.permutations(["b"] * nbatch + ["c"] * ncon + ["f"] * nfr))

    def layout(roles):
        shape, where = [], {"b": [], "c": []}
        nb = nc = 0
        for k, r in enumerate(roles):
            if r == "b":
                shape.append(batch[nb]); where["b"].append(k); nb += 1
            elif r == "c":
                shape.append(con[nc]); where["c"].append(k); nc += 1
            else:
                shape.append(draw(st.integers(1, 3)))
        return tuple(shape), where

    (sl, wl), (sr, wr) = layout(roles_l), layout(roles_r)
    return sl, sr, ((tuple(wl["c"]), tuple(wr["c"])), (tuple(wl["b"]), tuple(wr["b"])))


@settings(max_examples=150, deadline=None)
@given(dot_generals(), st.integers(0, 2**31))
def test_dot_general_equation_is_what_jax_lax_dot_general_computes(case, seed):
    sl, sr, numbers = case
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(sl), rng.standard_normal(sr)
    with jax.enable_x64(True):
        want = np.asarray(jax.lax.dot_general(jnp.asarray(a), jnp.asarray(b), numbers,
                                              precision=jax.lax.Precision.HIGHEST))
    eq = faces.dot_general_equation(numbers, len(sl), len(sr))
    np.testing.assert_allclose(np.einsum(eq, a, b), want, rtol=1e-10, atol=1e-12)


def test_tensordot_equation_is_numpys_tensordot():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 3, 5))
    for axes in (1, ([1, 2], [1, 0]), 0):
        sb = b.shape if axes != 1 else (4, 5)
        bb = b if axes != 1 else rng.standard_normal(sb)
        eq = faces.tensordot_equation(a.shape, bb.shape, axes)
        np.testing.assert_allclose(np.einsum(eq, a, bb), np.tensordot(a, bb, axes), rtol=1e-12)


def test_every_op_of_the_table_reads_a_recorded_node():
    """Each product the record keeps reads as an einsum that equals its result."""
    from einsum_magic.chain.recorders import recording

    ns = {"torch": torch, "F": F, "np": np,
          "x": torch.randn(4, 3, dtype=torch.float64), "W": torch.randn(3, 3, dtype=torch.float64),
          "v": torch.randn(3, dtype=torch.float64), "A": np.ones((2, 3)), "B": np.ones((3, 2))}
    cell = ("r1 = torch.mm(x, W)\nr2 = x.mv(v)\nr3 = torch.dot(v, v)\nr4 = torch.outer(v, v)\n"
            "r5 = torch.inner(x, x)\nr6 = torch.tensordot(x, W, dims=1)\n"
            "r7 = torch.bmm(x[None], W[None])\nr8 = np.dot(A, B)\nr9 = np.tensordot(A, B, 1)\n"
            "r10 = np.inner(A, A)\nr11 = np.outer(A[0], B[0])\nr12 = np.matmul(A, B)")
    with recording(ns, source=cell) as rec:
        exec(compile(cell, "<cell>", "exec"), ns)
    found = faces.products(rec, cell, ns)
    assert [p.call.line for p in found] == list(range(1, 13))
    for p in found:
        arrays = [np.asarray(a, dtype=np.float64) for a in p.arrays]
        want = ns[f"r{p.call.line}"]
        want = want.numpy() if isinstance(want, torch.Tensor) else want
        np.testing.assert_allclose(np.einsum(p.call.equation, *arrays), want, rtol=1e-12,
                                   err_msg=p.call.source)
        assert p.call.output == f"r{p.call.line}"


def test_a_product_in_a_method_is_placed_as_an_einsum_there_is(ip):
    """notebooks/01_backprop_trick.ipynb's attention head: products beside an einsum, in a method."""
    result, cap = run(ip, "%%einsum_grad -o r\n"
                          "class AttentionHead:\n"
                          "    def __init__(self, d_model, d_head):\n"
                          "        self.W_q = np.arange(d_model * d_head / 1.0).reshape(d_model, d_head)\n"
                          "        self.W_k = np.ones((d_model, d_head))\n"
                          "    def scores(self, x):\n"
                          "        q, k = x @ self.W_q, x @ self.W_k\n"
                          "        return np.einsum('td,sd->ts', q, k)\n"
                          "head = AttentionHead(8, 4)\n"
                          "S = head.scores(np.linspace(0, 1, 40).reshape(5, 8))")
    assert result.success, cap.stdout
    a, b, c = ip.user_ns["r"].analyses
    assert [(x.call.source, x.call.output, x.call.where) for x in (a, b)] == [
        ("x @ self.W_q", "q", "AttentionHead.scores(), line 6"),
        ("x @ self.W_k", "k", "AttentionHead.scores(), line 6")]
    assert a.call.legend == (("op2", "self.W_q"),) and c.call.where == "AttentionHead.scores(), line 7"
    assert all(x.check.passed for x in (a, b, c))


def test_a_jax_product_gets_its_einsum_display_and_jnp_einsum_is_shown_once(ip):
    jax = pytest.importorskip("jax")
    ip.run_cell("import jax\nimport jax.numpy as jnp\n"
                "X = jnp.asarray(np.random.default_rng(0).standard_normal((4, 3)))\n"
                "W = jnp.asarray(np.random.default_rng(1).standard_normal((3, 5)))")
    result, cap = run(ip, "%%einsum_grad -o r\nH = X @ W\n"
                          "G = jnp.einsum('ij,kj->ik', H, H)\nL = jnp.tanh(G).sum()")
    assert result.success, cap.stdout
    assert [t.split("  (")[0] for t in titles(cap)] == [
        "einsum_grad: X @ W", "einsum_grad: jnp.einsum('ij,kj->ik', H, H)"]
    first = ip.user_ns["r"].analyses[0]
    assert first.derivation.equation == "ij,jk->ik" and first.call.names == ("X", "W")
    assert first.check.passed
    # the derived gradients are jax.vjp's of the user's product, computed here
    X, W = np.asarray(ip.user_ns["X"]), np.asarray(ip.user_ns["W"])
    cot = np.random.default_rng(2).standard_normal((4, 5))
    ours = first.derivation.vjp(cot, X, W)
    _, pull = jax.vjp(lambda a, b: a @ b, X, W)
    for got, want in zip(ours, pull(cot.astype(X.dtype))):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)
