"""Contraction cost: opt_einsum's figures, the joint backward plan, and XLA FLOPs against jax.vjp."""

from __future__ import annotations

import opt_einsum
from math import prod
import pytest
from opt_einsum.helpers import flop_count

from einsum_magic import EinsumError, derive
from einsum_magic.compute.cost import cost
from einsum_magic.compute.plan import plan
from xla_flops import xla_vjp_flops  # benchmarks/xla_flops.py: a measurement, on pytest's pythonpath

# The realistic suite of benchmarks/bench_flops.py at small sizes: (label, equation, names, shapes).
SUITE = [
    ("dense layer", "bi,oi->bo", None, [(8, 16), (32, 16)]),
    ("attention scores", "bhqd,bhkd->bhqk", None, [(2, 3, 8, 4), (2, 3, 6, 4)]),
    ("attention values", "bhqk,bhkd->bhqd", None, [(2, 3, 8, 6), (2, 3, 6, 4)]),
    ("matrix chain, skewed", "ij,jk,kl->il", None, [(2, 30), (30, 3), (3, 40)]),
    ("matrix chain of 4", "ij,jk,kl,lm->im", None, [(20, 4), (4, 30), (30, 2), (2, 25)]),
    ("bilinear form", "i,ij,j->", None, [(12,), (12, 20), (20,)]),
    ("quadratic form", "i,ij,j->", ("x", "A", "x"), [(12,), (12, 12), (12,)]),
    ("batched bilinear", "bi,ij,bj->b", None, [(4, 6), (6, 5), (4, 5)]),
    ("bilinear layer", "bi,oij,bj->bo", None, [(4, 6), (3, 6, 5), (4, 5)]),
    ("MPS overlap", "pa,aqb,br,pc,cqd,dr->", None,
     [(2, 6), (6, 2, 7), (7, 2), (2, 5), (5, 2, 4), (4, 2)]),
    ("tensor train times vectors", "ai,ibj,jc,b->ac", None, [(3, 5), (5, 8, 4), (4, 6), (8,)]),
    ("trace", "ii->", None, [(7, 7)]),
    ("trace of a product", "ij,ji->", None, [(5, 9), (9, 5)]),
    ("batched diagonal", "bii->bi", None, [(3, 6, 6)]),
    ("summed in one", "ij,jk->i", None, [(5, 6), (6, 7)]),
    ("broadcast batch (...)", "...ij,...jk->...ik", None, [(1, 4, 5), (3, 5, 6)]),
    ("broadcast scale (size 1)", "bd,bd->bd", None, [(1, 8), (6, 8)]),
]
SUITE_IDS = [case[0] for case in SUITE]


def test_forward_and_gradients_are_opt_einsum_figures():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    r = cost(d)
    sizes = {"i": 2, "j": 3, "k": 4}
    matmul = flop_count("ijk", True, 2, sizes)
    assert (r.forward.flops, r.forward.naive_flops) == (matmul, matmul)
    assert [g.equation for g in r.grads] == ["ik,jk->ij", "ik,ij->jk"]
    assert [g.flops for g in r.grads] == [matmul, matmul]
    assert r.forward.largest_intermediate == 8 and r.forward.steps == ("jk,ij->ik",)
    assert r.backward == 2 * matmul
    assert r.summary == (f"cost: forward {matmul} FLOPs, backward {2 * matmul} FLOPs "
                         f"(separate paths {2 * matmul}, naive {2 * matmul}), largest intermediate 12")


def test_aux_tensors_are_operands_of_the_gradient_as_written():
    """ii-> gives ,ij->ij with eye(3): opt_einsum counts the 3 x 3 eye; the plan does not build it."""
    d = derive("ii->", shapes=((3, 3),))
    (g,) = cost(d).grads
    assert g.equation == ",ij->ij"
    _, info = opt_einsum.contract_path(",ij->ij", (), (3, 3), shapes=True)
    assert (g.naive_flops, g.flops) == (int(info.naive_cost), int(info.opt_cost)) == (9, 9)
    p = plan(d)
    assert [s.kind for s in p.forward] == ["diagonal", "einsum"]
    assert [s.kind for s in p.backward] == ["broadcast", "scatter"]
    assert p.backward_flops == 0


def test_summed_letter_is_a_broadcast_and_size_one_axis_a_reshape():
    p = plan(derive("...ij,...jk->...ik", shapes=((1, 2, 3), (5, 3, 4))))
    assert [s.kind for s in p.forward] == ["reshape", "einsum"]
    assert [s.kind for s in p.backward] == ["einsum", "einsum", "reshape"]
    p = plan(derive("ij,jk->i", shapes=((2, 3), (3, 4))))
    assert [s.kind for s in p.backward][-1] == "broadcast"


def test_joint_backward_shares_what_separate_paths_recompute():
    """x^T A x: separately each gradient redoes a matrix-vector product; jointly they share one."""
    d = derive("i,ij,j->", names=("x", "A", "x"), shapes=((30,), (30, 30), (30,)))
    r = cost(d)
    assert r.backward < r.separate_backward < r.naive_backward
    matvec = flop_count("ij", True, 2, {"i": 30, "j": 30})
    assert r.backward < 2 * matvec


@pytest.mark.parametrize("n", [3, 4, 5])
def test_chain_backward_is_twice_the_forward(n):
    """Every pairwise step of a matrix chain has two swaps, each as costly as the step."""
    letters = "abcdefgh"[:n + 1]
    equation = ",".join(letters[k:k + 2] for k in range(n)) + f"->{letters[0]}{letters[-1]}"
    sizes = [7, 50, 3, 40, 2, 60][:n + 1]
    p = plan(derive(equation, shapes=[(sizes[k], sizes[k + 1]) for k in range(n)]))
    assert [s.kind for s in p.backward] == ["einsum"] * (2 * (n - 1))
    assert len({s.target for s in p.backward}) == 2 * (n - 1)   # each gradient computed once
    assert p.backward_flops == 2 * p.forward_flops
    assert len(p.recompute) == n - 2 and p.recompute_flops < p.forward_flops


def test_product_rule_is_one_einsum_and_a_sum():
    p = plan(derive("ij,ij->", names=("A", "A"), shapes=((2, 3), (2, 3))))
    assert [s.kind for s in p.backward] == ["einsum", "add"]
    assert p.backward[-1].inputs == ("dL_dA_1", "dL_dA_1") and p.gradients == ("dL_dA",)
    assert [s.flops for s in p.backward] == [6, 6]      # a scalar times 2 x 3, then 2 x 3 sums


def test_cost_needs_shapes():
    with pytest.raises(EinsumError, match="needs shapes"):
        cost(derive("ij,jk->ik"))
    with pytest.raises(EinsumError, match="needs shapes"):
        plan(derive("ij,jk->ik"))


def test_summary_is_deterministic():
    first = cost(derive("bhqd,bhkd->bhqk", shapes=((2, 3, 8, 4), (2, 3, 6, 4)))).summary
    again = cost(derive("bhqd,bhkd->bhqk", shapes=((2, 3, 8, 4), (2, 3, 6, 4)))).summary
    assert first == again and "\n" not in first and first.startswith("cost: forward ")


@pytest.mark.parametrize("label,equation,names,shapes", SUITE, ids=SUITE_IDS)
def test_exported_backward_costs_no_more_than_autodiff(label, equation, names, shapes):
    """XLA FLOPs of jax.vjp of d.compile('jax') <= those of jax.vjp of jnp.einsum (fwd + pullback)."""
    pytest.importorskip("jax")
    d = derive(equation, names=names, shapes=shapes)
    autodiff = xla_vjp_flops(d, "autodiff")
    exported = xla_vjp_flops(d, "exported")
    assert autodiff > 0
    assert exported / autodiff <= 1.0, f"{label}: {exported} FLOPs against autodiff's {autodiff}"


def test_naive_backward_costs_more_than_autodiff():
    """The measurement can fail: one einsum per gradient loses on the quadratic form."""
    pytest.importorskip("jax")
    d = derive("i,ij,j->", names=("x", "A", "x"), shapes=((64,), (64, 64), (64,)))
    assert xla_vjp_flops(d, "naive") > 1.2 * xla_vjp_flops(d, "autodiff")


def test_unknown_implementation():
    pytest.importorskip("jax")
    with pytest.raises(EinsumError, match="unknown implementation"):
        xla_vjp_flops(derive("ij->i", shapes=((2, 3),)), "fast")


# -- the learner's count: one rule everywhere ------------------------------------------------

def test_one_rule_for_forward_gradients_and_backward():
    """A contraction of two operands: 2 x the product of its letters' sizes, each gradient the
    same, the backward twice the forward."""
    from einsum_magic.compute.cost import lesson, tally

    for equation, shapes in [("ij,jk->ik", ((2, 3), (3, 4))), ("bij,bjk->bik", ((5, 2, 3), (5, 3, 4))),
                             ("bhqd,bhkd->bhqk", ((2, 3, 8, 4), (2, 3, 6, 4)))]:
        d = derive(equation, shapes=shapes)
        forward, *grads, backward = tally(d)
        expected = 2 * prod(d.sizes.values())
        assert forward.flops == expected
        assert [g.flops for g in grads] == [expected] * 2
        assert backward.flops == 2 * expected
        assert lesson(d).endswith("2 × the forward")


def test_data_movement_costs_nothing_and_is_named():
    from einsum_magic.compute.cost import MOVEMENT, tally

    cases = {"ij->ji": ["transpose"], "ii->i": ["diagonal read", "diagonal write"],
             "ij->i": ["sum", "broadcast"]}
    for equation, kinds in cases.items():
        shapes = ((3, 3),) if "ii" in equation else ((2, 3),)
        parts = [p for t in tally(derive(equation, shapes=shapes)) for p in t.parts]
        assert [k for k in kinds if k not in {p.kind for p in parts}] == []
        assert all(p.flops == 0 for p in parts if p.kind in MOVEMENT)
        assert all("scatter" not in p.formula + p.equation for p in parts)


@pytest.mark.parametrize("label, equation, names, shapes", SUITE, ids=SUITE_IDS)
def test_the_tally_counts_the_plan_that_runs(label, equation, names, shapes):
    """The joint backward of the tally is the plan export writes, counted step by step."""
    from einsum_magic.compute.cost import tally

    d = derive(equation, names=names, shapes=shapes)
    p = plan(d)
    *_, backward = tally(d)
    assert backward.flops == p.backward_flops
    assert len(backward.parts) == len(p.backward)
