"""Evaluate a derived einsum with NumPy, and draw the seeded random arrays that stand in for data.

This module owns the arrow ``Grad + arrays → gradient array``, the one NumPy evaluation of a
derived einsum: over (cotangent, the other operands in order, the ``eye`` / ``ones`` tensors of
:attr:`Grad.aux <einsum_magic.core.derivation.Grad>`), exactly the einsum that
:attr:`Grad.code <einsum_magic.core.derivation.Grad>` runs. The check's float64 reference, its
per-element scale (the same einsum on absolute values) and NumPy's adjoint test all evaluate it
here. :func:`random_array` draws the seeded standard-normal stand-ins (operands, cotangents,
directions) in the dtype asked for.

>>> import numpy as np
>>> from einsum_magic.core.derivation import derive
>>> d = derive("ij,jk->ik")
>>> A, B, dC = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
>>> [g.shape for g in derived(d, dC, (A, B))]
[(2, 3), (3, 4)]
>>> float(evaluate(derive("ii->").grads[0], np.array(2.0), (np.ones((3, 3)),)).trace())
6.0
"""

from __future__ import annotations

import numpy as np

__all__ = ["evaluate", "derived", "random_array"]


def evaluate(g, cotangent, operands, *, dtype=None, absolute: bool = False) -> np.ndarray:
    """The derived einsum of ``g`` over ``cotangent`` and ``operands`` (one per position).

    ``dtype``: cast the cotangent and the operands to it first (a wide dtype for a reference);
    ``absolute``: evaluate on their absolute values in float64, the magnitude of the terms that
    enter each element (it bounds their rounding error). ``eye`` and ``ones`` are float64, with
    the sizes of the axes of the operand they stand for. Raises NumPy's ``ValueError`` where
    the einsum does not run on these arrays.
    """
    shape = np.shape(operands[g.position])
    args = [cotangent] + [x for m, x in enumerate(operands) if m != g.position]
    if absolute:
        args = [np.abs(x).astype(np.float64) for x in args]
    elif dtype is not None:
        args = [np.asarray(x).astype(dtype) for x in args]
    args += [np.eye(shape[a.axis]) if a.kind == "eye" else np.ones(shape[a.axis]) for a in g.aux]
    return np.einsum(g.equation, *args, optimize=True)


def derived(d, cotangent, operands) -> tuple:
    """Each gradient of the derivation ``d`` by :func:`evaluate`, in the operands' dtype."""
    return tuple(evaluate(g, cotangent, operands) for g in d.grads)


def random_array(rng: np.random.Generator, shape, dtype: str = "float64") -> np.ndarray:
    """Seeded standard-normal values of ``shape`` and ``dtype`` (complex: both parts drawn).

    Drawn in float64 for float64 and complex128, else in float32 and cast.

    >>> x = random_array(np.random.default_rng(0), (2,), "complex64")
    >>> x.dtype.name, x.shape
    ('complex64', (2,))
    """
    real = np.float64 if dtype in ("float64", "complex128") else np.float32
    x = rng.standard_normal(shape, dtype=real)
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape, dtype=real)
    return np.asarray(x).astype(dtype)
