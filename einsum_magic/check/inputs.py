"""Which arrays the check runs on: the user's, within budget, in a dtype that represents them.

This module owns the arrow ``(Derivation, the arrays a call received) → Inputs``, NumPy only:

- the user's arrays, bound to the derivation (:meth:`Derivation.bound_to
  <einsum_magic.core.derivation.Derivation.bound_to>`) and cast to the check's dtype (complex
  arrays make a real dtype complex; integers and booleans are cast, and a note says so);
- seeded random stand-ins (:func:`einsum_magic.core.evaluate.random_array`) where there are no
  arrays, where they hold NaN or inf, or where an array is over the element budget
  (:data:`MAX_ELEMENTS`; the letters are clamped, see :func:`_clamp`), and
  :attr:`Inputs.stand_ins` says why;
- where the dtype cannot represent the values or their products, every array scaled by a power
  of two (exact; every gradient is linear in each operand it reads): :attr:`Inputs.scaled`;
- the seeded random cotangent (never all ones: ones hide transposed gradients), or the one given.

>>> from einsum_magic.core.derivation import derive
>>> d, inputs = prepare(derive("ij,jk->ik", shapes=((2, 3), (3, 4))), (), 0, "float32", None, 100)
>>> [a.shape for a in inputs.operands], inputs.cotangent.shape, inputs.user_arrays
([(2, 3), (3, 4)], (2, 4), False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.derivation import Derivation
from ..core.evaluate import random_array
from ..errors import EinsumError
from .records import TOLERANCES, are

__all__ = ["Inputs", "MAX_ELEMENTS", "prepare", "integer", "resolve_dtype", "check_dtype"]

#: Element budget per array (each operand and the output) when ``max_elements`` is not
#: given. Bigger arrays are replaced by seeded random arrays with clamped sizes: a
#: million float32 elements is 4 MB, checked in well under a second on a CPU.
MAX_ELEMENTS = 1_000_000

_COMPLEX = {"float16": "complex64", "bfloat16": "complex64", "float32": "complex64",
            "float64": "complex128"}


@dataclass(frozen=True)
class Inputs:
    operands: tuple        # NumPy arrays of ``dtype``, one per position (the same object for a name)
    cotangent: np.ndarray
    dtype: str
    user_arrays: bool
    notes: tuple[str, ...]
    stand_ins: str = ""
    scaled: bool = False
    real: tuple[str, ...] = ()     # operands the user gave real, checked cast to complex


def integer(value, least: int, message: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < least:
        raise EinsumError(f"{message}, not {value!r}")
    return int(value)


def resolve_dtype(jnp, dtype) -> str:
    try:
        name = jnp.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in TOLERANCES:
        raise EinsumError(f"dtype {dtype!r} cannot be checked: use one of {', '.join(TOLERANCES)}")
    return name



def check_dtype(dtype) -> None:
    """The dtype check of :func:`resolve_dtype` without JAX (the adjoint test runs in float64)."""
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = dtype if isinstance(dtype, str) else None
    if name not in TOLERANCES:
        raise EinsumError(f"dtype {dtype!r} cannot be checked: use one of {', '.join(TOLERANCES)}")

def prepare(d: Derivation, operands, seed, dtype: str, cotangent, budget: int):
    """The derivation bound to the arrays, and the arrays of the check (NumPy, ``dtype``)."""
    notes = []
    arrays = None
    stand_ins = ""
    real: tuple[str, ...] = ()
    if operands:
        if len(operands) != len(d.names):
            raise EinsumError(f"the equation takes {len(d.names)} operand(s), {len(operands)} were "
                              "given", d.equation)
        arrays = [_as_array(x, name, d.equation) for name, x in zip(d.names, operands)]
        d = d.bound_to([a.shape for a in arrays])
        first = {}
        for name, a in zip(d.names, arrays):
            if name in first and not (a.shape == first[name].shape and np.array_equal(a, first[name])):
                raise EinsumError(f"{name!r} names two positions of the equation but two different "
                                  "arrays were given", d.equation)
            first.setdefault(name, a)
        if dtype in _COMPLEX and any(a.dtype.kind == "c" for a in arrays):
            notes.append(f"complex arrays: checked in {_COMPLEX[dtype]} rather than {dtype}")
            real = tuple(dict.fromkeys(n for n, a in zip(d.names, arrays) if a.dtype.kind != "c"))
            dtype = _COMPLEX[dtype]
        bad = [name for name, a in dict(zip(d.names, arrays)).items()
               if a.dtype.kind in "fc" and not np.isfinite(a).all()]
        if bad:                  # NaN compares equal to NaN: such a check would prove nothing
            notes.append(f"{', '.join(bad)} hold{'s' if len(bad) == 1 else ''} NaN or inf: "
                         "checked on seeded random arrays of the same shapes instead")
            stand_ins = f"NaN or inf in {', '.join(bad)}"
            arrays = None
    elif d.shapes is None:
        raise EinsumError("no arrays and no shapes to check with: pass the arrays to check(), or "
                          "shapes to derive(..., shapes=...)", d.equation)
    sizes = d.sizes
    clamped = _clamp(d, budget)
    if clamped is not None:
        notes.append(_clamp_note(d, sizes, clamped, budget, arrays is not None))
        if arrays is not None:
            stand_ins = "over the size budget"
        sizes, arrays = clamped, None
    op_rng, cot_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    factors: dict[str, int] = {}
    if arrays is None:
        user = False
        made = {}
        for name, subs in zip(d.names, d.inputs):
            if name not in made:
                made[name] = random_array(op_rng, tuple(sizes[c] for c in subs), dtype)
        ops = tuple(made[name] for name in d.names)
    else:
        user = True
        notes += _cast_notes(d.names, arrays, dtype)
        first = dict(zip(d.names, arrays))
        factors = _scaling(d, first, dtype)
        if factors:
            notes.append(_scaling_note(first, factors, dtype))
        cast = {name: _scaled(a, factors.get(name, 0)).astype(dtype) for name, a in first.items()}
        ops = tuple(cast[name] for name in d.names)
    out_shape = tuple(sizes[c] for c in d.result)
    if cotangent is not None and clamped is not None:
        notes.append(f"the cotangent given was replaced by a random one of the clamped shape "
                     f"{out_shape}")
        cotangent = None
    cot_scale = 0
    if cotangent is None:
        cot = random_array(cot_rng, out_shape, dtype)
    else:
        cot, cot_scale = _given_cotangent(d, cotangent, out_shape, dtype)
        if cot_scale:
            notes.append(f"the cotangent {d.cotangent} holds values up to "
                         f"{float(np.max(np.abs(cotangent))):.1e}: the check ran on "
                         f"{d.cotangent}·2^{-cot_scale} (an exact scaling; every gradient is "
                         "linear in it)")
    if dtype.startswith("complex"):
        notes.append("complex numbers follow JAX's convention: no conjugation, the other operands "
                     "enter each gradient as they are; PyTorch conjugates them "
                     "(dL_dA = einsum(dL_dC, B.conj())), and so does the PyTorch export")
    if real:
        notes.append(f"{are(real)} real: the gradient of a real array is the real part of the "
                     "derived one (as jax.vjp and torch give it)")
    return d, Inputs(ops, cot, dtype, user, tuple(notes), stand_ins,
                      (user and bool(factors)) or bool(cot_scale), real)


#: ``dtype -> (log2 of the largest finite value, log2 of the smallest normal one, mantissa
#: bits)``: where the user's values and their products must lie for the check to see them.
_RANGE = {"float16": (15.9, -14, 11), "bfloat16": (127.9, -126, 8),
          "float32": (127.9, -126, 24), "float64": (1023.9, -1022, 53)}
_RANGE.update({"complex64": _RANGE["float32"], "complex128": _RANGE["float64"]})


def _scaling(d: Derivation, arrays: dict, dtype: str) -> dict[str, int]:
    """``name -> e``: scale that array by ``2**-e``, where ``dtype`` cannot hold the check.

    The products that enter the output and every gradient are bounded by the product of
    the arrays' largest magnitudes (times the cotangent's and the number of terms). When
    that bound, or any array, is outside the dtype's range (float32 overflows beyond
    3.4e38 and loses everything below 1.2e-38), every array is scaled by a power of two
    that brings its largest magnitude into [0.5, 1): exact in binary floating point, and
    harmless to the check, since each gradient is linear in every operand it reads.
    Empty when nothing needs scaling (the usual case).

    >>> from einsum_magic import derive
    >>> d = derive("ij,jk,kl->il", shapes=((2, 2), (2, 2), (2, 2)))
    >>> big = {n: np.full((2, 2), 1e20) for n in "ABC"}
    >>> _scaling(d, big, "float32"), _scaling(d, big, "float64")
    ({'A': 67, 'B': 67, 'C': 67}, {})
    >>> _scaling(d, {n: np.ones((2, 2)) for n in "ABC"}, "float32")
    {}
    """
    top, bottom, bits = _RANGE[dtype]
    exps = {}
    for name, a in arrays.items():
        m = float(np.max(np.abs(a))) if a.size else 0.0
        if m > 0:
            exps[name] = math.frexp(m)[1]
    if not exps:
        return {}
    logs = [exps[name] for name in d.names if name in exps]
    terms = math.log2(max(1, math.prod(d.sizes.values()))) + 3     # cotangent: |x| < 8
    high = sum(max(0, e) for e in logs) + terms
    low = sum(min(0, e - 1) for e in logs)
    single = max(exps.values()) > top or min(exps.values()) - 1 < bottom + bits
    if high <= top and low >= bottom + bits and not single:
        return {}
    return exps


def _scaled(a: np.ndarray, e: int) -> np.ndarray:
    """``a * 2**-e`` in float64 (complex128) before the cast, so that nothing overflows."""
    if not e:
        return a
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64) * 2.0 ** -e


def _scaling_note(arrays: dict, factors: dict, dtype: str) -> str:
    largest = max(float(np.max(np.abs(a))) for a in arrays.values() if a.size)
    names = ", ".join(f"{n}·2^{-e}" for n, e in factors.items())
    return (f"the arrays hold values up to {largest:.1e}: {dtype} cannot represent them or their "
            f"products, so the check ran on {names} (an exact scaling by powers of two; each "
            "gradient is linear in every operand it reads)")


def _given_cotangent(d: Derivation, cotangent, shape: tuple, dtype: str):
    """``(cotangent in dtype, e)``: scaled by ``2**-e`` where its magnitude would break the
    scaling of the operands (which assumes a cotangent below 8 and not tiny), else ``e = 0``."""
    cot = _as_array(cotangent, d.cotangent, d.equation)
    if cot.shape != shape:
        raise EinsumError(f"the cotangent {d.cotangent} has shape {cot.shape}, the output "
                          f"{d.output} has shape {shape}", d.equation)
    if cot.dtype.kind == "c" and not dtype.startswith("complex"):
        raise EinsumError(f"the cotangent {d.cotangent} is complex but the check runs in "
                          f"{dtype}: pass complex operands or a complex dtype", d.equation)
    if cot.dtype.kind in "fc" and not np.isfinite(cot).all():
        raise EinsumError(f"the cotangent {d.cotangent} holds NaN or inf: a check with it would "
                          "prove nothing", d.equation)
    m = float(np.max(np.abs(cot))) if cot.size else 0.0
    e = math.frexp(m)[1] if m > 0 else 0
    if -30 <= e <= 3:
        e = 0
    return _scaled(cot, e).astype(dtype), e


def _as_array(x, name: str, equation: str) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as e:     # ragged lists, tensors that need .detach(), ...
        raise EinsumError(f"{name} is not an array: {str(e).splitlines()[0]}", equation) from None
    if a.dtype.kind not in "biufc" and a.dtype.name not in TOLERANCES:     # bfloat16 is kind 'V'
        raise EinsumError(f"{name} holds {a.dtype} values: the check needs numbers", equation)
    return a



def _cast_notes(names, arrays, dtype: str) -> list[str]:
    by_kind: dict[str, list[str]] = {}
    for name, a in zip(names, arrays):
        if a.dtype.name != dtype:
            kind = {"b": "boolean", "i": "integer", "u": "integer"}.get(a.dtype.kind, a.dtype.name)
            group = by_kind.setdefault(kind, [])
            if name not in group:
                group.append(name)
    return [f"{kind} array{'s' if len(group) > 1 else ''} {', '.join(group)} cast to {dtype}"
            for kind, group in by_kind.items()]


def _clamp(d: Derivation, budget: int) -> dict | None:
    """Letter sizes that put every operand and the output within ``budget`` elements, or None.

    The largest letter of an array over budget is halved until none is; letters tied by
    an array passed twice keep one size, so that it stays one array.
    """
    sizes = dict(d.sizes)
    tensors = (*d.inputs, d.result)

    def count(t):
        return math.prod(sizes[c] for c in t)

    if all(count(t) <= budget for t in tensors):
        return None
    ties = _ties(d)
    while True:
        over = [t for t in tensors if count(t) > budget]
        if not over:
            return sizes
        c = max(over[0], key=lambda c: sizes[c])
        for x in ties.get(c, (c,)):
            sizes[x] = max(1, sizes[x] // 2)


def _ties(d: Derivation) -> dict[str, tuple[str, ...]]:
    """Letters that must share a size because one array fills several positions."""
    group = {c: {c} for s in d.inputs for c in s}
    for name in set(d.names):
        at = [k for k, n in enumerate(d.names) if n == name]
        for k in at[1:]:
            for a, b in zip(d.inputs[at[0]], d.inputs[k]):
                if group[a] is not group[b]:
                    merged = group[a] | group[b]
                    for c in merged:
                        group[c] = merged
    return {c: tuple(sorted(g)) for c, g in group.items()}


def _clamp_note(d: Derivation, sizes: dict, clamped: dict, budget: int, user: bool) -> str:
    over = []
    for name, subs in list(zip(d.names, d.inputs)) + [(d.output, d.result)]:
        n = math.prod(sizes[c] for c in subs)
        if n > budget and name not in [o[0] for o in over]:
            over.append((name, n))
    what = ", ".join(f"{name} ({n:,} elements)" for name, n in over)
    changed = ", ".join(f"{c} {sizes[c]}→{clamped[c]}" for c in sizes if clamped[c] != sizes[c])
    instead = "the arrays were replaced by" if user else "checked on"
    return (f"{what} over the budget of {budget:,} elements per array (max_elements): {instead} "
            f"seeded random arrays with clamped sizes {changed}")
