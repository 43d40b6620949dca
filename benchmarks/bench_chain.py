"""XLA FLOPs of a whole cell's exported backward against jax.vjp of the same forward in jnp.

Two cells of the issue, at realistic sizes: an MLP layer with bias, ReLU and a softmax on
top, and one attention head (scores, scaling, softmax, weighted values). Each row
jit-compiles a function of the inputs and the cotangent that returns the forward output and
every input gradient, two ways: ``jax.vjp`` of the forward program written in jax.numpy
(:func:`einsum_magic.chain.text.check.jax_source`: autodiff) and ``jax.vjp`` of
``CellBackward.compile("jax")`` (the exported ``custom_vjp``). FLOPs are
``cost_analysis()['flops']``: deterministic, nothing runs. Target: exported / autodiff <= 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from einsum_magic.chain import cell_backward
from einsum_magic.chain.text.check import jax_source

MLP = ("""H = np.einsum('bi,ij->bj', X, W1) + b1
Z = np.maximum(H, 0)
S = np.einsum('bj,jk->bk', Z, W2)
P = np.exp(S - S.max(axis=1, keepdims=True)); P = P / P.sum(axis=1, keepdims=True)""",
       {"X": (256, 512), "W1": (512, 1024), "b1": (1024,), "W2": (1024, 10)})
ATTENTION = ("""A = Q @ K.T / np.sqrt(K.shape[-1])
P = jax.nn.softmax(A, axis=-1)
O = np.einsum('qk,kd->qd', P, V)""", {"Q": (256, 64), "K": (256, 64), "V": (256, 64)})
CASES = [("MLP layer + softmax", *MLP), ("attention head", *ATTENTION)]


def _flops(fn, shapes) -> int:
    args = [jax.ShapeDtypeStruct(s, "float32") for s in shapes]
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return int(analysis.get("flops", 0))


def flops(cell: str, shapes: dict) -> tuple[int, int]:
    """(autodiff, exported) XLA FLOPs of forward + pullback for the cell at these shapes."""
    rng = np.random.default_rng(0)
    arrays = {n: rng.standard_normal(s) for n, s in shapes.items()}
    b = cell_backward(cell, arrays, {"np": np, "jax": jax, **arrays}, check=False)
    ns = dict(b.namespace())
    ns.update(jax=jax, jnp=jnp)
    exec(jax_source(b), ns)
    reference = ns["forward"]
    exported = b.compile("jax")
    (sink,) = b.sinks
    count = len(b.inputs)

    def through(f):
        def fn(*args):
            out, pull = jax.vjp(f, *args[:count])
            return out, pull(args[count])
        return fn

    def autodiff(*args):
        out, pull = jax.vjp(reference, *args[:count])
        return out, pull((args[count],))

    all_shapes = [shapes[n] for n in b.inputs] + [b.program.shapes[sink]]
    return _flops(autodiff, all_shapes), _flops(through(exported), all_shapes)


def run() -> list[str]:
    rows = [f"jax {jax.__version__}, XLA on {jax.devices()[0].platform}, float32; FLOPs of "
            "`jax.jit(forward + pullback)` from `cost_analysis()`. Target: exported / autodiff <= 1.",
            "", "| cell | shapes | jax.vjp of the jnp forward | exported custom_vjp | ratio |",
            "|---|---|---:|---:|---:|"]
    worst = 0.0
    for label, cell, shapes in CASES:
        auto, exp = flops(cell, shapes)
        worst = max(worst, exp / auto)
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        rows.append(f"| {label} | {described} | {auto:.4e} | {exp:.4e} | {exp / auto:.3f} |")
    rows += ["", f"Worst exported / autodiff ratio: {worst:.3f} "
             f"({'meets' if worst <= 1.0 else 'MISSES'} the target <= 1.0)."]
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
