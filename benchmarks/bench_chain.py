"""XLA FLOPs of a whole cell's exported backward against jax.vjp of the same forward in jnp.

Two cells of the issue, at realistic sizes: an MLP layer with bias, ReLU and a softmax on
top, and one attention head (scores, scaling, softmax, weighted values). Each row
jit-compiles a function of the inputs and the cotangent that returns the forward output and
every input gradient, two ways: ``jax.vjp`` of the forward program written in jax.numpy
(:func:`einsum_magic.chain.text.check.jax_source`: autodiff) and ``jax.vjp`` of
``CellBackward.compile("jax")`` (the exported ``custom_vjp``). FLOPs are
``cost_analysis()['flops']``: deterministic, nothing runs. Target: exported / autodiff <= 1.

The same for the recorded cell backward (``%%einsum_grad -o r`` over NumPy cells, then
``r.backward.export("jax")``, :mod:`einsum_magic.chain.export`): autodiff is ``jax.vjp`` of
the record's replay with ``jax.numpy`` namesakes
(:func:`einsum_magic.chain.replay_numpy.namesake`, the check's own reference); exported is
that replay's forward followed by the exported ``cell_backward`` on the values it reads.
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


RECORDED = [
    ("MLP layer + softmax", MLP[0], MLP[1]),
    ("attention head (softmax in NumPy)", """A = Q @ K.T / np.sqrt(K.shape[-1])
E = np.exp(A - A.max(axis=-1, keepdims=True))
P = E / E.sum(axis=-1, keepdims=True)
O = np.einsum('qk,kd->qd', P, V)""", ATTENTION[1]),
    # cs231n/cs231n.github.io neural-networks-case-study.md: the two-layer net's loss
    ("two-layer net + cross-entropy", """hidden_layer = np.maximum(0, np.dot(X, W) + b)
scores = np.dot(hidden_layer, W2) + b2
exp_scores = np.exp(scores)
probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
correct_logprobs = -np.log(probs[range(num_examples), y])
loss = np.sum(correct_logprobs) / num_examples""",
     {"X": (512, 256), "W": (256, 1024), "b": (1, 1024), "W2": (1024, 10), "b2": (1, 10)}),
]


def recorded(cell: str, shapes: dict):
    """The CellBackward of ``cell`` run under ``%%einsum_grad --no-check -o r`` in a shell."""
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    from einsum_magic.magic import load_ipython_extension

    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    if "einsum_grad" not in ip.magics_manager.magics["cell"]:
        load_ipython_extension(ip)
    rng = np.random.default_rng(0)
    ip.push({n: rng.standard_normal(s) for n, s in shapes.items()})
    first = next(iter(shapes.values()))[0]
    ip.push({"np": np, "num_examples": first, "y": rng.integers(0, 10, first)})
    with capture_output():
        result = ip.run_cell("%%einsum_grad --no-check -o r\n" + cell)
    result.raise_error()
    return ip.user_ns["r"].backward


def recorded_flops(cell: str, shapes: dict) -> tuple[int, int]:
    """(autodiff, exported) XLA FLOPs of forward + pullback for the recorded cell."""
    from einsum_magic.chain.export import compiled
    from einsum_magic.chain.record import map_refs
    from einsum_magic.chain.replay_numpy import namesake

    b = recorded(cell, shapes)
    rec, prog = b.recording, b.program
    inputs = list(prog.inputs)
    base = {v: rec.values[v] for v in rec.leaves}

    def replay(xs):
        env = dict(base)
        env.update(zip(inputs, xs))
        for node in rec.nodes:
            args = map_refs(node.args, lambda r: env[r.id])
            kwargs = {k: v for k, v in map_refs(dict(node.kwargs), lambda r: env[r.id]).items()
                      if k not in ("out", "casting", "order", "subok", "optimize")}
            result = namesake(node, jnp)(tuple(args), kwargs)
            env.update(zip(node.outs, result if isinstance(result, (tuple, list)) else [result]))
        return env

    (sink,) = prog.sinks
    backward = compiled(b, "jax")
    count = len(inputs)

    def autodiff(*args):
        out, pull = jax.vjp(lambda *xs: replay(xs)[sink], *args[:count])
        return out, pull(args[count])

    def exported(*args):
        env = replay(args[:count])
        grads = backward(args[count], *[env[v] for v in prog.reads])
        return env[sink], tuple(grads[b.names.name[v]] for v in inputs)

    all_shapes = [tuple(rec.info[v].shape) for v in inputs] + [tuple(rec.info[sink].shape)]
    return _flops(autodiff, all_shapes), _flops(exported, all_shapes)


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
             f"({'meets' if worst <= 1.0 else 'MISSES'} the target <= 1.0).", "",
             "The recorded cell backward (`r.backward.export(\"jax\")`, NumPy cells): "
             "`jax.vjp` of the record's `jax.numpy` replay against that replay's forward + "
             "the exported `cell_backward`.", "",
             "| cell | shapes | jax.vjp of the replay | exported cell_backward | ratio |",
             "|---|---|---:|---:|---:|"]
    worst = 0.0
    for label, cell, shapes in RECORDED:
        auto, exp = recorded_flops(cell, shapes)
        worst = max(worst, exp / auto)
        described = ", ".join(f"{n} {s}" for n, s in shapes.items())
        rows.append(f"| {label} | {described} | {auto:.4e} | {exp:.4e} | {exp / auto:.3f} |")
    rows += ["", f"Worst exported / autodiff ratio: {worst:.3f} "
             f"({'meets' if worst <= 1.0 else 'MISSES'} the target <= 1.0)."]
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
