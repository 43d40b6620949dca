"""The inline check: every derived gradient against JAX's autodiff, on the default JAX device.

This module owns the arrow ``Derivation → CheckReport`` of the data flow. For a
:class:`~einsum_magic.core.derivation.Derivation` and the operands (the user's arrays, or
seeded random ones with the derivation's sizes) it computes, on JAX's default device
(a GPU when JAX has one) and under ``jax.default_matmul_precision("highest")``:

- each derived gradient: :attr:`Grad.equation <einsum_magic.core.derivation.Grad>` evaluated
  with ``jnp.einsum`` over (cotangent, the other operands in order, the ``eye``/``ones``
  tensors of :attr:`Grad.aux`), exactly the einsum that :attr:`Grad.code` runs;
- the same gradients by ``jax.vjp`` of the forward ``jnp.einsum``;
- a NumPy reference: the derived einsum again, in float64 (complex128).

A gradient passes when its error against ``jax.vjp`` and against the reference is
within the dtype's tolerance (:data:`TOLERANCES`) *element by element*. Each element's
error is measured relative to its own *scale*: the same einsum evaluated on the absolute
values of its operands, the magnitude of the terms that entered that element, which
bounds every rounding error of its sum (``|Σ xy| ≤ Σ |x||y|``). So float32 passes on
long contractions and on arrays whose terms cancel, while a transposed or otherwise
wrong gradient, off by the order of the values themselves, fails; an outlier in one
operand raises the scale of the elements it entered and of no other.

The check runs in a dtype that represents the user's values: where the arrays, or the
products of their largest values, lie outside the dtype's range (float32 above 3.4e38
or below 1.2e-38), each array is scaled by a power of two first (exact; every gradient
is linear in each operand it reads), and the report says so (:attr:`CheckReport.scaled`,
a note). Where the user's arrays were replaced by random ones (NaN or inf, the element
budget), the summary says so too.

Where JAX is not installed, fails to import or fails running the check (a
jaxlib mismatch, ``jax_disable_jit``), NumPy's exact adjoint test
(:mod:`einsum_magic.check.adjoint`) checks instead, and the report says so in one line.

JAX is imported on first use, never when this module is imported. JAX's global
configuration is never changed: float64 and complex128 run inside the scoped
``jax.enable_x64(True)`` context. Compiled functions are cached by (equations, shapes,
dtype, device), so a repeated check of a small einsum costs a few milliseconds.

>>> from einsum_magic import derive
>>> report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
>>> report.summary
'check: PASS, 2/2 gradients match jax.vjp (float32)'
>>> [(g.target, g.passed) for g in report.grads]
[('dL_dA', True), ('dL_dB', True)]
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..core.derivation import Derivation, Grad
from ..errors import EinsumError

__all__ = ["check", "CheckReport", "GradCheck", "JaxNotInstalled", "jax_available",
           "MAX_ELEMENTS", "TOLERANCES", "PRECISION", "INSTALL"]

#: Element budget per array (each operand and the output) when ``max_elements`` is not
#: given. Bigger arrays are replaced by seeded random arrays with clamped sizes: a
#: million float32 elements is 4 MB, checked in well under a second on a CPU.
MAX_ELEMENTS = 1_000_000

#: The matmul precision of both sides of the check (GPUs would use TF32 for float32).
PRECISION = "highest"

#: ``dtype -> (rtol, atol)``. ``rtol`` bounds the error relative to the gradient's
#: scale (see the module docstring); ``atol`` is a floor for results that underflow.
#: float32's 1e-4 is ~1000 float32 roundings, yet 10x below TF32's error.
TOLERANCES = {
    "float16": (1e-2, 1e-4),
    "bfloat16": (5e-2, 1e-30),
    "float32": (1e-4, 1e-30),
    "float64": (1e-10, 1e-300),
    "complex64": (1e-4, 1e-30),
    "complex128": (1e-10, 1e-300),
}

#: How to install JAX: what :class:`JaxNotInstalled` says.
INSTALL = 'pip install jax (CPU) or pip install "jax[cuda13]" (NVIDIA GPUs)'

_COMPLEX = {"float16": "complex64", "bfloat16": "complex64", "float32": "complex64",
            "float64": "complex128"}
_TIMING_RUNS = 3


class JaxNotInstalled(ImportError):
    """The check needs JAX, which is not installed; the message says how to install it."""

    def __init__(self):
        super().__init__(f"the gradient check needs JAX: {INSTALL}")


def jax_available() -> bool:
    """Whether JAX can be imported, answered without importing it.

    >>> isinstance(jax_available(), bool)
    True
    """
    try:
        return importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):       # a module without __spec__ in sys.modules
        return False


@dataclass(frozen=True)
class GradCheck:
    """The check of one gradient (one operand position)."""

    target: str            # 'dL_dA'
    wrt: str               # 'A'
    equation: str          # the derived einsum that was checked
    passed: bool
    max_abs_error: float   # derived (jnp.einsum on the device) vs jax.vjp (same device)
    max_rel_error: float   # max_abs_error relative to the gradient's scale
    ref_abs_error: float   # derived vs the NumPy float64 reference (all three nan: not run)
    rtol: float
    atol: float
    message: str           # '' when passed, else what went wrong


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check` found: one :class:`GradCheck` per operand position, and the setting."""

    passed: bool
    grads: tuple[GradCheck, ...]
    device: str            # 'cpu' or the GPU's name ('NVIDIA H100 80GB HBM3')
    backend: str           # jax.default_backend(): 'cpu', 'gpu', 'tpu'
    dtype: str
    precision: str
    user_arrays: bool      # the user's arrays were checked (not random ones)
    notes: tuple[str, ...]
    timings: dict          # derived_ms, jax_vjp_ms (warm, best of 3), compile_ms (~0 when cached)
    platform: tuple[str, ...] = ()   # what JAX warned while starting (varies by machine)
    fallback: str = ""     # why JAX was not used, when NumPy's adjoint test checked instead
    stand_ins: str = ""    # why the user's arrays were replaced by random ones ('' if not)
    scaled: bool = False   # the operands were scaled by powers of two to fit the dtype
    fallback_detail: str = ""  # JAX's own message (versions, paths, devices): live details only

    @property
    def summary(self) -> str:
        """One deterministic line: PASS/FAIL and counts, no device, errors or timings.

        >>> errors = dict(max_abs_error=1.0, max_rel_error=0.5, ref_abs_error=0.0,
        ...               rtol=1e-4, atol=1e-30, message="values differ from jax.vjp")
        >>> r = CheckReport(False, (GradCheck("dL_dA", "A", "ik,jk->ji", False, **errors),),
        ...                 "cpu", "cpu", "float32", "highest", False, (), {})
        >>> r.summary
        'check: FAIL, 0/1 gradient matches jax.vjp (float32); wrong: dL_dA'
        """
        n, ok = len(self.grads), sum(g.passed for g in self.grads)
        if self.backend == "numpy":      # NumPy's adjoint test (einsum_magic.check.adjoint)
            counted = f"{ok}/{n} gradient{'s' if n > 1 else ''} pass{'es' if n == 1 else ''} " \
                "the adjoint test"
            how = "; checked with NumPy (adjoint test)" + (
                f", {self.fallback}" if self.fallback else "")
        else:
            counted = f"{ok}/{n} gradient{'s' if n > 1 else ''} match{'es' if n == 1 else ''} jax.vjp"
            how = ""
        setting = self.dtype + (", operands scaled by powers of two" if self.scaled else "")
        on = f" on seeded random arrays, not yours ({self.stand_ins})" if self.stand_ins else ""
        if self.passed:
            return f"check: PASS, {counted} ({setting}){on}{how}"
        wrong = ", ".join(g.target for g in self.grads if not g.passed)
        return f"check: FAIL, {counted} ({setting}){on}; wrong: {wrong}{how}"


def check(d: Derivation, *operands, seed: int | None = 0, dtype="float32", cotangent=None,
          max_elements: int | None = None, fallback: bool = True) -> CheckReport:
    """Check every gradient of ``d`` against ``jax.vjp`` on JAX's default device.

    Where JAX is not installed, fails to import (any exception) or fails running the
    check, NumPy's exact adjoint test checks instead (:func:`einsum_magic.check.adjoint.check`,
    float64) and the report's ``fallback`` and summary say why, in one line.

    Parameters
    ----------
    d:
        A derivation (:func:`einsum_magic.derive`). It is bound to the operands' shapes
        first; a derivation whose shapes are the operands' is checked as it is, so an
        edited one (``dataclasses.replace``) is checked with its edits.
    operands:
        The arrays, one per operand position (NumPy, JAX, CPU PyTorch, nested lists).
        Integers and booleans are cast to ``dtype``; complex arrays make a real ``dtype``
        complex. None given: seeded random arrays with ``d.shapes``.
    seed:
        Seed of the random operands and of the random cotangent.
    dtype:
        float32 (default), float64, complex64, complex128, float16 or bfloat16.
    cotangent:
        The output's cotangent; default a seeded standard-normal array (never all ones:
        ones hide transposed gradients).
    max_elements:
        Element budget per array (default :data:`MAX_ELEMENTS`): arrays over it are
        replaced by seeded random arrays with clamped sizes, and ``notes`` says so.
    fallback:
        Whether NumPy's adjoint test stands in for an unavailable JAX (default); if
        not, JAX's absence or failure raises.

    Raises
    ------
    JaxNotInstalled
        Without JAX and with ``fallback=False``, with the install commands.
    EinsumError
        For bad operands, shapes, cotangent or options.
    """
    options = dict(seed=seed, cotangent=cotangent, max_elements=max_elements)
    try:
        jax, jnp = _import_jax()
    except Exception as e:       # not installed, or a broken install raising anything
        if not fallback:
            raise
        _fallback_dtype(dtype)
        return _adjoint(d, operands, options, *_why_not(e, "import raised"))
    if not isinstance(d, Derivation):
        raise EinsumError(f"check() takes a Derivation (from derive()), not {type(d).__name__}")
    dt = _resolve_dtype(jnp, dtype)
    if seed is not None:
        seed = _integer(seed, 0, "seed must be a non-negative integer or None")
    budget = _integer(MAX_ELEMENTS if max_elements is None else max_elements, 1,
                      "max_elements must be a positive integer")
    d, inputs = _prepare(d, operands, seed, dt, cotangent, budget)
    dtype = inputs.dtype
    x64 = dtype in ("float64", "complex128")
    try:
        with (jax.enable_x64(True) if x64 else contextlib.nullcontext()), \
                jax.default_matmul_precision(PRECISION):
            return _run(jax, jnp, d, inputs, _flag(jax))
    except EinsumError:
        raise
    except Exception as e:       # e.g. jax_disable_jit, a device that fails: JAX, not the maths
        if not fallback:
            raise
        return _adjoint(d, operands, options, *_why_not(e, "run time"))


def _adjoint(d, operands, options, why: str, detail: str) -> CheckReport:
    from .adjoint import check as adjoint_check

    return dataclasses.replace(adjoint_check(d, *operands, fallback=why, **options),
                               fallback_detail=detail)


def _why_not(error: BaseException, when: str) -> tuple[str, str]:
    """Why JAX is not used: a fixed phrase with the exception's class, and JAX's own message.

    Not installed, the phrase says how to install it (:data:`INSTALL`, the same everywhere).

    The phrase goes into the summary (``text/plain``, which nbval compares), so it holds
    nothing that varies by machine; the message (versions, paths, devices) goes to the
    live check details only.

    >>> _why_not(JaxNotInstalled(), "import raised")[0].startswith("JAX not available: not installed (")
    True
    >>> _why_not(RuntimeError("jaxlib 0.4.1 at /opt/x"), "import raised")
    ('JAX not available: import raised RuntimeError', 'RuntimeError: jaxlib 0.4.1 at /opt/x')
    >>> _why_not(ValueError("no device"), "run time")[0]
    'JAX failed at run time: ValueError'
    """
    if isinstance(error, JaxNotInstalled):
        return f"JAX not available: not installed ({INSTALL})", str(error).strip()
    name = type(error).__name__
    detail = f"{name}: {str(error).strip()}" if str(error).strip() else name
    if when == "run time":
        return f"JAX failed at run time: {name}", detail
    return f"JAX not available: {when} {name}", detail


def _fallback_dtype(dtype) -> None:
    """The dtype check of :func:`_resolve_dtype` without JAX (the adjoint test runs in float64)."""
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = dtype if isinstance(dtype, str) else None
    if name not in TOLERANCES:
        raise EinsumError(f"dtype {dtype!r} cannot be checked: use one of {', '.join(TOLERANCES)}")


# -- inputs (NumPy only) -----------------------------------------------------------------

@dataclass(frozen=True)
class _Inputs:
    operands: tuple        # NumPy arrays of ``dtype``, one per position (the same object for a name)
    cotangent: np.ndarray
    dtype: str
    user_arrays: bool
    notes: tuple[str, ...]
    stand_ins: str = ""
    scaled: bool = False


def _integer(value, least: int, message: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < least:
        raise EinsumError(f"{message}, not {value!r}")
    return int(value)


def _resolve_dtype(jnp, dtype) -> str:
    try:
        name = jnp.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in TOLERANCES:
        raise EinsumError(f"dtype {dtype!r} cannot be checked: use one of {', '.join(TOLERANCES)}")
    return name


def _prepare(d: Derivation, operands, seed, dtype: str, cotangent, budget: int):
    """The derivation bound to the arrays, and the arrays of the check (NumPy, ``dtype``)."""
    notes = []
    arrays = None
    stand_ins = ""
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
                made[name] = _random(op_rng, tuple(sizes[c] for c in subs), dtype)
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
        cot = _random(cot_rng, out_shape, dtype)
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
    return d, _Inputs(ops, cot, dtype, user, tuple(notes), stand_ins,
                      (user and bool(factors)) or bool(cot_scale))


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


def _random(rng, shape, dtype: str) -> np.ndarray:
    real = np.float64 if dtype in ("float64", "complex128") else np.float32
    x = rng.standard_normal(shape, dtype=real)
    if dtype.startswith("complex"):
        x = x + 1j * rng.standard_normal(shape, dtype=real)
    return np.asarray(x).astype(dtype)


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


# -- JAX ---------------------------------------------------------------------------------

#: JAX's warnings while it started (a CUDA-less jaxlib on a GPU machine, an experimental
#: platform): kept for the report's live view instead of printed to stderr, where they
#: would make a notebook's stored outputs differ from machine to machine.
_STARTUP_WARNINGS: tuple[str, ...] = ()


#: Environment variables by which a user configures JAX's GPU memory: any one set, the
#: check leaves preallocation as the user has it.
_MEMORY_SETTINGS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                    "XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def _import_jax():
    """``(jax, jax.numpy)``, imported and started on first use without disturbing the session.

    - NumPy's global random state is saved before and restored after (importing JAX
      draws from it), so that the user's ``np.random`` draws are the same with or
      without a check in between;
    - unless the user configured JAX's GPU memory (:data:`_MEMORY_SETTINGS`), JAX starts
      with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``, so that a check does not reserve 75 %
      of a GPU that another framework (PyTorch) is using; the variable is removed again
      once the backend has started (it is read then), leaving ``os.environ`` as it was.

    A JAX the user imported is used as it is.
    """
    global _STARTUP_WARNINGS
    if "jax" in sys.modules and sys.modules["jax"] is not None:
        import jax
        import jax.numpy as jnp

        return jax, jnp
    state = np.random.get_state()
    preallocation = not any(name in os.environ for name in _MEMORY_SETTINGS)
    if preallocation:
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    try:
        (jax, jnp), _STARTUP_WARNINGS = _quietly(_start_jax)
    except ImportError:
        if jax_available():      # installed but broken: say what it raised
            raise
        raise JaxNotInstalled() from None
    finally:
        if preallocation:
            os.environ.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
        np.random.set_state(state)
    return jax, jnp


def _start_jax():
    import jax
    import jax.numpy as jnp

    jax.devices()            # starts the default backend, which is when JAX warns
    return jax, jnp


def _quietly(start):
    """``(start(), warnings)``: JAX's logged and warned messages caught, not printed."""
    caught_logs: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            caught_logs.append(record.getMessage())

    logger = logging.getLogger("jax")
    handler, propagate = Keep(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = start()
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    return result, tuple(caught_logs + [str(w.message) for w in caught])


def _flag(jax) -> bool:
    return bool(jax.config.jax_enable_x64)


def _run(jax, jnp, d: Derivation, inputs: _Inputs, x64: bool) -> CheckReport:
    dtype = inputs.dtype
    placed = {}      # an array passed twice is put on the device once
    ops = tuple(placed.setdefault(id(a), jax.device_put(a)) for a in inputs.operands)
    cot = jax.device_put(inputs.cotangent)
    device = next(iter(cot.devices()))
    t0 = time.perf_counter()
    shapes = (cot.shape,) + tuple(x.shape for x in ops)
    specs = [_spec(g, ops) for g in d.grads]
    problems = [_problem(spec, shapes, dtype, x64) for spec in specs]
    runnable = tuple(s for s, p in zip(specs, problems) if p is None)
    vjp_fn = _compiled("vjp", d.equation, shapes, dtype, device, x64)
    derived_fn = _compiled("derived", runnable, shapes, dtype, device, x64) if runnable else None
    compile_ms = (time.perf_counter() - t0) * 1e3
    want, vjp_ms = _timed(jax, vjp_fn, cot, ops)
    got, derived_ms = _timed(jax, derived_fn, cot, ops) if derived_fn else ((), 0.0)
    got = iter(got)
    cot_np, ops_np = inputs.cotangent, inputs.operands
    rtol, atol = TOLERANCES[dtype]
    grads = tuple(
        _compare(g, spec, problem, None if problem else np.asarray(next(got)), np.asarray(w),
                 cot_np, ops_np, rtol, atol)
        for g, spec, problem, w in zip(d.grads, specs, problems, want))
    return CheckReport(
        passed=bool(grads) and all(g.passed for g in grads), grads=grads,
        device="cpu" if device.platform == "cpu" else device.device_kind,
        backend=jax.default_backend(), dtype=dtype, precision=PRECISION,
        user_arrays=inputs.user_arrays, notes=inputs.notes, platform=_STARTUP_WARNINGS,
        stand_ins=inputs.stand_ins, scaled=inputs.scaled,
        timings={"derived_ms": derived_ms, "jax_vjp_ms": vjp_ms, "compile_ms": compile_ms})


def _spec(g: Grad, ops) -> tuple:
    """What the derived einsum of ``g`` needs: (equation, position, ((aux kind, size), ...))."""
    shape = ops[g.position].shape
    return g.equation, g.position, tuple((a.kind, shape[a.axis]) for a in g.aux)


def _einsum_of(jnp, spec, dtype, cot, ops):
    equation, position, aux = spec
    others = [x for m, x in enumerate(ops) if m != position]
    extra = [jnp.eye(n, dtype=dtype) if kind == "eye" else jnp.ones(n, dtype=dtype)
             for kind, n in aux]
    return jnp.einsum(equation, cot, *others, *extra)


@functools.lru_cache(maxsize=1024)
def _problem(spec, shapes, dtype: str, x64: bool) -> str | None:
    """Why the derived einsum cannot give a gradient of its operand's shape, or None."""
    jax, jnp = _import_jax()
    avals = [jax.ShapeDtypeStruct(s, dtype) for s in shapes]
    try:
        out = jax.eval_shape(lambda cot, *ops: _einsum_of(jnp, spec, dtype, cot, ops), *avals)
    except Exception as e:      # a broken derivation may fail in any way: report, don't raise
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"the derived einsum {spec[0]!r} does not run on these operands: {reason}"
    want = shapes[1 + spec[1]]
    if tuple(out.shape) != tuple(want):
        return f"shape {tuple(out.shape)} != {tuple(want)}"
    return None


@functools.lru_cache(maxsize=256)
def _compiled(kind: str, what, shapes, dtype: str, device, x64: bool):
    """The compiled function of the check, once per (what, shapes, dtype, device, x64 flag).

    ``kind`` 'vjp': ``what`` is the forward equation, the function returns ``jax.vjp``'s
    gradients; 'derived': ``what`` holds the specs of the derived einsums to evaluate.
    """
    jax, jnp = _import_jax()
    if kind == "vjp":
        def fn(cot, *ops):
            _, pullback = jax.vjp(lambda *xs: jnp.einsum(what, *xs), *ops)
            return pullback(cot)
    else:
        def fn(cot, *ops):
            return tuple(_einsum_of(jnp, spec, dtype, cot, ops) for spec in what)
    avals = [jax.ShapeDtypeStruct(s, dtype) for s in shapes]
    return jax.jit(fn).lower(*avals).compile()


def _timed(jax, fn, cot, ops):
    """``fn(cot, *ops)`` on the device, and its best warm time in ms (block_until_ready)."""
    best = math.inf
    out = None
    for _ in range(_TIMING_RUNS):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(cot, *ops))
        best = min(best, time.perf_counter() - t0)
    return out, best * 1e3


# -- comparison (NumPy, float64) ---------------------------------------------------------

def _compare(g: Grad, spec, problem, got, want, cot, ops, rtol, atol) -> GradCheck:
    """Element by element: ``|got - want| <= atol + rtol * scale`` at every element.

    ``scale`` is the derived einsum on the operands' absolute values: at each element,
    the magnitude of the terms that entered it, which bounds their rounding error. An
    outlier in one operand raises the scale of the elements it entered, not of all.
    """
    def result(passed, abs_err, rel_err, ref_err, message):
        return GradCheck(g.target, g.wrt, g.equation, passed, abs_err, rel_err, ref_err,
                         rtol, atol, message)

    if problem is not None:
        return result(False, math.nan, math.nan, math.nan, problem)
    wide = np.complex128 if np.iscomplexobj(want) else np.float64
    got, want = got.astype(wide), want.astype(wide)
    try:
        ref = _numpy_einsum(spec, cot, ops, wide, abs_values=False)
        scale = _numpy_einsum(spec, cot, ops, wide, abs_values=True)
    except ValueError as e:
        return result(False, math.nan, math.nan, math.nan,
                      f"NumPy cannot evaluate the derived einsum: {str(e).splitlines()[0]}")
    vjp, versus_ref = _errors(got, want, scale, atol), _errors(got, ref, scale, atol)
    abs_err, rel_err, worst = vjp
    ref_err, ref_rel, ref_worst = versus_ref
    ok_vjp, ok_ref = rel_err <= rtol, ref_rel <= rtol
    if ok_vjp and ok_ref:
        return result(True, abs_err, rel_err, ref_err, "")
    if not np.all(np.isfinite(got)) or not np.all(np.isfinite(want)):
        message = ("the results hold inf or NaN: the values overflow the check's dtype (not a "
                   "fault of the derivation); check in float64 (--dtype float64)")
    elif not ok_vjp:
        message = (f"values differ from jax.vjp: at {_where(worst)} the error is {rel_err:.3g} of "
                   f"the magnitude {_at(scale, worst):.3g} of the terms that entered it > rtol "
                   f"{rtol:g} (max abs error {abs_err:.3g})")
    else:
        message = (f"values differ from the float64 reference: at {_where(ref_worst)} the error is "
                   f"{ref_rel:.3g} of the magnitude {_at(scale, ref_worst):.3g} of the terms that "
                   f"entered it > rtol {rtol:g}: a precision problem on the device")
    return result(False, abs_err, rel_err, ref_err, message)


def _errors(a: np.ndarray, b: np.ndarray, scale: np.ndarray, atol: float):
    """(max abs error, max error relative to each element's scale, where it is largest).

    The relative error of an element is ``max(0, |a - b| - atol) / scale``: inf where
    the scale is 0 but the values differ, or where either value is not finite.

    >>> _errors(np.array([1.0, 2.0]), np.array([1.0, 2.5]), np.array([1.0, 10.0]), 0.0)
    (0.5, 0.05, (1,))
    """
    if a.shape != b.shape:
        return math.nan, math.inf, ()
    if not a.size:
        return 0.0, 0.0, ()
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
    finite = np.isfinite(diff)
    if not finite.all():      # inf or NaN on either side (or an overflow): never within tolerance
        diff = np.where(finite, diff, 0.0)
        rel = np.where(finite, 0.0, math.inf)
    else:
        excess = np.maximum(diff - atol, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(excess > 0, excess / scale, 0.0)     # scale 0, excess > 0: inf
    k = int(np.argmax(rel))
    where = tuple(int(i) for i in np.unravel_index(k, rel.shape))
    return float(np.max(diff)), float(rel.flat[k]), where


def _at(x: np.ndarray, index: tuple) -> float:
    return float(x[index]) if len(index) == x.ndim else math.nan


def _where(index: tuple) -> str:
    """``(1, 0)`` → ``'[1, 0]'``; ``()`` → ``'the scalar'``."""
    return f"[{', '.join(map(str, index))}]" if index else "the scalar"


def _numpy_einsum(spec, cot, ops, wide, abs_values: bool) -> np.ndarray:
    """The derived einsum in NumPy at ``wide`` precision (on absolute values: its scale)."""
    equation, position, aux = spec
    args = [cot] + [x for m, x in enumerate(ops) if m != position]
    args = [np.abs(x).astype(np.float64) if abs_values else np.asarray(x).astype(wide) for x in args]
    args += [np.eye(n) if kind == "eye" else np.ones(n) for kind, n in aux]
    return np.einsum(equation, *args, optimize=True)
