"""Property-based: on random einsums every derived gradient equals jax.vjp's.

Equations are drawn with 1-4 operands, repeated letters (diagonals), letters
summed inside one operand, ``...`` with size-1 broadcasting, size-1 broadcasting of
named letters, implicit mode, 0-d operands and upper-case letters.
"""

from __future__ import annotations

import string

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from einsum_magic import EinsumError, derive
from reference import assert_grads_equal, jax_vjp

PROFILE = settings(max_examples=300, derandomize=True, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


@st.composite
def einsums(draw):
    pool = draw(st.lists(st.sampled_from(string.ascii_letters), min_size=1, max_size=5, unique=True))
    size = {c: draw(st.integers(1, 3)) for c in pool}
    n_ops = draw(st.integers(1, 4))
    ell_rank = draw(st.integers(0, 2))
    ell_shape = [draw(st.integers(1, 3)) for _ in range(ell_rank)]
    terms, shapes = [], []
    for _ in range(n_ops):
        letters = draw(st.lists(st.sampled_from(pool), max_size=3))
        has_ell = draw(st.booleans()) if ell_rank or draw(st.booleans()) else False
        shape = []
        for i, c in enumerate(letters):
            n = size[c]
            if letters.count(c) == 1 and n > 1 and draw(st.integers(0, 5)) == 0:
                n = 1                                     # size-1 broadcasting of a letter
            shape.append(n)
        term = "".join(letters)
        if has_ell:
            own = draw(st.integers(0, ell_rank))
            ell = [1 if draw(st.integers(0, 3)) == 0 else n for n in ell_shape[ell_rank - own:]]
            at = draw(st.integers(0, len(letters)))
            term = term[:at] + "..." + term[at:]
            shape = shape[:at] + ell + shape[at:]
        terms.append(term)
        shapes.append(tuple(shape))
    lhs = ",".join(terms)
    if draw(st.booleans()):
        equation = lhs                                    # implicit mode
    else:
        seen = sorted({c for t in terms for c in t if c != "."})
        out = draw(st.permutations(seen))[: draw(st.integers(0, len(seen)))]
        out = "".join(out)
        if "..." in lhs:
            at = draw(st.integers(0, len(out)))
            out = out[:at] + "..." + out[at:]
        equation = lhs + "->" + out
    return equation, shapes


def instance(case, seed):
    """The derivation, random operands, forward result and cotangent of a drawn einsum."""
    equation, shapes = case
    rng = np.random.default_rng(seed)
    ops = [rng.standard_normal(s) for s in shapes]
    try:
        out = np.einsum(equation, *ops)
    except ValueError:
        assume(False)                                     # not an einsum numpy accepts
    return derive(equation, shapes=shapes), ops, out, rng.standard_normal(np.shape(out))


@PROFILE
@given(einsums(), st.integers(0, 2**31 - 1))
def test_vjp_and_loop_vjp_equal_jax(case, seed):
    equation = case[0]
    d, ops, out, cot = instance(case, seed)
    want = jax_vjp(equation, ops, cot)
    assert_grads_equal(d.vjp(cot, *ops), want)
    assert_grads_equal(d.loop_vjp(cot, *ops), want)
    np.testing.assert_allclose(d.loop_forward(*ops), out, rtol=1e-9, atol=1e-9)
    derive(equation)                                      # symbolic form never fails either


@PROFILE
@given(einsums(), st.integers(0, 2**31 - 1))
def test_interpretation_is_never_wrong(case, seed):
    d, ops, _, cot = instance(case, seed)
    ns = {"np": np, d.cotangent: cot, **dict(zip(d.names, ops))}
    for g, want in zip(d.grads, d.vjp(cot, *ops)):
        if g.interpretation is not None:
            got = eval(g.interpretation, ns)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=g.interpretation)


@settings(max_examples=500, derandomize=True, deadline=None)
@given(st.text(alphabet=string.ascii_letters[:6] + "ABZ.,->  1é\t", max_size=16),
       st.none() | st.lists(st.lists(st.integers(-1, 3), max_size=4).map(tuple), max_size=4))
def test_parser_fuzz_only_einsum_error_escapes(text, shapes):
    try:
        d = derive(text, shapes=shapes)
    except EinsumError as e:
        assert text in str(e) or "string" in str(e)
        return
    assert len(d.grads) == len(text.split("->")[0].split(","))


@settings(max_examples=1000, derandomize=True, deadline=None)
@given(st.text(alphabet="abcAB.,-> ", max_size=10), st.data())
def test_derive_accepts_exactly_what_numpy_accepts(text, data):
    """Differential: with shapes, derive() raises EinsumError exactly when np.einsum raises."""
    count = len(text.split("->")[0].split(","))
    shapes = [tuple(data.draw(st.lists(st.integers(1, 3), max_size=3))) for _ in range(count)]
    try:
        np.einsum(text, *[np.ones(s) for s in shapes])
        numpy_accepts = True
    except ValueError:
        numpy_accepts = False
    try:
        derive(text, shapes=shapes)
        accepts = True
    except EinsumError:
        accepts = False
    assert accepts == numpy_accepts


NAMES = ["A", "B", "x", "i", "n_i", "dL_dA", "dL_dA_1", "dL_dC"]


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(einsums(), st.data())
def test_any_names_even_repeated_or_clashing_with_generated_code(case, data):
    """Names repeat (one array at several positions) or look like generated names: still exact."""
    equation, shapes = case
    names = [data.draw(st.sampled_from(NAMES)) for _ in shapes]
    assume(all(s == shapes[names.index(n)] for n, s in zip(names, shapes)))
    output = data.draw(st.sampled_from([n for n in NAMES + ["C", "out"] if n not in names]))
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(s) for n, s in zip(names, shapes)}
    ops = [arrays[n] for n in names]
    try:
        out = np.einsum(equation, *ops)
    except ValueError:
        assume(False)
    d = derive(equation, names=names, output=output, shapes=shapes)
    cot = rng.standard_normal(np.shape(out))
    want = jax_vjp(equation, ops, cot)
    assert_grads_equal(d.vjp(cot, *ops), want)
    assert_grads_equal(d.loop_vjp(cot, *ops), want)
    np.testing.assert_allclose(d.loop_forward(*ops), out, rtol=1e-9, atol=1e-9)
