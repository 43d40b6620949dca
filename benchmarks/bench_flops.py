"""XLA FLOPs of the exported backward against jax.vjp of jnp.einsum, for a realistic suite.

Each row jit-compiles one function of the operands and the cotangent that returns the forward
output and every gradient (forward + pullback, as a training step runs them), three ways:
``jax.vjp`` of ``jnp.einsum`` (autodiff), ``jax.vjp`` of ``d.compile("jax")`` (the exported
joint backward) and the naive export (one derived einsum per gradient, eye/ones materialised).
FLOPs are ``cost_analysis()['flops']`` of the compiled function: deterministic, nothing runs.
Target: exported / autodiff <= 1.0 on every row.
"""

from __future__ import annotations

import jax

from einsum_magic import derive
from einsum_magic.compute.cost import cost
from xla_flops import xla_vjp_flops
from einsum_magic.core.equation import parse

#: (label, equation, names or None, letter sizes or explicit shapes) at realistic sizes.
SUITE = [
    ("dense layer", "bi,oi->bo", None, dict(b=256, i=512, o=1024)),
    ("attention scores", "bhqd,bhkd->bhqk", None, dict(b=4, h=8, q=256, k=256, d=64)),
    ("attention values", "bhqk,bhkd->bhqd", None, dict(b=4, h=8, q=256, k=256, d=64)),
    ("matrix chain, skewed", "ij,jk,kl->il", None, dict(i=8, j=512, k=4, l=1024)),
    ("matrix chain of 4, skewed", "ij,jk,kl,lm->im", None, dict(i=1000, j=20, k=500, l=8, m=700)),
    ("bilinear form", "i,ij,j->", None, dict(i=1024, j=2048)),
    ("quadratic form (x twice)", "i,ij,j->", ("x", "A", "x"), dict(i=1024, j=1024)),
    ("batched bilinear", "bi,ij,bj->b", None, dict(b=64, i=512, j=256)),
    ("bilinear layer", "bi,oij,bj->bo", None, dict(b=64, o=128, i=64, j=64)),
    ("MPS overlap", "pa,aqb,br,pc,cqd,dr->", None, dict(p=4, q=4, r=4, a=64, b=64, c=64, d=64)),
    ("tensor train times vectors", "ai,ibj,jc,b->ac", None, dict(a=32, i=64, b=128, j=64, c=32)),
    ("trace", "ii->", None, dict(i=2048)),
    ("trace of a product", "ij,ji->", None, dict(i=512, j=1024)),
    ("batched diagonal", "bii->bi", None, dict(b=64, i=256)),
    ("summed in one", "ij,jk->i", None, dict(i=512, j=256, k=1024)),
    ("broadcast batch (...)", "...ij,...jk->...ik", None, [(1, 128, 256), (32, 256, 64)]),
    ("broadcast scale (size 1)", "bd,bd->bd", None, [(1, 1024), (512, 1024)]),
]


def shapes_of(equation: str, sizes) -> list[tuple[int, ...]]:
    """Operand shapes from letter sizes (a list of shapes is returned as given)."""
    if isinstance(sizes, list):
        return sizes
    return [tuple(sizes[c] for c in s) for s in parse(equation).inputs]


def derivations(scale: int = 1):
    """(label, Derivation) for the suite, every size divided by ``scale`` (sizes of 1 kept)."""
    for label, equation, names, sizes in SUITE:
        shapes = [tuple(n if n == 1 else max(2, n // scale) for n in s)
                  for s in shapes_of(equation, sizes)]
        yield label, derive(equation, names=names, shapes=shapes)


def _flops(n: int) -> str:
    return f"{n:.3e}" if n >= 1e5 else str(n)


def run() -> list[str]:
    rows = [f"jax {jax.__version__}, XLA on {jax.devices()[0].platform}, float32; FLOPs of "
            "`jax.jit(forward + pullback)` from `cost_analysis()`. Target: exported / autodiff <= 1.", "",
            "| case | einsum | shapes | jax.vjp(jnp.einsum) | exported | ratio | naive | ratio | "
            "opt_einsum: backward joint / separate paths |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for label, d in derivations():
        autodiff = xla_vjp_flops(d, "autodiff")
        exported = xla_vjp_flops(d, "exported")
        naive = xla_vjp_flops(d, "naive")
        r = cost(d)
        worst = max(worst, exported / autodiff)
        shapes = ", ".join(str(s) for s in d.shapes)
        names = "" if len(set(d.names)) == len(d.names) else f" ({', '.join(d.names)})"
        rows.append(f"| {label} | `{d.equation}`{names} | {shapes} | {_flops(autodiff)} | "
                    f"{_flops(exported)} | {exported / autodiff:.3f} | {_flops(naive)} | "
                    f"{naive / autodiff:.3f} | {_flops(r.backward)} / {_flops(r.separate_backward)} |")
    rows += ["", f"Worst exported / autodiff ratio: {worst:.3f} "
             f"({'meets' if worst <= 1.0 else 'MISSES'} the target <= 1.0)."]
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
