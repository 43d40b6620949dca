"""The generalized swap trick, case by case, against jax.vjp."""

from __future__ import annotations

import numpy as np
import pytest

from einsum_magic import EinsumError, derive
from reference import HARD_CASES, assert_grads_equal, jax_vjp, random_operands

@pytest.mark.parametrize("equation,shapes", HARD_CASES)
def test_vjp_and_loops_equal_jax(equation, shapes):
    ops = random_operands(shapes, seed=1)
    d = derive(equation, shapes=shapes)
    out = np.einsum(equation, *ops)
    cot = np.random.default_rng(2).standard_normal(out.shape)
    want = jax_vjp(equation, ops, cot)
    assert_grads_equal(d.vjp(cot, *ops), want)
    assert_grads_equal(d.loop_vjp(cot, *ops), want)
    np.testing.assert_allclose(d.loop_forward(*ops), out, atol=1e-12)
    for g, shape in zip(d.grads, shapes):
        assert g.shape == tuple(shape)


@pytest.mark.parametrize("equation,shapes", HARD_CASES)
def test_shapeless_derivation_runs(equation, shapes):
    """Without shapes the derivation is symbolic; where no broadcasting is involved it is exact."""
    d = derive(equation)
    assert len(d.grads) == len(shapes)
    broadcasts = any(1 in s for s in shapes) or "..." in equation and len({len(s) for s in shapes}) > 1
    if broadcasts:
        return
    ops = random_operands(shapes, seed=3)
    cot = np.random.default_rng(4).standard_normal(np.einsum(equation, *ops).shape)
    want = jax_vjp(equation, ops, cot)
    ns = {"np": np, d.cotangent: cot, **dict(zip(d.names, ops))}
    for g, w in zip(d.grads, want):
        exec(g.code, ns)
        np.testing.assert_allclose(ns[g.target], w, atol=1e-9)
        exec(g.loops, ns)
        np.testing.assert_allclose(ns[g.target], w, atol=1e-9)


@pytest.mark.parametrize("batch", [(5,), (2, 3), (0,), ()])
def test_shapeless_gradient_of_an_operand_without_ellipsis_sums_it_away(batch):
    d = derive("...ij,jk->...ik")
    a, b = random_operands([batch + (2, 3), (3, 4)])
    cot = np.random.default_rng(5).standard_normal(batch + (2, 4))
    ns = {"np": np, "dL_dC": cot, "A": a, "B": b}
    exec(d.grads[1].code, ns)
    np.testing.assert_allclose(ns["dL_dB"], jax_vjp(d.equation, [a, b], cot)[1], atol=1e-12)


def test_seed_example_exactly():
    d = derive("ij,jk->ik", names=("A", "B"), output="C", shapes=((2, 3), (3, 4)))
    assert d.equation == "ij,jk->ik"
    a, b = d.grads
    assert (a.wrt, a.equation, a.relabelled, a.interpretation) == (
        "A", "ik,jk->ij", "ij,kj->ik", "dL_dC @ B.T")
    assert a.code == "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"
    assert (b.wrt, b.equation, b.interpretation) == ("B", "ik,ij->jk", "A.T @ dL_dC")
    assert "dL_dA[i, j] += dL_dC[i, k] * B[j, k]" in a.loops
    assert "C[i, k] += A[i, j] * B[j, k]" in d.loops


@pytest.mark.parametrize("equation,grad,aux", [
    ("ii->", ",ij->ij", "np.eye(A.shape[1])"),
    ("ii->i", "i,ij->ij", "np.eye(A.shape[1])"),
    ("ij->i", "i,j->ij", "np.ones(A.shape[1])"),
])
def test_design_table_rows(equation, grad, aux):
    g = derive(equation).grads[0]
    assert g.equation == grad
    assert aux in g.code


def test_diagonal_loop_is_the_plain_swap():
    assert "dL_dA[i, i] += dL_dB[i]" in derive("ii->i").grads[0].loops


def test_implicit_mode_is_made_explicit():
    assert derive("ij,jk").equation == "ij,jk->ik"
    assert derive("ba").equation == "ba->ab"
    assert derive("Ba").equation == "Ba->Ba"          # numpy sorts upper case first
    assert derive("...ij,jk").equation == "...ij,jk->...ik"
    assert derive("ii").equation == "ii->"


def test_ellipsis_spelled_with_letters_when_shapes_are_known():
    d = derive("...ij,...jk->...ik", shapes=((1, 2, 3), (5, 3, 4)))
    a, b = d.grads
    assert "..." not in a.equation
    assert any("size 1" in s for s in a.steps)
    roles = {x.letter: x.role for x in d.letters}
    assert "broadcast" in roles.values()


def test_same_array_twice_product_rule():
    d = derive("ij,ij->", names=("A", "A"), output="s")
    assert [g.target for g in d.grads] == ["dL_dA_1", "dL_dA_2"]
    (total,) = d.totals
    assert total.code == "dL_dA = dL_dA_1 + dL_dA_2"
    a = np.random.default_rng(0).standard_normal((2, 3))
    g1, g2 = d.vjp(np.float64(1.5), a, a)
    np.testing.assert_allclose(g1 + g2, 2 * 1.5 * a)
    with pytest.raises(EinsumError, match="two different arrays"):
        d.vjp(np.float64(1.0), a, a + 1)


def test_vjp_rebinds_to_new_shapes():
    d = derive("...ij,...jk->...ik")
    ops = random_operands([(1, 2, 3), (5, 3, 4)])
    cot = np.ones((5, 2, 4)) * np.arange(4)
    assert_grads_equal(d.vjp(cot, *ops), jax_vjp(d.equation, ops, cot))


def test_wrong_cotangent_shape_is_an_einsum_error():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    with pytest.raises(EinsumError, match="cotangent"):
        d.vjp(np.ones((4, 2)), np.ones((2, 3)), np.ones((3, 4)))


def test_integer_arrays_as_in_the_seed():
    a = np.arange(6).reshape(2, 3)
    b = np.arange(12).reshape(3, 4)
    d = derive("ij,jk->ik")
    np.testing.assert_array_equal(d.loop_forward(a, b), a @ b)
    cot = np.arange(8).reshape(2, 4)
    ga, gb = d.vjp(cot, a, b)
    np.testing.assert_array_equal(ga, cot @ b.T)
    np.testing.assert_array_equal(gb, a.T @ cot)


def test_names_and_output():
    d = derive("ij,jk->ik", names=["W", "x"], output="y")
    assert d.cotangent == "dL_dy"
    assert d.grads[1].code == "dL_dx = np.einsum('ik,ij->jk', dL_dy, W)"
    assert d.code == "y = np.einsum('ij,jk->ik', W, x)"


def test_gradient_names_never_overwrite_an_operand():
    """An operand called like a generated gradient keeps its value: the gradient is renamed."""
    d = derive("ij,jk,kl->il", names=("A", "A", "dL_dA_1"), output="dL_dA")
    assert d.cotangent == "dL_ddL_dA"
    assert [g.target for g in d.grads] == ["dL_dA_1_", "dL_dA_2", "dL_ddL_dA_1"]
    assert d.totals[0].code == "dL_dA_ = dL_dA_1_ + dL_dA_2"
    rng = np.random.default_rng(0)
    a, x, cot = rng.standard_normal((3, 2, 2))
    want = jax_vjp(d.equation, [a, a, x], cot)
    assert_grads_equal(d.vjp(cot, a, a, x), want)
    assert_grads_equal(d.loop_vjp(cot, a, a, x), want)


def test_loops_over_more_letters_than_python_nests():
    letters = "abcdefghijklmnopqrstuvwxyz"[:21]
    d = derive(f"{letters}->a", shapes=[(2,) + (1,) * 20])
    assert "np.ndindex(" in d.loops
    x = np.arange(2.0).reshape((2,) + (1,) * 20)
    np.testing.assert_allclose(d.loop_forward(x), [0.0, 1.0])
    assert_grads_equal(d.loop_vjp(np.array([3.0, 4.0]), x), d.vjp(np.array([3.0, 4.0]), x))


def test_loop_names_avoid_operand_names():
    d = derive("ij,jk->ik", names=("i", "k"), output="C")
    i = np.arange(6.0).reshape(2, 3)
    k = np.arange(12.0).reshape(3, 4)
    np.testing.assert_allclose(d.loop_forward(i, k), i @ k)
    assert_grads_equal(d.loop_vjp(np.ones((2, 4)), i, k), d.vjp(np.ones((2, 4)), i, k))


def test_derivation_is_immutable():
    d = derive("ij,jk->ik")
    with pytest.raises(AttributeError):
        d.equation = "x"


def test_shapeless_ellipsis_says_it_assumes_no_size_1_broadcasting():
    from einsum_magic.views import text
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import equation_call

    say = "no size-1 broadcasting is assumed"
    d = derive("...ij,...jk->...ik")
    assert all(any(say in step for step in g.steps[1:]) for g in d.grads)
    shown = text.render(Analysis(equation_call("...ij,...jk->...ik"), d, "no shapes"))
    assert shown.count(say) == 2
    bound = derive("...ij,...jk->...ik", shapes=((1, 2, 3), (5, 3, 4)))
    assert not any(say in step for g in bound.grads for step in g.steps)
    assert not any(say in step for g in derive("ij,jk->ik").grads for step in g.steps)


def test_vjp_contracts_three_or_more_operands_along_opt_einsums_path(monkeypatch):
    """Without a path NumPy loops over every letter at once: seconds for five operands."""
    import opt_einsum

    equation = "pa,aqb,br,pc,cqd,dr->"
    shapes = [(4, 9), (9, 4, 9), (9, 4), (4, 9), (9, 4, 9), (9, 4)]
    d = derive(equation, shapes=shapes)
    ops = random_operands(shapes, seed=1)
    for g in d.grads:
        others = [s for k, s in enumerate(shapes) if k != g.position]
        path, _ = opt_einsum.contract_path(g.equation, (), *others, shapes=True)
        assert g.code.endswith(f", optimize={['einsum_path', *path]!r})")
    seen = []
    real = np.einsum

    def einsum(*args, **kwargs):
        seen.append(kwargs.get("optimize"))
        return real(*args, **kwargs)

    monkeypatch.setattr(np, "einsum", einsum)
    got = d.vjp(np.float64(1.5), *ops)
    monkeypatch.undo()
    assert len(seen) == 6 and all(isinstance(o, list) and o[0] == "einsum_path" for o in seen)
    assert_grads_equal(got, jax_vjp(equation, ops, 1.5))
    assert derive(equation).grads[0].code.endswith(", optimize=True)")
    assert "optimize" not in derive("ij,jk->ik", shapes=((2, 3), (3, 4))).grads[0].code
