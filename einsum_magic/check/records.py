"""The check's records: one :class:`GradCheck` per gradient, one :class:`CheckReport` per check.

This module owns what a check found, whichever check ran (JAX's autodiff, NumPy's adjoint test)
and for whatever was checked (one einsum, a cell's backward), and its one deterministic summary
line (:attr:`CheckReport.summary`, what ``text/plain`` and nbval see). :data:`TOLERANCES` are the
per-dtype tolerances a :class:`GradCheck` records. It imports nothing of the check's machinery;
the rest of :mod:`einsum_magic.check` builds these records.

>>> ok = dict(max_abs_error=0.0, max_rel_error=0.0, ref_abs_error=0.0, rtol=1e-4, atol=1e-30,
...           message="")
>>> r = CheckReport(True, (GradCheck("dL_dA", "A", "ik,jk->ij", True, **ok),), "cpu", "cpu",
...                 "float32", "highest", True, (), {})
>>> r.summary
'check: PASS, 1/1 gradient matches jax.vjp (float32)'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CheckReport", "GradCheck", "TOLERANCES"]

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
