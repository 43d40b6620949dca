"""The check without JAX: NumPy's exact adjoint (dot-product) test of every derived gradient.

An einsum is linear in each operand. So for the operand at position ``k``, a random
direction ``dX`` of its shape and a random cotangent ``g`` of the output's shape, the
derived gradient ``dL_dX`` (the einsum over ``g``, the other operands and the ``eye`` /
``ones`` tensors of the generalized rule) is right exactly when

    ``<g, einsum(eq, …, dX, …)> == <dL_dX, dX>``        (``<a, b> = sum(a * b)``)

for every ``dX`` and ``g``: the gradient is the transpose of the linear map
``dX ↦ einsum(…, dX, …)``. One seeded random pair decides it with probability one; a
transposed gradient, a missing ``eye`` or a wrong sign changes the right-hand side. The
product has no conjugation, JAX's convention for complex numbers, which the derived
gradients follow.

Everything runs in float64 (complex128 for complex operands) with NumPy alone, so it
needs no JAX. Both sides are sums of products; their difference is compared with
the same sum on absolute values (``sum(|g| * einsum(…, |dX|, …))``), which bounds every
rounding error, within :data:`RTOL`.

:func:`check` returns a :class:`~einsum_magic.check.records.CheckReport` like the JAX check,
with ``fallback`` saying why JAX was not used. :func:`einsum_magic.check.policy.check` falls back to it
where JAX is missing, fails to import or fails at run time.

>>> from einsum_magic import derive
>>> r = check(derive("ii,ij->j", shapes=((3, 3), (3, 4))), fallback="JAX is not installed")
>>> r.passed, [g.target for g in r.grads], r.dtype
(True, ['dL_dA', 'dL_dB'], 'float64')
>>> r.summary
'check: PASS, 2/2 gradients pass the adjoint test (float64); checked with NumPy (adjoint test), JAX is not installed'
"""

from __future__ import annotations

import math

import numpy as np

from ..core.derivation import Derivation
from ..core.evaluate import derived, evaluate, random_array
from ..errors import EinsumError
from .inputs import MAX_ELEMENTS, integer, prepare
from .records import CheckReport, GradCheck

__all__ = ["check", "derived", "adjoint_sides", "RTOL"]

#: Tolerance of the float64 test, relative to the sum on absolute values.
RTOL = 1e-10


def adjoint_sides(equation: str, operands, position: int, gradient, cotangent, direction):
    """``(<g, einsum(…, dX at position, …)>, <gradient, dX>, scale)`` of the adjoint test.

    ``scale`` is ``sum(|g| * einsum(…, |dX|, …))`` with every operand's absolute value:
    it bounds the rounding error of both sides.

    >>> A, B = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4)
    >>> g, dA = np.ones((2, 4)), np.eye(2, 3)
    >>> lhs, rhs, scale = adjoint_sides("ij,jk->ik", (A, B), 0, g @ B.T, g, dA)
    >>> float(lhs) == float(rhs) == 28.0        # rows 0 and 1 of B, summed
    True
    """
    ops = list(operands)
    ops[position] = direction
    forward = np.einsum(equation, *ops, optimize=True)
    lhs = np.sum(cotangent * forward)
    rhs = np.sum(np.asarray(gradient) * direction)
    absolute = np.einsum(equation, *[np.abs(x) for x in ops], optimize=True)
    scale = float(np.sum(np.abs(cotangent) * absolute))
    return lhs, rhs, scale


def check(d: Derivation, *operands, seed: int | None = 0, cotangent=None,
          max_elements: int | None = None, fallback: str = "", gradients=None):
    """The adjoint test of every gradient of ``d``, in float64: a ``CheckReport``.

    (:func:`derived`, the derived gradients evaluated with NumPy, is
    :func:`einsum_magic.core.evaluate.derived`.)

    ``operands``, ``seed``, ``cotangent`` and ``max_elements`` are as for
    :func:`einsum_magic.check.report.check` (the user's arrays when small enough, else seeded
    random ones; a seeded random cotangent, never ones). ``fallback`` says why JAX was
    not used (the summary's end; none when empty). ``gradients`` (tests) replaces the derived
    gradients: a function of ``(cotangent, *operands)`` returning one array per position.
    """
    if not isinstance(d, Derivation):
        raise EinsumError(f"check() takes a Derivation (from derive()), not {type(d).__name__}")
    if seed is not None:
        seed = integer(seed, 0, "seed must be a non-negative integer or None")
    budget = integer(MAX_ELEMENTS if max_elements is None else max_elements, 1,
                      "max_elements must be a positive integer")
    d, inputs = prepare(d, operands, seed, "float64", cotangent, budget)
    ops, cot = inputs.operands, inputs.cotangent
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    notes = tuple(n for n in inputs.notes if not n.startswith("complex numbers follow"))
    if inputs.dtype == "complex128":
        notes += ("complex numbers follow JAX's convention: <a, b> = sum(a * b), no "
                  "conjugation",)
    given = None if gradients is None else tuple(gradients(cot, *ops))
    grads = []
    for g in d.grads:
        shape = np.shape(ops[g.position])
        problem = None
        if given is not None:
            grad = given[g.position]
        else:
            try:
                grad = evaluate(g, cot, ops)
            except ValueError as e:      # a broken derivation: report, don't raise
                grad, problem = None, str(e).strip().splitlines()[0]
        if problem is not None:
            message = f"the derived einsum {g.equation!r} does not run on these operands: {problem}"
        elif np.shape(grad) != shape:
            message = f"shape {np.shape(grad)} != {shape}"
        else:
            message = None
        if message is not None:
            grads.append(GradCheck(g.target, g.wrt, g.equation, False, math.nan, math.nan,
                                   math.nan, RTOL, 0.0, message))
            continue
        direction = random_array(rng, shape, inputs.dtype)
        lhs, rhs, scale = adjoint_sides(d.equation, ops, g.position, grad, cot, direction)
        err = float(abs(lhs - rhs))
        rel = 0.0 if err == 0 else (err / scale if scale > 0 else math.inf)
        passed = rel <= RTOL
        message = "" if passed else (
            f"fails the adjoint test: <g, einsum(..., d{g.wrt}, ...)> = {_show(lhs)} but "
            f"<{g.target}, d{g.wrt}> = {_show(rhs)}")
        grads.append(GradCheck(g.target, g.wrt, g.equation, passed, err, rel, err, RTOL, 0.0,
                               message))
    grads = tuple(grads)
    return CheckReport(passed=bool(grads) and all(g.passed for g in grads), grads=grads,
                       device="numpy", backend="numpy", dtype=inputs.dtype,
                       precision="float64", user_arrays=inputs.user_arrays, notes=notes,
                       timings={}, fallback=fallback, real=inputs.real)


def _show(x) -> str:
    return f"{complex(x):.6g}" if np.iscomplexobj(x) else f"{float(x):.6g}"
