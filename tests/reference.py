"""JAX's autodiff as the reference every derived gradient is held to, and small helpers."""

from __future__ import annotations

import numpy as np


def jax_vjp(equation: str, operands, cotangent):
    """Gradients of ``jnp.einsum(equation, *operands)`` at ``cotangent``, by ``jax.vjp``, in float64."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        ops = [jnp.asarray(x, dtype=jnp.float64) for x in operands]
        out, pullback = jax.vjp(lambda *xs: jnp.einsum(equation, *xs), *ops)
        grads = pullback(jnp.asarray(cotangent, dtype=jnp.float64).reshape(out.shape))
        return tuple(np.asarray(g) for g in grads)


def random_operands(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def assert_grads_equal(got, want, rtol=1e-9, atol=1e-9):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.shape == w.shape, f"gradient {k}: shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"gradient {k}")
