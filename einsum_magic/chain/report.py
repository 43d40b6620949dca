"""The cell check's report: one row per gradient, the verdict, and the tolerances it uses.

Both replays of a record (:mod:`~einsum_magic.chain.check` for torch,
:mod:`~einsum_magic.chain.replay_numpy` for NumPy through ``jax.numpy``) write these records;
the views read them. PASS, FAIL, PARTIAL (a gradient crosses an opaque step) or UNCHECKED.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CellCheck", "GradientRow", "close", "verdict", "RTOL", "FLOOR", "CHECK_ELEMENTS", "FIDELITY"]

#: Tolerance of the float64 comparison, relative to the reference's largest magnitude.
RTOL = 1e-8

#: Absolute floor of every comparison, relative to the cell's largest reference gradient.
FLOOR = 1e-12

#: The check's budget: elements of every value the replay recomputes, all together.
CHECK_ELEMENTS = 4_000_000

#: Fidelity tolerance per dtype of the run (relative to the value's largest magnitude).
FIDELITY = {"float64": 1e-9, "complex128": 1e-9, "float32": 1e-3, "complex64": 1e-3}


@dataclass(frozen=True)
class GradientRow:
    """One gradient: its name, shape, largest error, scale, and verdict.

    ``against``: ``"autograd"`` (the replay's reference) or ``".grad"`` (what the cell's
    own ``backward()`` left); ``status``: ``pass``, ``fail`` or ``not derived``.
    """

    name: str
    gradient: str
    shape: tuple
    max_abs_error: float
    scale: float
    status: str
    against: str = "autograd"
    crosses: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class CellCheck:
    """The verdict on a cell's backward: PASS, FAIL, PARTIAL or UNCHECKED, with its rows."""

    status: str
    rows: tuple[GradientRow, ...]
    reason: str = ""
    seed: int = 0
    framework: str = "torch"

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    @property
    def failed(self) -> bool:
        """Whether a derived gradient disagrees (the magic fails the cell; PARTIAL does not)."""
        return self.status == "FAIL"

    @property
    def gradients(self) -> tuple[GradientRow, ...]:
        return self.rows

    @property
    def summary(self) -> str:
        """One deterministic line.

        >>> CellCheck("PASS", (GradientRow("W", "dL_dW", (2,), 0.0, 1.0, "pass"),)).summary
        'cell check: PASS, 1/1 gradient matches torch autograd of the replayed run (float64)'
        """
        if self.status == "UNCHECKED":
            return f"cell check: not run: {self.reason}"
        ref = [r for r in self.rows if r.against == "autograd" and r.status != "not derived"]
        ok = sum(r.passed for r in ref)
        n = len(ref)
        counted = (f"{ok}/{n} gradient{'s' if n != 1 else ''} match{'es' if n == 1 else ''} "
                   f"{self.framework} autograd of the replayed run (float64)")
        own = [r for r in self.rows if r.against == ".grad"]
        if own:
            counted += f"; {sum(r.passed for r in own)}/{len(own)} match the cell's own .grad"
        wrong = [r.name for r in self.rows if r.status == "fail"]
        parts = [f"cell check: {self.status}"]
        if self.status == "PARTIAL":
            parts.append(self.reason)
        parts.append(counted)
        text = ", ".join(parts[:2]) + ("; " if self.status == "PARTIAL" else ", ") + parts[-1] \
            if len(parts) == 3 else ", ".join(parts)
        if wrong:
            text += f"; wrong: {', '.join(dict.fromkeys(wrong))}"
        return text


def close(got, want, rtol, atol=0.0) -> tuple[float, float, bool]:
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


def verdict(backward, got, want, ids, seed: int = 0, *, framework: str = "torch",
            own=None) -> CellCheck:
    """The check of ``backward`` (a :class:`~einsum_magic.chain.result.CellBackward`): one row
    per value id in ``ids`` comparing the derived gradient ``got[v]`` with the reference
    ``want[v]``, ``own(floor)``'s rows (the cell's own ``.grad``), one row per input or named
    value that is not derived, and the verdict: FAIL if a row fails, else PARTIAL where an
    opaque step cuts a path, else PASS.

    A gradient that is zero in exact arithmetic (``b1`` under batch norm) is rounding noise:
    it is measured against the largest gradient of the cell, not against its own zero.
    """
    prog, rec, names = backward.program, backward.recording, backward.names
    floor = FLOOR * max([float(np.max(np.abs(w))) for w in want.values() if np.size(w)] or [0])
    rows = []
    for v in ids:
        err, scale, ok = close(got[v], want[v], RTOL, floor)
        rows.append(GradientRow(names.name[v], prog.grad_names[v], rec.info[v].shape, err,
                                scale, "pass" if ok else "fail"))
    if own is not None:
        rows += own(floor / RTOL)
    for v, cut in prog.not_derived.items():
        if v in prog.inputs or v in names.user:
            rows.append(GradientRow(names.name[v], prog.grad_names[v], rec.info[v].shape,
                                    0.0, 0.0, "not derived",
                                    crosses="; ".join(o.words() for o in cut)))
    status = "FAIL" if any(r.status == "fail" for r in rows) else (
        "PARTIAL" if prog.opaque else "PASS")
    reason = ("not derived across " + "; ".join(o.words() for o in prog.opaque)
              if prog.opaque else "")
    return CellCheck(status, tuple(rows), reason, seed, framework=framework)
