"""The check's JAX side: ``jax.vjp`` and the derived einsums on JAX's default device.

This module owns the arrow ``Inputs → (JAX's gradients, the derived ones)``: for a
:class:`~einsum_magic.core.derivation.Derivation` and its :class:`~einsum_magic.check.inputs.Inputs`
it computes, on JAX's default device (a GPU when JAX has one) and under
``jax.default_matmul_precision("highest")`` (:data:`PRECISION`; GPUs would use TF32 for float32):

- each derived gradient: :attr:`Grad.equation <einsum_magic.core.derivation.Grad>` evaluated
  with ``jnp.einsum`` over (cotangent, the other operands in order, the ``eye``/``ones``
  tensors of :attr:`Grad.aux`), exactly the einsum that :attr:`Grad.code` runs;
- the same gradients by ``jax.vjp`` of the forward ``jnp.einsum``.

It compares nothing: :mod:`einsum_magic.check.policy` does, and builds the report.

JAX is imported on first use (:func:`import_jax`), never when this module is imported, without
disturbing the session (NumPy's random state, GPU memory preallocation). JAX's global
configuration is never changed: float64 and complex128 run inside the scoped
``jax.enable_x64(True)`` context (:func:`scoped`). Compiled functions are cached by (equations,
shapes, dtype, device), so a repeated check of a small einsum costs a few milliseconds.

>>> isinstance(jax_available(), bool)
True
"""

from __future__ import annotations

import contextlib
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
from .inputs import Inputs

__all__ = ["INSTALL", "PRECISION", "JaxNotInstalled", "jax_available", "import_jax", "scoped",
           "run", "JaxRun"]

#: The matmul precision of both sides of the check (GPUs would use TF32 for float32).
PRECISION = "highest"
#: How to install JAX: what :class:`JaxNotInstalled` says.
INSTALL = 'pip install jax (CPU) or pip install "jax[cuda13]" (NVIDIA GPUs)'
_TIMING_RUNS = 3


class JaxNotInstalled(ImportError):
    """The check needs JAX, which is not installed; the message says how to install it."""

    def __init__(self):
        super().__init__(f"the gradient check needs JAX: {INSTALL}")


def jax_available() -> bool:
    """Whether JAX can be imported, answered without importing it.

    """
    try:
        return importlib.util.find_spec("jax") is not None
    except (ImportError, ValueError):       # a module without __spec__ in sys.modules
        return False


# -- JAX ---------------------------------------------------------------------------------

#: JAX's warnings while it started (a CUDA-less jaxlib on a GPU machine, an experimental
#: platform): kept for the report's live view instead of printed to stderr, where they
#: would make a notebook's stored outputs differ from machine to machine.
_STARTUP_WARNINGS: tuple[str, ...] = ()


#: Environment variables by which a user configures JAX's GPU memory: any one set, the
#: check leaves preallocation as the user has it.
_MEMORY_SETTINGS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                    "XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")


def import_jax():
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


def scoped(jax, dtype: str):
    """The context the check runs in: float64/complex128 inside ``jax.enable_x64(True)`` (never
    the global flag), and the matmul precision :data:`PRECISION`."""
    stack = contextlib.ExitStack()
    if dtype in ("float64", "complex128"):
        stack.enter_context(jax.enable_x64(True))
    stack.enter_context(jax.default_matmul_precision(PRECISION))
    return stack


@dataclass(frozen=True)
class JaxRun:
    """What JAX computed: per position ``jax.vjp``'s gradient and the derived one (or why not)."""

    want: tuple            # jax.vjp's gradients (NumPy arrays), one per position
    got: tuple             # the derived einsums on the device (NumPy arrays; None: see problems)
    problems: tuple        # per position: why the derived einsum cannot run, or None
    device: str            # 'cpu' or the GPU's name
    backend: str           # jax.default_backend()
    timings: dict          # derived_ms, jax_vjp_ms (warm, best of 3), compile_ms
    platform: tuple[str, ...] = ()   # what JAX warned while starting


def run(jax, d: Derivation, inputs: Inputs) -> JaxRun:
    """``jax.vjp`` and the derived einsums of ``d`` on ``inputs``, inside :func:`scoped`."""
    with scoped(jax, inputs.dtype):
        return _run(jax, d, inputs, _flag(jax))


def _run(jax, d: Derivation, inputs: Inputs, x64: bool) -> JaxRun:
    dtype = inputs.dtype
    placed = {}      # an array passed twice is put on the device once
    ops = tuple(placed.setdefault(id(a), jax.device_put(a)) for a in inputs.operands)
    cot = jax.device_put(inputs.cotangent)
    device = next(iter(cot.devices()))
    t0 = time.perf_counter()
    shapes = (cot.shape,) + tuple(x.shape for x in ops)
    specs = [_spec(g, ops) for g in d.grads]
    problems = tuple(_problem(spec, shapes, dtype, x64) for spec in specs)
    runnable = tuple(s for s, p in zip(specs, problems) if p is None)
    vjp_fn = _compiled("vjp", d.equation, shapes, dtype, device, x64)
    derived_fn = _compiled("derived", runnable, shapes, dtype, device, x64) if runnable else None
    compile_ms = (time.perf_counter() - t0) * 1e3
    want, vjp_ms = _timed(jax, vjp_fn, cot, ops)
    got, derived_ms = _timed(jax, derived_fn, cot, ops) if derived_fn else ((), 0.0)
    got = iter(got)
    return JaxRun(
        want=tuple(np.asarray(w) for w in want),
        got=tuple(None if p else np.asarray(next(got)) for p in problems), problems=problems,
        device="cpu" if device.platform == "cpu" else device.device_kind,
        backend=jax.default_backend(), platform=_STARTUP_WARNINGS,
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
    jax, jnp = import_jax()
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
    jax, jnp = import_jax()
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
