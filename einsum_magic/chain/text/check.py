"""The check of a cell's backward: every input's gradient against ``jax.vjp`` in float64.

This module owns the chain's reference. It writes the forward program it read in
jax.numpy (:func:`jax_source`: the same steps, ``jnp`` for ``np``; softmax's shift under
``jax.lax.stop_gradient``), takes ``jax.vjp`` of it at the cell's arrays with seeded random
cotangents (never all ones) inside a scoped ``jax.enable_x64(True)`` (JAX's global flags are
never flipped), runs the backward program with NumPy on the same values, and compares every
gradient element by element. JAX is imported on first use (:mod:`einsum_magic.check.report`'s
quiet import).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .forward import line

__all__ = ["ChainCheck", "GradientCheck", "check_backward", "jax_source", "RTOL"]

#: Tolerance relative to the largest magnitude of the reference gradient (float64).
RTOL = 1e-9


@dataclass(frozen=True)
class GradientCheck:
    """One input's gradient: the largest difference from ``jax.vjp`` and whether it passed."""

    target: str
    shape: tuple[int, ...]
    max_abs_error: float
    scale: float
    passed: bool


@dataclass(frozen=True)
class ChainCheck:
    """The verdict on a cell's backward: one :class:`GradientCheck` per input, in order."""

    passed: bool
    gradients: tuple[GradientCheck, ...]
    dtype: str = "float64"
    seed: int = 0

    @property
    def failed(self) -> bool:
        """Whether a gradient disagrees (the magic fails the cell)."""
        return not self.passed

    @property
    def summary(self) -> str:
        """One deterministic line. It says what was differentiated: the forward as this
        reading of the source wrote it (nothing ran), so agreeing is never a PASS: a PASS
        is about what the cell computed (a run's record, :mod:`einsum_magic.chain.result`).
        Disagreeing is a FAIL all the same: a rule of the reading is wrong.

        >>> line = ChainCheck(True, (GradientCheck("dL_dA", (2,), 0.0, 1.0, True),)).summary
        >>> line.split(": ")[:2], "PASS" in line
        (['cell check', 'not run (the forward as read, nothing ran)'], False)
        """
        n, ok = len(self.gradients), sum(g.passed for g in self.gradients)
        counted = (f"{ok}/{n} input gradient{'s' if n != 1 else ''} "
                   f"match{'es' if n == 1 else ''} jax.vjp of the forward as read ({self.dtype})")
        if self.passed:
            return f"cell check: not run (the forward as read, nothing ran): {counted}"
        wrong = ", ".join(g.target for g in self.gradients if not g.passed)
        return f"cell check: FAIL, {counted}; wrong: {wrong}"


def jax_source(backward) -> str:
    """``forward(<leaves>)`` in jax.numpy, returning the sinks' tuple (the check's reference)."""
    p = backward.program
    body = [f"    {line(s, 'jnp')}" for s in p.steps if s.kind != "stop"]
    sinks = ", ".join(p.sinks)
    return "\n".join([f"def forward({', '.join(p.leaves)}):", *body,
                      f"    return ({sinks},)"]) + "\n"


def cotangents(backward, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random cotangents ``dL_d<sink>`` of every sink (float64)."""
    rng = np.random.default_rng(seed)
    shapes = backward.program.shapes
    return {backward.cotangent(s): rng.standard_normal(shapes[s]) for s in backward.sinks}


def check_backward(backward, seed: int = 0) -> ChainCheck:
    """Check ``backward`` (a :class:`~einsum_magic.chain.text.result.CellBackward`) against jax.vjp."""
    from ...check.jax import import_jax

    jax, jnp = import_jax()
    p = backward.program
    cots = cotangents(backward, seed)
    ours = backward.run(cots)
    ns = dict(backward.namespace())
    ns.update(jax=jax, jnp=jnp)
    exec(compile(jax_source(backward), "<einsum_magic cell forward>", "exec"), ns)
    with jax.enable_x64(True):
        leaves = [jnp.asarray(backward.values[v]) for v in p.leaves]
        _, pull = jax.vjp(ns["forward"], *leaves)
        want = pull(tuple(jnp.asarray(cots[backward.cotangent(s)]) for s in p.sinks))
        want = [np.asarray(w, dtype=np.float64) for w in want]
    rows = []
    for v, w in zip(p.leaves, want):
        name = backward.gradient(v)
        got = np.asarray(ours[name], dtype=np.float64)
        shape = tuple(np.shape(backward.values[v]))
        if got.shape != w.shape:
            rows.append(GradientCheck(name, shape, float("inf"), 0.0, False))
            continue
        err = float(np.max(np.abs(got - w))) if w.size else 0.0
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        ok = bool(np.all(np.isfinite(got))) and err <= RTOL * max(scale, 1e-12)
        rows.append(GradientCheck(name, shape, err, scale, ok))
    return ChainCheck(all(r.passed for r in rows), tuple(rows), "float64", seed)
