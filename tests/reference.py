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


# Every row of DESIGN.md's table and the bug reports other einsum libraries have had.
HARD_CASES = [
    ("ij,jk->ik", [(2, 3), (3, 4)]),
    ("ii->", [(3, 3)]),
    ("ii->i", [(3, 3)]),
    ("iij,jk->ik", [(2, 2, 3), (3, 4)]),
    ("nd,nn->d", [(3, 2), (3, 3)]),
    ("ijj->i", [(2, 3, 3)]),
    ("ijji,kji,jj->kj", [(2, 3, 3, 2), (4, 3, 2), (3, 3)]),
    ("ij->i", [(2, 3)]),
    ("ij,k->ik", [(2, 3), (4,)]),
    ("ij,j->", [(2, 3), (3,)]),
    ("i,i", [(3,), (1,)]),
    ("i,i->i", [(3,), (1,)]),
    ("cij,cjk->cik", [(1, 4, 5), (3, 5, 6)]),
    ("...ij,...jk->...ik", [(1, 2, 3), (5, 3, 4)]),
    ("...ij,jk->...ik", [(5, 2, 3), (3, 4)]),
    ("...ij,jk->...ik", [(2, 3), (3, 4)]),
    ("ba", [(2, 3)]),
    ("ij,jk", [(2, 3), (3, 4)]),
    (",ij->ij", [(), (2, 3)]),
    (",->", [(), ()]),
    ("iii->i", [(2, 2, 2)]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("aB,Bc->ac", [(2, 3), (3, 4)]),
    ("i...->i", [(2,)]),
    ("ij,ij->", [(0, 3), (0, 3)]),
]
