"""The check's records: one :class:`GradCheck` per gradient, one :class:`CheckReport` per check.

This module owns what a check found, whichever reference ran (JAX's autodiff, torch's
autograd of a cell's replay, NumPy's adjoint test) and for whatever was checked (one einsum's
operands, a cell's gradients): the rows, the one verdict (:func:`verdict`: PASS, FAIL,
PARTIAL or UNCHECKED) and its one deterministic summary line (:attr:`CheckReport.summary`,
what ``text/plain`` and nbval see). :data:`TOLERANCES` are the per-dtype tolerances of a
JAX check. It imports nothing of the check's machinery; :mod:`einsum_magic.check.policy`
and the cell backward's check (:mod:`einsum_magic.chain.check`) build these records.

>>> ok = dict(max_abs_error=0.0, max_rel_error=0.0, ref_abs_error=0.0, rtol=1e-4, atol=1e-30,
...           message="")
>>> r = CheckReport(True, (GradCheck("dL_dA", "A", "ik,jk->ij", True, **ok),), "cpu", "cpu",
...                 "float32", "highest", True, (), {})
>>> r.summary, r.status, r.reference
('check: PASS, 1/1 gradient matches jax.vjp (float32)', 'PASS', 'jax.vjp')

A cell's check is the same record, with the cell's words and a row per gradient that names
the value it belongs to and its shape; a gradient that crosses an opaque step is a row
"not derived", and the verdict PARTIAL, never PASS:

>>> rows = (GradCheck("dL_dW", "W", "", True, 0.0, 0.0, math.nan, 1e-8, 0.0, "", shape=(2,),
...                   scale=1.0, against="autograd"),
...         GradCheck("dL_dX", "X", "", False, 0.0, 0.0, math.nan, 1e-8, 0.0, "", shape=(2,),
...                   crosses="`torch.tanh`, line 2"))
>>> status = verdict(rows, cut="not derived across `torch.tanh`, line 2")
>>> r = CheckReport(status == "PASS", rows, "cpu", "torch", "float64", "float64", True, (), {},
...                 status=status, reason="not derived across `torch.tanh`, line 2",
...                 subject="cell check", reference="torch autograd")
>>> r.summary
'cell check: PARTIAL, not derived across `torch.tanh`, line 2; 1/1 gradient matches torch autograd of the replayed run (float64)'
>>> [row.status for row in r.rows]
['pass', 'not derived']
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CheckReport", "GradCheck", "TOLERANCES", "STATUSES", "REFERENCES", "verdict", "are"]

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

#: The verdict words, strongest first: a wrong gradient FAILs whatever else; a gradient
#: that crosses an opaque step (or a reference that covered only part) makes it PARTIAL;
#: UNCHECKED where no reference ran (over the budget, a replay that differs from the run).
STATUSES = ("FAIL", "PARTIAL", "PASS", "UNCHECKED")

#: What each reference is called in a summary: ``reference -> (verb, singular verb, words)``;
#: the words of a cell's reference say that it ran on the replay of the run.
REFERENCES = {
    "jax.vjp": ("match", "matches", "jax.vjp"),
    "torch autograd": ("match", "matches", "torch autograd"),
    "jax autograd": ("match", "matches", "jax autograd"),
    "adjoint": ("pass", "passes", "the adjoint test"),
}


def verdict(rows, cut: str = "") -> str:
    """The one verdict of a check's rows: FAIL if a row fails, else PARTIAL where a path is
    cut (``cut``, or a row "not derived") or a row was not checked, else PASS; UNCHECKED
    without any row.

    >>> row = dict(equation="", max_abs_error=0.0, max_rel_error=0.0, ref_abs_error=0.0,
    ...            rtol=1e-8, atol=0.0, message="")
    >>> ok, wrong = GradCheck("dL_dA", "A", passed=True, **row), GradCheck("dL_dB", "B", passed=False, **row)
    >>> verdict([ok]), verdict([ok, wrong], cut="tanh"), verdict([ok], cut="tanh"), verdict([])
    ('PASS', 'FAIL', 'PARTIAL', 'UNCHECKED')
    """
    rows = tuple(rows)
    if any(r.status == "fail" for r in rows):
        return "FAIL"
    if cut or any(r.status in ("not derived", "not checked") for r in rows):
        return "PARTIAL"
    return "PASS" if rows else "UNCHECKED"


@dataclass(frozen=True)
class GradCheck:
    """The check of one gradient: an einsum's operand position or a cell's value.

    ``shape``, ``scale``, ``against`` and ``crosses`` are a cell's: ``against`` is
    ``"autograd"``, ``"adjoint test"`` (the report's reference) or ``".grad"`` (what the
    cell's own ``backward()`` left); ``crosses`` the opaque step a gradient that is not
    derived crosses; ``skipped`` why the reference could not judge a derived gradient.
    :attr:`status` is ``pass``, ``fail``, ``not derived`` or ``not checked``.
    """

    target: str            # 'dL_dA'
    wrt: str               # 'A'
    equation: str          # the derived einsum that was checked ('' for a cell's gradient)
    passed: bool
    max_abs_error: float   # derived vs the reference (jax.vjp, autograd, the adjoint's sides)
    max_rel_error: float   # max_abs_error relative to the gradient's scale
    ref_abs_error: float   # derived vs the NumPy float64 reference (all three nan: not run)
    rtol: float
    atol: float
    message: str           # '' when passed, else what went wrong
    shape: tuple | None = None
    scale: float = math.nan
    against: str = ""
    crosses: str = ""
    skipped: str = ""

    @property
    def status(self) -> str:
        if self.crosses:
            return "not derived"
        if self.skipped:
            return "not checked"
        return "pass" if self.passed else "fail"

    @property
    def name(self) -> str:
        """The name of what the gradient is of (a cell's value, an einsum's operand)."""
        return self.wrt

    @property
    def gradient(self) -> str:
        """The gradient's own name (``dL_dW1``)."""
        return self.target


def are(names) -> str:
    """``'B is'``, ``'A, B are'``: names as the subject of a note."""
    return f"{', '.join(names)} {'is' if len(names) == 1 else 'are'}"


@dataclass(frozen=True)
class CheckReport:
    """What a check found: one :class:`GradCheck` per gradient, the setting and the verdict.

    For one einsum (:func:`~einsum_magic.check.policy.check`) and for a cell's backward
    (:func:`~einsum_magic.chain.check.check_program`) alike. ``status`` is filled from
    ``passed`` where not given; ``reference`` from ``backend`` (``"numpy"``: the adjoint test).
    """

    passed: bool
    grads: tuple[GradCheck, ...]
    device: str            # 'cpu' or the GPU's name ('NVIDIA H100 80GB HBM3')
    backend: str           # jax.default_backend(): 'cpu', 'gpu', 'tpu'; 'numpy'; a cell's framework
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
    status: str = ""       # PASS, FAIL, PARTIAL or UNCHECKED (:func:`verdict`)
    reason: str = ""       # what was cut (PARTIAL) or why nothing ran (UNCHECKED)
    seed: int = 0          # the seed of the random cotangents and directions
    subject: str = "check"     # 'check' (an einsum) or 'cell check'
    reference: str = ""    # a key of :data:`REFERENCES`: what the gradients were checked against
    real: tuple[str, ...] = ()   # operands given real in a complex check: their gradients are
    #                              the real parts of the derived ones

    def __post_init__(self):
        if not self.status:
            object.__setattr__(self, "status", "PASS" if self.passed else "FAIL")
        if self.status not in STATUSES:
            raise ValueError(f"a check's status is one of {STATUSES}, not {self.status!r}")
        if self.passed != (self.status == "PASS"):
            raise ValueError(f"passed={self.passed} contradicts the status {self.status}")
        if not self.reference:
            object.__setattr__(self, "reference",
                               "adjoint" if self.backend == "numpy" else "jax.vjp")

    @property
    def failed(self) -> bool:
        """Whether a derived gradient disagrees (the magic fails the cell; PARTIAL does not)."""
        return self.status == "FAIL"

    @property
    def rows(self) -> tuple[GradCheck, ...]:
        return self.grads

    @property
    def gradients(self) -> tuple[GradCheck, ...]:
        return self.grads

    @property
    def framework(self) -> str:
        """The framework whose autodiff (or NumPy's adjoint test) is the reference."""
        return {"torch autograd": "torch", "adjoint": "numpy"}.get(self.reference, "jax")

    @property
    def summary(self) -> str:
        """One deterministic line: the verdict and counts, no device, errors or timings.

        >>> errors = dict(max_abs_error=1.0, max_rel_error=0.5, ref_abs_error=0.0,
        ...               rtol=1e-4, atol=1e-30, message="values differ from jax.vjp")
        >>> r = CheckReport(False, (GradCheck("dL_dA", "A", "ik,jk->ji", False, **errors),),
        ...                 "cpu", "cpu", "float32", "highest", False, (), {})
        >>> r.summary
        'check: FAIL, 0/1 gradient matches jax.vjp (float32); wrong: dL_dA'
        >>> CheckReport(False, (), "", "torch", "float64", "float64", True, (), {},
        ...             status="UNCHECKED", reason="over the budget", subject="cell check").summary
        'cell check: not run: over the budget'
        """
        if self.status == "UNCHECKED":
            return f"{self.subject}: not run: {self.reason}" + self._how()
        own = [g for g in self.grads if g.against == ".grad"]
        ref = [g for g in self.grads
               if g.against != ".grad" and g.status not in ("not derived", "not checked")]
        n, ok = len(ref), sum(g.passed for g in ref)
        plural, singular, words = REFERENCES.get(self.reference, ("match", "matches",
                                                                  self.reference))
        if self.subject != "check":          # a cell: the reference ran on its replay
            words += " of the replayed run" if self.reference != "adjoint" else \
                " of the NumPy replay"
        setting = self.dtype + (", operands scaled by powers of two" if self.scaled else "")
        if self.real:                        # a real operand of a complex einsum
            targets = list(dict.fromkeys(g.target for g in self.grads if g.wrt in self.real))
            whose = ("its gradient is the real part" if len(targets) == 1 else
                     "their gradients are the real parts")
            setting += f"; {are(self.real)} real: {whose} of {', '.join(targets)}"
        on = f" on seeded random arrays, not yours ({self.stand_ins})" if self.stand_ins else ""
        text = (f"{self.subject}: {self.status}, "
                + (f"{self.reason}; " if self.status == "PARTIAL" and self.reason else "")
                + f"{ok}/{n} gradient{'s' if n != 1 else ''} "
                f"{singular if n == 1 else plural} {words} ({setting}){on}")
        if own:
            text += f"; {sum(g.passed for g in own)}/{len(own)} match the cell's own .grad"
        wrong = [g.target if self.subject == "check" else g.name     # a cell: its names
                 for g in self.grads if g.status == "fail"]
        if wrong:
            text += f"; wrong: {', '.join(dict.fromkeys(wrong))}"
        return text + self._how()

    def _how(self) -> str:
        if self.reference != "adjoint":
            return ""
        return "; checked with NumPy (adjoint test)" + (f", {self.fallback}" if self.fallback
                                                        else "")
