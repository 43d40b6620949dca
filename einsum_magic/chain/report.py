"""The cell check's rows and report: a cell's gradients in the one :class:`CheckReport`.

This module owns the arrow *(the derived gradients, the reference's) → the cell's
:class:`~einsum_magic.check.records.CheckReport`*: one row
(:class:`~einsum_magic.check.records.GradCheck`) per gradient compared with the reference
(:func:`compared`), one per input or named value that is not derived (:func:`not_derived`),
and the verdict of :func:`einsum_magic.check.records.verdict` (PASS, FAIL, PARTIAL where an
opaque step cuts a path, UNCHECKED where nothing ran) in :func:`cell_report`. The replays of
a record (:mod:`~einsum_magic.chain.check` for torch, :mod:`~einsum_magic.chain.replay_numpy`
for NumPy through ``jax.numpy`` or NumPy's adjoint test) write it; the views read it as they
read an einsum's.

:func:`CellCheck`, :func:`GradientRow` and :func:`verdict` are the earlier spellings of the
same records (a report, a row, the rows and verdict of a comparison); they build the one type.

>>> r = CellCheck("PASS", (GradientRow("W", "dL_dW", (2,), 0.0, 1.0, "pass"),))
>>> r.summary, type(r).__name__
('cell check: PASS, 1/1 gradient matches torch autograd of the replayed run (float64)', 'CheckReport')
>>> CellCheck("UNCHECKED", (), "JAX failed", framework="jax").summary
'cell check: not run: JAX failed'
"""

from __future__ import annotations

import math

import numpy as np

from ..check.records import CheckReport, GradCheck
from ..check.records import verdict as verdict_of

__all__ = ["CellCheck", "GradientRow", "cell_report", "compared", "not_derived", "close",
           "verdict", "replayed", "bind_results", "RTOL", "FLOOR", "CHECK_ELEMENTS", "FIDELITY"]

#: Tolerance of the float64 comparison, relative to the reference's largest magnitude.
RTOL = 1e-8

#: Absolute floor of every comparison, relative to the cell's largest reference gradient.
FLOOR = 1e-12

#: The check's budget: elements of every value the replay recomputes, all together.
CHECK_ELEMENTS = 4_000_000

#: Fidelity tolerance per dtype of the run (relative to the value's largest magnitude).
FIDELITY = {"float64": 1e-9, "complex128": 1e-9, "float32": 1e-3, "complex64": 1e-3}

#: The reference of each framework's earlier spelling (``framework=`` of :func:`CellCheck`).
_REFERENCE = {"torch": "torch autograd", "jax": "jax autograd", "numpy": "adjoint"}


def replayed(rec, sinks) -> tuple[list[int], list[int]]:
    """What a replay of the record recomputes: the indices of the nodes ``sinks`` depend on,
    in the run's order, and the elements each node's results hold (against
    :data:`CHECK_ELEMENTS`)."""
    want = set(sinks)
    needed = []
    for n in reversed(rec.nodes):
        if any(o in want for o in n.outs):
            needed.append(n.index)
            want.update(n.refs)
    needed.reverse()
    return needed, [sum(int(np.prod(rec.info[o].shape)) for o in rec.nodes[n].outs)
                    for n in needed]


def bind_results(node, outs: list, env: dict, *, gate=None, bumps=None) -> str:
    """Bind a replayed node's results ``outs`` in ``env`` (id → value), each plus its bump
    (``bumps``: id → a value added, where a reference differentiates an intermediate);
    ``gate(id, value)`` says why a result differs from the run's (``''``: it does not).
    Returns why the replay stops here, or ``''``. Every framework's replay binds so."""
    if len(outs) != len(node.outs):
        return (f"the replay of `{node.op}` ({node.at()}) gave {len(outs)} results, "
                f"the run {len(node.outs)}")
    for o, t in zip(node.outs, outs):
        if gate is not None:
            bad = gate(o, t)
            if bad:
                return f"the replay could not reproduce `{node.op}` ({node.at()}): {bad}"
        if bumps and o in bumps:
            t = t + bumps[o]
        env[o] = t
    return ""


def cell_report(rows, reference: str, *, seed: int = 0, cut: str = "", status: str = "",
                reason: str = "", fallback: str = "", notes=()) -> CheckReport:
    """The report of a cell's check: ``rows`` judged by :func:`~einsum_magic.check.records.verdict`
    (``cut``: what an opaque step cuts off, the reason of a PARTIAL), or ``status`` as given
    (UNCHECKED with its ``reason``). ``reference``: a key of
    :data:`~einsum_magic.check.records.REFERENCES`; ``fallback``: why JAX was not used.
    """
    rows = tuple(rows)
    status = status or verdict_of(rows, cut)
    if status == "UNCHECKED" and not reason:
        status = "PASS"                 # nothing to compare and nothing cut: nothing wrong
    backend = {"adjoint": "numpy", "torch autograd": "torch"}.get(reference, "jax")
    return CheckReport(status == "PASS", rows, "cpu", backend, "float64", "float64", True,
                       tuple(notes), {}, fallback=fallback, status=status,
                       reason=reason or cut, seed=seed,
                       subject="cell check", reference=reference)


def CellCheck(status: str, rows=(), reason: str = "", seed: int = 0,
              framework: str = "torch") -> CheckReport:
    """A cell's report with ``status`` given (the earlier spelling of :func:`cell_report`)."""
    return cell_report(rows, _REFERENCE.get(framework, framework), seed=seed, status=status,
                       reason=reason)


def GradientRow(name: str, gradient: str, shape: tuple, max_abs_error: float, scale: float,
                status: str, against: str = "autograd", crosses: str = "", *,
                rtol: float = RTOL, atol: float = 0.0, message: str = "") -> GradCheck:
    """One row of a cell's check: the gradient ``gradient`` of the value ``name``.

    ``status``: ``pass``, ``fail`` or ``not derived`` (with ``crosses``, the step it crosses).
    """
    passed = status == "pass"
    rel = 0.0 if max_abs_error == 0 else (max_abs_error / scale if scale else math.inf)
    if status == "not derived" and not crosses:
        crosses = "an opaque step"
    return GradCheck(gradient, name, "", passed, max_abs_error, rel, math.nan, rtol, atol,
                     message, shape=tuple(shape), scale=scale, against=against,
                     crosses=crosses if status == "not derived" else "")


def close(got, want, rtol, atol=0.0) -> tuple[float, float, bool]:
    """``(max|got - want|, max|want|, whether the first is within rtol * the second + atol)``.

    >>> close([1.0, 2.0], np.array([1.0, 2.5]), 1e-8)
    (0.5, 2.5, False)
    """
    got = np.asarray(got, dtype=np.float64) if not np.iscomplexobj(got) else np.asarray(got)
    want = np.asarray(want)
    if got.shape != want.shape:
        return float("inf"), 0.0, False
    if want.size == 0:
        return 0.0, 0.0, True
    err = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(want)))
    ok = bool(np.all(np.isfinite(got))) and err <= rtol * scale + atol
    return err, scale, ok


def floor_of(want: dict) -> float:
    """The absolute floor of a cell's comparisons: :data:`FLOOR` times its largest gradient.

    A gradient that is zero in exact arithmetic (``b1`` under batch norm) is rounding noise:
    it is measured against the largest gradient of the cell, not against its own zero.
    """
    return FLOOR * max([float(np.max(np.abs(w))) for w in want.values() if np.size(w)] or [0])


def compared(backward, got, want, ids, floor: float) -> list[GradCheck]:
    """One row per value id in ``ids``: the derived gradient ``got[v]`` against the
    reference's ``want[v]``, within :data:`RTOL` of its largest magnitude (plus ``floor``)."""
    prog, rec, names = backward.program, backward.recording, backward.names
    rows = []
    for v in ids:
        err, scale, ok = close(got[v], want[v], RTOL, floor)
        message = "" if ok else (f"differs from the reference by {err:.3g} > rtol {RTOL:g} "
                                 f"of its largest magnitude {scale:.3g}")
        rows.append(GradientRow(names.name[v], prog.grad_names[v], rec.info[v].shape, err,
                                scale, "pass" if ok else "fail", atol=floor, message=message))
    return rows


def not_derived(backward) -> tuple[list[GradCheck], str]:
    """``(rows, cut)``: one row per input or named value whose gradient is not derived (the
    opaque step it crosses), and what the opaque steps cut, in words (``''``: nothing)."""
    prog, rec, names = backward.program, backward.recording, backward.names
    rows = [GradientRow(names.name[v], prog.grad_names[v], rec.info[v].shape, 0.0, 0.0,
                        "not derived", crosses="; ".join(o.words() for o in cut))
            for v, cut in prog.not_derived.items() if v in prog.inputs or v in names.user]
    cut = ("not derived across " + "; ".join(o.words() for o in prog.opaque)
           if prog.opaque else "")
    return rows, cut


def verdict(backward, got, want, ids, seed: int = 0, *, framework: str = "torch",
            own=None) -> CheckReport:
    """The check of ``backward`` (a :class:`~einsum_magic.chain.result.CellBackward`) against
    a reference's gradients: :func:`compared` rows, ``own(floor)``'s rows (the cell's own
    ``.grad``), :func:`not_derived` rows, and the verdict (:func:`cell_report`)."""
    floor = floor_of(want)
    rows = compared(backward, got, want, ids, floor)
    if own is not None:
        rows += own(floor / RTOL)
    cut_rows, cut = not_derived(backward)
    return cell_report(rows + cut_rows, _REFERENCE.get(framework, framework), seed=seed,
                       cut=cut)
