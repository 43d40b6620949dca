"""core.evaluate: the one NumPy evaluation of a derived einsum, held to jax.vjp; seeded stand-ins."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from einsum_magic import derive
from einsum_magic.core.evaluate import derived, evaluate, random_array
from reference import HARD_CASES, assert_grads_equal, jax_vjp, random_operands

IDS = [eq or "empty" for eq, _ in HARD_CASES]


@pytest.mark.parametrize("equation,shapes", HARD_CASES, ids=IDS)
def test_derived_gradients_match_jax_vjp(equation, shapes):
    pytest.importorskip("jax")
    d = derive(equation, shapes=shapes)
    ops = random_operands(shapes, seed=7)
    cot = np.random.default_rng(8).standard_normal(d.output_shape)
    assert_grads_equal(derived(d, cot, ops), jax_vjp(d.equation, ops, cot))


def test_a_wrong_gradient_is_not_what_jax_vjp_says():
    """The comparison above can fail: a transposed derived einsum gives other values."""
    pytest.importorskip("jax")
    d = derive("ij,jk->ik", shapes=((3, 3), (3, 3)))
    wrong = dataclasses.replace(d.grads[0], equation="ik,jk->ji")
    ops = random_operands(((3, 3), (3, 3)), seed=1)
    cot = np.random.default_rng(2).standard_normal((3, 3))
    want = jax_vjp(d.equation, ops, cot)[0]
    assert not np.allclose(evaluate(wrong, cot, ops), want)


def test_absolute_is_the_magnitude_of_the_terms_and_bounds_the_value():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    ops = random_operands(((2, 3), (3, 4)), seed=4)
    cot = np.random.default_rng(5).standard_normal((2, 4))
    g = d.grads[0]
    scale = evaluate(g, cot, ops, absolute=True)
    np.testing.assert_allclose(scale, np.abs(cot) @ np.abs(ops[1]).T)
    assert np.all(np.abs(evaluate(g, cot, ops)) <= scale + 1e-12)


def test_dtype_casts_before_the_einsum():
    d = derive("ij->i", shapes=((2, 3),))
    got = evaluate(d.grads[0], np.ones(2, dtype=np.float32), (np.ones((2, 3), np.float32),),
                   dtype=np.complex128)
    assert got.dtype == np.complex128 and got.shape == (2, 3)


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex64", "complex128", "float16"])
def test_random_arrays_are_seeded_and_of_the_dtype(dtype):
    a = random_array(np.random.default_rng(0), (3, 2), dtype)
    b = random_array(np.random.default_rng(0), (3, 2), dtype)
    c = random_array(np.random.default_rng(1), (3, 2), dtype)
    assert a.dtype.name == dtype and a.shape == (3, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.all(a != 1)             # never all ones: ones hide transposed gradients
    if dtype.startswith("complex"):
        assert np.all(a.imag != 0)
