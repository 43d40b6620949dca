"""The check of a NumPy cell's backward: ``jax.vjp`` of the recorded calls' ``jax.numpy`` namesakes.

This module owns the reference of a record made by
:mod:`~einsum_magic.chain.recorders.numpy` (:func:`~einsum_magic.chain.check.check_program`
hands such records here). As for torch, never the package's own reading of the cell and
never a second run of it:

1. **Replay**: every recorded node upstream of a sink is called again through its
   ``jax.numpy`` namesake (:func:`namesake`: ``numpy.tanh`` → ``jnp.tanh``,
   ``numpy.ndarray.mean`` → ``Array.mean``, ``x[k] = v`` → ``x.at[k].set(v)``,
   ``np.add.at`` → ``x.at[k].add(v)``, ``out=`` dropped: the replay is functional), on
   float64 copies of the leaves (integer and boolean values as they were), inside
   ``jax.enable_x64(True)`` as a context (JAX's global flags are never changed).
2. **Fidelity gate**: every value the replay recomputes must equal the run's (relative
   tolerance 1e-9 for a float64 run, 1e-3 for float32; other dtypes exactly); else the
   check names the first operation it could not reproduce (one with no ``jax.numpy``
   namesake, say) and compares nothing.
3. **Reference**: ``jax.vjp`` of the replay, with 1 for a scalar sink and a seeded random
   cotangent for any other; intermediates' gradients through a zero added to each.
4. The backward lines run with NumPy on the replay's float64 values and the same
   cotangents; each gradient passes when ``max|ours - reference| <= RTOL * max|reference|``.

Without JAX the check says so in one line (UNCHECKED, "JAX is not available").
At kinks the reference is JAX's: :mod:`einsum_magic.chain.rules.numpy` writes the same
subgradients (``maximum`` halves a tie, ``abs`` passes ``+g`` at 0).
"""

from __future__ import annotations

import importlib.util

import numpy as np

from .report import CHECK_ELEMENTS, FIDELITY, CellCheck, verdict
from .record import Recording, Ref, map_refs

__all__ = ["check_numpy", "namesake"]

_REDUCE = {"add": "sum", "maximum": "max", "minimum": "min", "multiply": "prod"}


def namesake(node, jnp):
    """The ``jax.numpy`` call replaying ``node``: a function of (args, kwargs), or None.

    >>> from einsum_magic.chain.record import Node
    >>> import jax.numpy as jnp
    >>> f = namesake(Node(0, "numpy", "numpy.tanh", np.tanh, (Ref(1),), (), (2,)), jnp)
    >>> round(float(f((0.5,), {})), 6) == round(float(np.tanh(0.5)), 6)
    True
    >>> namesake(Node(0, "numpy", "numpy.linalg.eigh", None, (Ref(1),), (), (2, 3)), jnp) is None
    False
    >>> namesake(Node(0, "numpy", "numpy.ndarray.sort", None, (Ref(1),), (), (2,)), jnp) is None
    True
    """
    op = node.op
    if node.framework == "jax":                  # a JAX primitive: bound again, in float64
        from .replay_jax import replayer

        return replayer(node)
    if op == "opt_einsum.contract":
        return lambda a, k: jnp.einsum(*a)
    if op == "einops.einsum":
        original = getattr(node.func, "__wrapped__", node.func)
        return lambda a, k: original(*a)          # einops runs on JAX arrays as they are
    if not op.startswith("numpy."):
        return None
    name = op[len("numpy."):]
    if name.startswith("ndarray."):
        method = name[len("ndarray."):]
        if method == "T":
            return lambda a, k: jnp.asarray(a[0]).T
        if method == "mT":
            return lambda a, k: jnp.swapaxes(jnp.asarray(a[0]), -1, -2)
        if method == "__getitem__":
            return lambda a, k: jnp.asarray(a[0])[_key(a[1])]
        if method == "__setitem__":
            return lambda a, k: jnp.asarray(a[0]).at[_key(a[1])].set(a[2])
        if method == "fill":
            return lambda a, k: jnp.full_like(jnp.asarray(a[0]), a[1])
        if method in ("copy", "view") and len(node.args) == 1:
            return lambda a, k: jnp.asarray(a[0])
        if method in ("sort", "put"):
            return None
        return lambda a, k: getattr(jnp.asarray(a[0]), method)(*a[1:], **k)
    parts = name.split(".")
    if len(parts) == 2 and parts[1] in ("reduce", "at"):
        ufunc, how = parts
        if how == "at":
            if ufunc != "add":
                return None
            return lambda a, k: jnp.asarray(a[0]).at[_key(a[1])].add(a[2] if len(a) > 2 else 0)
        red = _REDUCE.get(ufunc)
        if red is None:
            return None
        fn = getattr(jnp, red)

        def reduce(a, k):
            k = dict(k)
            axis = a[1] if len(a) > 1 else k.pop("axis", 0)
            return fn(a[0], axis=axis, **{x: v for x, v in k.items() if x != "axis"})

        return reduce
    if name in ("array", "asarray", "ascontiguousarray"):
        return lambda a, k: jnp.array(a[0], dtype=k.get("dtype", a[1] if len(a) > 1 else None))
    if name == "copyto":
        return lambda a, k: jnp.broadcast_to(jnp.asarray(a[1]), np.shape(a[0])).astype(
            a[0].dtype)
    target = jnp
    for p in parts:
        target = getattr(target, p, None)
        if target is None:
            return None
    if not callable(target):
        return None
    return lambda a, k: target(*a, **k)


def _key(key):
    """A NumPy index as JAX takes it: lists and ranges become integer arrays."""
    if isinstance(key, tuple):
        return tuple(_key(k) for k in key)
    if isinstance(key, (list, range)):
        return np.asarray(key)
    return key


def _floating(value) -> bool:
    return np.asarray(value).dtype.kind in "fc"


def _float64(value):
    try:
        a = np.asarray(value)
    except TypeError:                  # JAX's PRNG keys: no NumPy array, taken as they are
        return value
    if a.dtype.kind == "f":
        return a.astype(np.float64)
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    return np.array(a, copy=True) if isinstance(value, np.ndarray) else value


def _ancestors(rec: Recording, sinks) -> list[int]:
    want = set(sinks)
    out = []
    for n in reversed(rec.nodes):
        if any(o in want for o in n.outs):
            out.append(n.index)
            want.update(n.refs)
    return out[::-1]


def _replay(rec, needed, env, jnp, *, check=False, bumps=None):
    """Replay every needed node (an index of ``rec.nodes``, or a node: a part of a
    decomposition) over ``env`` (id → value); with ``check``, the gate."""
    for i in needed:
        node = rec.nodes[i] if isinstance(i, int) else i
        fn = namesake(node, jnp)
        if fn is None:
            return env, (f"the replay could not reproduce `{node.op}` ({node.at()}): "
                         f"jax.numpy has no namesake of it")
        args = map_refs(node.args, lambda r: env[r.id])
        kwargs = {k: v for k, v in map_refs(dict(node.kwargs), lambda r: env[r.id]).items()
                  if k not in ("out", "casting", "order", "subok", "optimize")}
        try:
            result = fn(tuple(args), kwargs)
        except Exception as e:  # noqa: BLE001 - named as the operation not reproduced
            return env, (f"the replay could not reproduce `{node.op}` ({node.at()}): "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(outs) != len(node.outs):
            return env, (f"the replay of `{node.op}` ({node.at()}) gave {len(outs)} results, "
                         f"the run {len(node.outs)}")
        for o, t in zip(node.outs, outs):
            if check:
                bad = _differs(rec, o, t)
                if bad:
                    return env, (f"the replay could not reproduce `{node.op}` ({node.at()}): "
                                 f"{bad}")
            if bumps and o in bumps:
                t = t + bumps[o]
            env[o] = t
    return env, ""


def _differs(rec: Recording, v: int, replayed) -> str:
    try:
        run = np.asarray(rec.values.get(v))
    except TypeError:                  # JAX's PRNG keys: replayed from the run's own
        return ""
    a = np.asarray(replayed)
    info = rec.info[v]
    if a.shape != run.shape:
        return f"shape {a.shape}, the run's {run.shape}"
    if not info.floating:
        return "" if np.array_equal(a, run) else "its values differ from the run's"
    if a.size == 0:
        return ""
    a64 = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    b64 = run.astype(np.complex128 if run.dtype.kind == "c" else np.float64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    finite = np.isfinite(b64)
    if np.any(~same & ~(finite & np.isfinite(a64))):
        return "its infinities or NaNs differ from the run's"
    if not finite.any():
        return ""
    scale = float(np.max(np.abs(b64[finite])))
    err = float(np.max(np.abs((a64 - b64)[finite])))
    tol = FIDELITY.get(info.dtype, 5e-2)
    if not err <= tol * max(scale, 1e-30):
        return f"differs from the run's value by {err:.3g} (scale {scale:.3g})"
    return ""


def check_numpy(backward, seed: int = 0, budget: int = CHECK_ELEMENTS) -> CellCheck:
    """Check the backward of a NumPy record against ``jax.vjp`` (see the module doc)."""
    if importlib.util.find_spec("jax") is None:
        return CellCheck("UNCHECKED", (), "JAX is not available (the NumPy cell's reference "
                         "is jax.vjp of its replay)", seed, framework="jax")
    import jax
    import jax.numpy as jnp

    rec: Recording = backward.recording
    prog = backward.program
    needed = _ancestors(rec, prog.sinks)
    size = sum(int(np.prod(rec.info[o].shape)) for n in needed for o in rec.nodes[n].outs)
    if size > budget:
        return CellCheck("UNCHECKED", (), f"the replay would recompute {size} elements, over "
                         f"the check's budget of {budget}", seed, framework="jax")
    leaves = sorted({r for n in needed for r in rec.nodes[n].refs
                     if rec.info[r].producer is None})
    with jax.enable_x64(True):
        base = {v: _float64(rec.values[v]) for v in leaves}
        for v in leaves:
            if rec.info[v].floating:
                base[v] = jnp.asarray(base[v])
        env, bad = _replay(rec, needed, dict(base), jnp, check=True)
        if not bad and prog.parts:     # the values of decompositions' parts (the calls they
            env, bad = _replay(rec, list(prog.parts), env, jnp)     # make up passed the gate)
        if bad:
            return CellCheck("UNCHECKED", (), bad, seed, framework="jax")
        rng = np.random.default_rng(seed)
        cots = {}
        for s in prog.sinks:
            shape = rec.info[s].shape
            cots[s] = np.float64(1.0) if not shape else rng.standard_normal(shape)
        derived = [v for v in prog.derived if rec.info[v].floating]
        inputs = [v for v in derived if rec.info[v].producer is None]
        recorded = {o for n in rec.nodes for o in n.outs}     # (parts of decompositions:
        inner = [v for v in derived if v in recorded]            # only through what they make up)
        live = [s for s in prog.sinks if s in env]

        def forward(xs, bs):
            start = dict(base)
            start.update(zip(inputs, xs))
            out, _ = _replay(rec, needed, start, jnp, bumps=dict(zip(inner, bs)))
            return tuple(jnp.asarray(out[s]) for s in live)

        primals = [jnp.asarray(base[v]) for v in inputs]
        zeros = [jnp.zeros(rec.info[v].shape, dtype=env[v].dtype) for v in inner]
        if live and (primals or zeros):
            _, pull = jax.vjp(forward, primals, zeros)
            gx, gb = pull(tuple(jnp.asarray(cots[s], dtype=jnp.asarray(env[s]).dtype)
                                for s in live))
        else:
            gx, gb = [None] * len(inputs), [None] * len(inner)
        want = {}
        for v, gr in zip(inputs + inner, list(gx) + list(gb)):
            want[v] = np.zeros(rec.info[v].shape) if gr is None else np.asarray(gr)
        values = {v: np.asarray(env[v]) for v in prog.reads if v in env}
    values.update({v: np.asarray(base[v]) for v in prog.reads if v not in values and v in base})
    for v in prog.reads:                      # read, but not upstream of a sink
        if v not in values:
            values[v] = _float64(rec.values[v])
    got = backward.execute(values, {s: cots[s] for s in prog.sinks})
    return verdict(backward, got, want, inputs + inner, seed, framework="jax")
