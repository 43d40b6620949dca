"""Which check runs and how it judges: JAX's autodiff, or NumPy's adjoint test where JAX fails.

This module owns which reference checks what (:func:`plan`, one table for an einsum and for
a cell's record: ``jax.vjp``, torch autograd, NumPy's adjoint test where JAX is unavailable,
unchecked over the budget) and the arrow ``Derivation → CheckReport``: :func:`check` prepares the arrays
(:mod:`.inputs`), runs ``jax.vjp`` and the derived einsums on JAX's default device (:mod:`.jax`),
and judges every gradient with :func:`compare`. Where JAX is not installed, fails to import or
fails running the check (a jaxlib mismatch, ``jax_disable_jit``), NumPy's exact adjoint test
(:mod:`.adjoint`) checks instead (:func:`with_fallback`), and the report says why in one fixed
phrase (:func:`why_not`).

A gradient passes when its error against ``jax.vjp`` and against a NumPy float64 (complex128)
reference of the derived einsum is within the dtype's tolerance
(:data:`~einsum_magic.check.records.TOLERANCES`) *element by element*. Each element's error is
measured relative to its own *scale*: the same einsum evaluated on the absolute values of its
operands, the magnitude of the terms that entered that element, which bounds every rounding
error of its sum (``|Σ xy| ≤ Σ |x||y|``). So float32 passes on long contractions and on arrays
whose terms cancel, while a transposed or otherwise wrong gradient, off by the order of the
values themselves, fails; an outlier in one operand raises the scale of the elements it entered
and of no other.

:func:`compare` and :func:`with_fallback` are the policy any check reuses: a caller with its own
reference (another framework's autodiff of a cell, say) judges each gradient with
:func:`compare` and falls back as einsums do with :func:`with_fallback`.

>>> from einsum_magic import derive
>>> report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
>>> report.summary
'check: PASS, 2/2 gradients match jax.vjp (float32)'
>>> [(g.target, g.passed) for g in report.grads]
[('dL_dA', True), ('dL_dB', True)]
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.derivation import Derivation
from ..core.evaluate import evaluate
from ..errors import EinsumError
from . import adjoint
from . import jax as on_jax
from .inputs import MAX_ELEMENTS, check_dtype, integer, prepare, resolve_dtype
from .records import TOLERANCES, CheckReport, GradCheck

__all__ = ["check", "compare", "with_fallback", "why_not", "plan", "Plan", "PLANS"]

#: What checks what: ``subject -> (reference, what stands in where it cannot run)``. An
#: einsum, and a cell recorded from NumPy, are checked by JAX's autodiff, and by NumPy's
#: adjoint test where JAX is not installed, fails to import or fails at run time; a cell
#: recorded from torch by torch's autograd of the replay (torch is there: the cell ran it),
#: one recorded from JAX (NumPy arrays beside it too) by JAX's (JAX is there too). A cell of
#: torch with another framework is not checked yet.
PLANS = {
    "einsum": ("jax.vjp", "adjoint"),
    "numpy": ("jax autograd", "adjoint"),
    "torch": ("torch autograd", ""),
    "jax": ("jax autograd", ""),
}

#: Records of several frameworks that one plan checks.
_MIXED = {frozenset({"numpy", "jax"}): "jax"}


@dataclass(frozen=True)
class Plan:
    """Which check runs: ``reference`` (a key of :data:`~einsum_magic.check.records.REFERENCES`,
    ``''``: none, UNCHECKED because of ``reason``) and ``fallback`` (``'adjoint'`` or ``''``)."""

    reference: str
    fallback: str = ""
    reason: str = ""


def plan(frameworks, size: int = 0, budget: int | None = None) -> Plan:
    """The check of a subject: ``"einsum"`` or the frameworks a cell's record holds.

    ``size`` is what the reference would recompute (elements, all together); over
    ``budget`` nothing runs (a cell; an einsum over the budget is checked on stand-ins,
    :mod:`.inputs`).

    >>> plan("einsum")
    Plan(reference='jax.vjp', fallback='adjoint', reason='')
    >>> plan({"numpy"}).fallback, plan({"torch"}).reference
    ('adjoint', 'torch autograd')
    >>> plan({"torch"}, size=10, budget=5).reason
    "the replay would recompute 10 elements, over the check's budget of 5"
    >>> plan({"jax", "numpy"}).reference
    'jax autograd'
    >>> plan({"torch", "numpy"}).reason
    'the check replays torch, NumPy or JAX records (NumPy with JAX), not torch with another'
    """
    key = frameworks if isinstance(frameworks, str) else (
        next(iter(frameworks)) if len(frameworks) == 1 else _MIXED.get(frozenset(frameworks)))
    if key not in PLANS:
        return Plan("", reason="the check replays torch, NumPy or JAX records (NumPy with "
                    "JAX), not torch with another")
    if budget is not None and size > budget:
        return Plan("", reason=f"the replay would recompute {size} elements, over the check's "
                    f"budget of {budget}")
    return Plan(*PLANS[key])


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

    def with_jax(modules) -> CheckReport:
        return _on_jax(modules, d, operands, options, dtype)

    def numpy_test(why: str) -> CheckReport:
        check_dtype(dtype)
        return adjoint.check(d, *operands, fallback=why, **options)

    chosen = plan("einsum")            # jax.vjp; NumPy's adjoint test where JAX fails
    return with_fallback(on_jax.import_jax, with_jax, numpy_test,
                         enabled=fallback and chosen.fallback == "adjoint")


def _on_jax(modules, d, operands, options: dict, dtype) -> CheckReport:
    jax, jnp = modules
    if not isinstance(d, Derivation):
        raise EinsumError(f"check() takes a Derivation (from derive()), not {type(d).__name__}")
    dt = resolve_dtype(jnp, dtype)
    seed, max_elements = options["seed"], options["max_elements"]
    if seed is not None:
        seed = integer(seed, 0, "seed must be a non-negative integer or None")
    budget = integer(MAX_ELEMENTS if max_elements is None else max_elements, 1,
                     "max_elements must be a positive integer")
    d, inputs = prepare(d, operands, seed, dt, options["cotangent"], budget)
    ran = on_jax.run(jax, d, inputs)
    dtype = inputs.dtype
    cot, ops = inputs.cotangent, inputs.operands
    grads = tuple(_judge(g, problem, got, want, cot, ops, dtype)
                  for g, problem, got, want in zip(d.grads, ran.problems, ran.got, ran.want))
    return CheckReport(
        passed=bool(grads) and all(g.passed for g in grads), grads=grads, device=ran.device,
        backend=ran.backend, dtype=dtype, precision=on_jax.PRECISION,
        user_arrays=inputs.user_arrays, notes=inputs.notes, platform=ran.platform,
        stand_ins=inputs.stand_ins, scaled=inputs.scaled, timings=ran.timings, real=inputs.real)


def _judge(g, problem, got, want, cot, ops, dtype: str) -> GradCheck:
    """One gradient of the JAX check: the derived einsum on the device against ``jax.vjp``'s."""
    rtol, atol = TOLERANCES[dtype]
    if problem is not None:
        return GradCheck(g.target, g.wrt, g.equation, False, math.nan, math.nan, math.nan, rtol,
                         atol, problem)
    wide = np.complex128 if np.iscomplexobj(want) else np.float64
    try:
        reference = evaluate(g, cot, ops, dtype=wide)
        scale = evaluate(g, cot, ops, absolute=True)
    except ValueError as e:
        return GradCheck(g.target, g.wrt, g.equation, False, math.nan, math.nan, math.nan, rtol,
                         atol, f"NumPy cannot evaluate the derived einsum: {str(e).splitlines()[0]}")
    return compare(g.target, g.wrt, g.equation, got, want, scale, dtype, reference=reference)


def with_fallback(start: Callable, run: Callable, fallback: Callable[[str], CheckReport], *,
                  enabled: bool = True, framework: str = "JAX") -> CheckReport:
    """``run(start())``; where either raises (anything but :class:`EinsumError`), ``fallback(why)``.

    ``start`` imports the reference framework, ``run`` checks with it; ``why`` is the fixed
    phrase of :func:`why_not` (which names ``framework``), and the report ``fallback`` returns
    gets the exception's own message as its ``fallback_detail`` (live details only). With
    ``enabled=False`` the exception propagates.

    >>> def broken():
    ...     raise ImportError("no module named jax")
    >>> def numpy_test(why):
    ...     return CheckReport(True, (), "numpy", "numpy", "float64", "float64", False, (), {},
    ...                        fallback=why)
    >>> r = with_fallback(broken, None, numpy_test)
    >>> r.fallback, r.fallback_detail
    ('JAX not available: import raised ImportError', 'ImportError: no module named jax')
    """
    try:
        started = start()
    except Exception as e:       # not installed, or a broken install raising anything
        if not enabled:
            raise
        return _fall_back(fallback, e, "import raised", framework)
    try:
        return run(started)
    except EinsumError:
        raise
    except Exception as e:       # e.g. jax_disable_jit, a device that fails: JAX, not the maths
        if not enabled:
            raise
        return _fall_back(fallback, e, "run time", framework)


def _fall_back(fallback, error: BaseException, when: str, framework: str) -> CheckReport:
    why, detail = why_not(error, when, framework)
    return dataclasses.replace(fallback(why), fallback_detail=detail)


def why_not(error: BaseException, when: str, framework: str = "JAX") -> tuple[str, str]:
    """Why JAX is not used: a fixed phrase with the exception's class, and JAX's own message.

    Not installed, the phrase says how to install it (:data:`INSTALL`, the same everywhere).

    The phrase goes into the summary (``text/plain``, which nbval compares), so it holds
    nothing that varies by machine; the message (versions, paths, devices) goes to the
    live check details only.

    >>> why_not(on_jax.JaxNotInstalled(), "import raised")[0].startswith("JAX not available: not installed (")
    True
    >>> why_not(RuntimeError("jaxlib 0.4.1 at /opt/x"), "import raised")
    ('JAX not available: import raised RuntimeError', 'RuntimeError: jaxlib 0.4.1 at /opt/x')
    >>> why_not(ValueError("no device"), "run time")[0]
    'JAX failed at run time: ValueError'
    """
    if isinstance(error, on_jax.JaxNotInstalled):
        return f"JAX not available: not installed ({on_jax.INSTALL})", str(error).strip()
    name = type(error).__name__
    detail = f"{name}: {str(error).strip()}" if str(error).strip() else name
    if when == "run time":
        return f"{framework} failed at run time: {name}", detail
    return f"{framework} not available: {when} {name}", detail

def compare(target: str, wrt: str, equation: str, got, want, scale, dtype: str, *,
            reference=None, against: str = "jax.vjp") -> GradCheck:
    """Judge one gradient element by element: ``|got - want| <= atol + rtol * scale`` everywhere.

    ``want`` is the reference framework's gradient (``against`` names it in the message),
    ``reference`` (optional) a float64 evaluation of what ``got`` computes, ``scale`` the
    magnitude of the terms that entered each element (the derived einsum on absolute values:
    it bounds their rounding error), ``(rtol, atol)`` :data:`TOLERANCES` of ``dtype``. An
    outlier in one operand raises the scale of the elements it entered, not of all.

    >>> import numpy as np
    >>> g = compare("dL_dA", "A", "ik,jk->ij", np.array([1.0, 2.0]), np.array([1.0, 2.0]),
    ...             np.array([1.0, 2.0]), "float32")
    >>> g.passed, g.max_abs_error
    (True, 0.0)
    >>> compare("dL_dA", "A", "ik,jk->ji", np.array([1.0, 2.0]), np.array([2.0, 1.0]),
    ...         np.array([2.0, 2.0]), "float32").message
    'values differ from jax.vjp: at [0] the error is 0.5 of the magnitude 2 of the terms that entered it > rtol 0.0001 (max abs error 1)'
    """
    rtol, atol = TOLERANCES[dtype]
    want = np.asarray(want)
    wide = np.complex128 if np.iscomplexobj(want) or np.iscomplexobj(got) else np.float64
    got, want = np.asarray(got).astype(wide), want.astype(wide)
    ref = want if reference is None else np.asarray(reference).astype(wide)
    scale = np.asarray(scale)
    abs_err, rel_err, worst = _errors(got, want, scale, atol)
    ref_err, ref_rel, ref_worst = _errors(got, ref, scale, atol)
    ok_vjp, ok_ref = rel_err <= rtol, ref_rel <= rtol

    def result(passed, message):
        return GradCheck(target, wrt, equation, passed, abs_err, rel_err, ref_err, rtol, atol,
                         message)

    if ok_vjp and ok_ref:
        return result(True, "")
    if not np.all(np.isfinite(got)) or not np.all(np.isfinite(want)):
        message = ("the results hold inf or NaN: the values overflow the check's dtype (not a "
                   "fault of the derivation); check in float64 (--dtype float64)")
    elif not ok_vjp:
        message = (f"values differ from {against}: at {_where(worst)} the error is {rel_err:.3g} "
                   f"of the magnitude {_at(scale, worst):.3g} of the terms that entered it > rtol "
                   f"{rtol:g} (max abs error {abs_err:.3g})")
    else:
        message = (f"values differ from the float64 reference: at {_where(ref_worst)} the error is "
                   f"{ref_rel:.3g} of the magnitude {_at(scale, ref_worst):.3g} of the terms that "
                   f"entered it > rtol {rtol:g}: a precision problem on the device")
    return result(False, message)


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
