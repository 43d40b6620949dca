"""XLA's FLOP count of a derivation's backward: the exported JAX code against ``jax.vjp``.

A measurement, not a step of the package's data flow: it needs JAX and compiles with XLA, so it
lives with the benchmarks (``bench_flops.py``, ``bench_backward_gpu.py``), and the tests that hold
the exported backward to autodiff's FLOPs import it from here (``tests/compute/test_cost.py``).
"""

from __future__ import annotations

from einsum_magic.compute.export import compiled
from einsum_magic.compute.plan import require_shapes
from einsum_magic.core.derivation import Derivation
from einsum_magic.errors import EinsumError

__all__ = ["vjp_function", "xla_vjp_flops"]


def vjp_function(d: Derivation, implementation: str = "exported"):
    """A function of the distinct operands and the cotangent returning ``(output, gradients)``.

    ``implementation``: ``"autodiff"`` (``jax.vjp`` of ``jnp.einsum``), ``"exported"``
    (``jax.vjp`` of ``d.compile("jax")``) or ``"naive"`` (the JAX export with one derived
    einsum per gradient). The forward and the pullback are in one function, so that
    ``jax.jit`` compiles them together as a training step would. Imports JAX.
    """
    import jax
    import jax.numpy as jnp

    require_shapes(d, "a vjp function")
    names = tuple(dict.fromkeys(d.names))
    if implementation == "autodiff":
        def fn(*xs):
            env = dict(zip(names, xs))
            return jnp.einsum(d.equation, *(env[n] for n in d.names))
    elif implementation in ("exported", "naive"):
        fn = compiled(d, "jax", naive=implementation == "naive")
    else:
        raise EinsumError(f"unknown implementation {implementation!r}: "
                          "choose autodiff, exported or naive")

    def forward_and_pullback(*args):
        out, pullback = jax.vjp(fn, *args[:-1])
        return out, pullback(args[-1])

    return forward_and_pullback


def xla_vjp_flops(d: Derivation, implementation: str = "exported", dtype: str = "float32") -> int:
    """XLA's FLOP count of :func:`vjp_function` for ``d``'s shapes, jit-compiled.

    The count is ``jax.jit(fn).lower(...).compile().cost_analysis()['flops']`` (a dict in
    jax 0.10; a list of one dict in some older versions). Nothing runs: the arguments are
    :class:`jax.ShapeDtypeStruct`. Imports JAX.
    """
    import jax

    fn = vjp_function(d, implementation)
    shapes = dict(zip(d.names, d.shapes))
    args = [jax.ShapeDtypeStruct(shapes[n], dtype) for n in dict.fromkeys(d.names)]
    args.append(jax.ShapeDtypeStruct(d.output_shape, dtype))
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return int(analysis.get("flops", 0))
