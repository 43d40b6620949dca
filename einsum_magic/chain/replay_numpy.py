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

At kinks the reference is JAX's: :mod:`einsum_magic.chain.rules.numpy` writes the same
subgradients (``maximum`` halves a tie, ``abs`` passes ``+g`` at 0).

**Without JAX** (not installed, failing to import or at run time: the check's one policy,
:func:`einsum_magic.check.policy.plan`, as for an einsum), :func:`adjoint_numpy` checks
instead with NumPy alone, and the summary says so and why:

1. **Replay** in NumPy: every needed node's own NumPy function (``node.func``) called again
   on float64 copies (narrower float dtypes given to a call made float64; an in-place call
   works on a copy of its target), behind the same fidelity gate.
2. **Adjoint test** of every derived gradient ``g_v = J_vᵀ u`` (``u``: the same seeded
   cotangents): for a seeded random direction ``d`` of the value's shape,
   ``<u, J_v d> == <g_v, d>``, with ``J_v d`` the central finite difference
   ``(f(x + t d) - f(x - t d)) / 2t`` of the replay from that value on (an input replaced,
   an intermediate moved where its node computed it); each element of ``t d`` is about
   :data:`STEP` of its own magnitude (values of very different sizes in one array move
   each by its own), or of :data:`CONTEXT` times the largest magnitude it is added to in
   the calls that read it, so that a value near 0 added to larger ones still moves them,
   and at least :data:`SPREAD` of the largest element's step. A value whose nonzero
   magnitudes span more than ``SPREAD²`` (``exp`` of large values) is "not checked".
   Its error is ``t² |f⁽³⁾| / 6`` (truncation) plus about ``ε |f| / t`` (rounding), both
   near 1e-10 of the terms for steps of moderate curvature, so it passes within
   :data:`ADJOINT_RTOL` (1e-6) of the magnitude of the terms on either side (``Σ|u||J d|``,
   ``Σ|g||d|``) plus :data:`ADJOINT_FLOOR` of the cell's largest such magnitude (a
   gradient that is zero in exact arithmetic is rounding noise, as for the references). A
   wrong rule moves ``<g_v, d>`` by the order of its terms and FAILs; one that moves less
   than about 1e-6 of the gradient's mass (one wrong element among millions) is below the
   test's resolution.
3. **Kinks**: where a step is not smooth along ``t d`` (``abs`` at 0, a reduction's tie, a
   step crossing a kink) the one-sided differences ``(f(x + t d) - f(x)) / t`` and
   ``(f(x) - f(x - t d)) / t`` disagree by more than :data:`KINK`, and by about as much at
   a step ten times longer (a smooth step's spread, its curvature, grows with the step: at
   a stationary point, where the gradient is 0, it is all there is); such a gradient is "not
   checked" (the verdict PARTIAL: never PASS, and never a FAIL of a right subgradient). So
   is a complex value (the test pairs real directions).
"""

from __future__ import annotations

import math

import numpy as np

from ..check.jax import import_jax
from ..check.records import GradCheck
from .report import (CHECK_ELEMENTS, FIDELITY, bind_results, cell_report, not_derived, replayed,
                     verdict)
from .record import Recording, Ref, map_refs

__all__ = ["check_numpy", "adjoint_numpy", "namesake", "STEP", "CONTEXT", "SPREAD",
           "ADJOINT_RTOL", "ADJOINT_FLOOR", "KINK", "SMOOTH", "ADJOINT_ELEMENTS"]

#: The finite difference's step, relative to the largest magnitude of the value it moves.
STEP = 1e-6

#: Tolerance of the adjoint test, relative to the magnitude of the terms of either side.
ADJOINT_RTOL = 1e-6

#: Absolute floor of the adjoint test, relative to the cell's largest magnitude of terms.
ADJOINT_FLOOR = 1e-8

#: The step's floor, relative to the largest magnitude the moved value meets in the calls that
#: read it: a value near 0 added to larger ones (``x - x.mean()``, a centred mean) moves by
#: enough to survive the rounding of the sum.
CONTEXT = 0.1

#: The smallest step of an element, relative to the largest of its array's: every element
#: moves, an exact 0 (at ``abs``'s kink, say) too.
SPREAD = 1e-3

#: One-sided differences apart by more than this (relative, as the tolerance): a kink.
KINK = 1e-3

#: ... unless a step ten times longer moves them this much further apart: a smooth
#: curvature (a kink's spread stays the same).
SMOOTH = 5.0

#: How many times a failing adjoint test retries with a ten times shorter step: a right
#: gradient of a stiff chain converges, a wrong one does not (see :func:`adjoint_numpy`).
REFINE = 3

#: Budget of the adjoint test: elements its replays recompute, all together, per element
#: of the check's budget (two replays from each derived value on).
ADJOINT_ELEMENTS = 16

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


class _Unreplayable(Exception):
    """A node the replay cannot call again (the message says why)."""


def _outs(result) -> list:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def _on_jax(jnp):
    """The JAX replay's call of one node: its ``jax.numpy`` namesake (:func:`namesake`)."""
    def call(node, env) -> list:
        fn = namesake(node, jnp)
        if fn is None:
            raise _Unreplayable("jax.numpy has no namesake of it")
        args = map_refs(node.args, lambda r: env[r.id])
        kwargs = {k: v for k, v in map_refs(dict(node.kwargs), lambda r: env[r.id]).items()
                  if k not in ("out", "casting", "order", "subok", "optimize")}
        return _outs(fn(tuple(args), kwargs))

    return call


def _in_numpy(node, env) -> list:
    """The NumPy replay's call of one node: its own function again, in float64, an in-place
    call on a copy of its target."""
    func = getattr(node.func, "__wrapped__", node.func)
    if func is None:
        raise _Unreplayable("the run gives no function to call again")
    target = node.refs[0] if node.inplace and node.refs else None
    copy = np.array(env[target], copy=True) if target is not None else None

    def value(r: Ref):
        return copy if r.id == target else env[r.id]

    args = _wide_numpy(map_refs(node.args, value))
    if node.op == "numpy.ndarray.astype" and len(args) > 1:
        args = (args[0], _wide_numpy({"dtype": args[1]})["dtype"], *args[2:])
    result = func(*args, **_wide_numpy(map_refs(dict(node.kwargs), value)))
    return [copy] if target is not None and result is None else _outs(result)


def _replay(rec, needed, env, call, *, check=False, bumps=None, start: int = 0):
    """Replay the needed nodes from position ``start`` over ``env`` (id → value), each by
    ``call(node, env)`` (:func:`_on_jax`, :func:`_in_numpy`; ``needed``: indices of
    ``rec.nodes``, or nodes); ``bumps`` added to the values
    they name; with ``check``, the fidelity gate. ``(env, '' or why it stopped)``."""
    for i in needed[start:]:
        node = rec.nodes[i] if isinstance(i, int) else i     # a node: a decomposition's part
        try:
            outs = call(node, env)
        except _Unreplayable as e:
            return env, f"the replay could not reproduce `{node.op}` ({node.at()}): {e}"
        except Exception as e:  # noqa: BLE001 - named as the operation not reproduced
            return env, (f"the replay could not reproduce `{node.op}` ({node.at()}): "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        bad = bind_results(node, outs, env, bumps=bumps,
                           gate=(lambda o, t: _differs(rec, o, t)) if check else None)
        if bad:
            return env, bad
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
    err = float(np.max(np.abs(a64[finite] - b64[finite])))   # not inf - inf: no warning
    tol = FIDELITY.get(info.dtype, 5e-2)
    if not err <= tol * max(scale, 1e-30):
        return f"differs from the run's value by {err:.3g} (scale {scale:.3g})"
    return ""


def _values_and_gradients(backward, env, base, seed: int):
    """The seeded cotangents and the derived gradients: the backward lines run with NumPy on
    the replay's float64 values (those not upstream of a sink: the run's, in float64)."""
    rec, prog = backward.recording, backward.program
    rng = np.random.default_rng(seed)
    cots = {}
    for s in prog.sinks:
        shape = rec.info[s].shape
        cots[s] = np.float64(1.0) if not shape else rng.standard_normal(shape)
    values = {v: np.asarray(env[v]) for v in prog.reads if v in env}
    values.update({v: np.asarray(base[v]) for v in prog.reads if v not in values and v in base})
    for v in prog.reads:                      # read, but not upstream of a sink
        if v not in values:
            values[v] = _float64(rec.values[v])
    return cots, backward.execute(values, {s: cots[s] for s in prog.sinks})


def _derived(backward):
    """(inputs, intermediates): the floating values whose gradients are derived."""
    rec, prog = backward.recording, backward.program
    derived = [v for v in prog.derived if rec.info[v].floating]
    recorded = {o for n in rec.nodes for o in n.outs}   # (parts of decompositions: only
    return ([v for v in derived if rec.info[v].producer is None],   # through what they
            [v for v in derived if v in recorded])                    # make up)


def check_numpy(backward, seed: int = 0, budget: int = CHECK_ELEMENTS):
    """Check the backward of a NumPy record against ``jax.vjp`` (see the module doc).

    JAX is imported on first use (:func:`einsum_magic.check.jax.import_jax`); without it
    this raises, and :func:`~einsum_magic.chain.check.check_program` (the policy) has
    :func:`adjoint_numpy` check instead.
    """
    rec: Recording = backward.recording
    prog = backward.program
    needed, sizes = replayed(rec, prog.sinks)
    size = sum(sizes)
    if size > budget:             # before importing JAX: an unchecked cell never pays for it
        return cell_report((), "jax autograd", seed=seed, status="UNCHECKED",
                           reason=f"the replay would recompute {size} elements, over the "
                           f"check's budget of {budget}")
    jax, jnp = import_jax()
    leaves = sorted({r for n in needed for r in rec.nodes[n].refs
                     if rec.info[r].producer is None})
    with jax.enable_x64(True):
        base = {v: _float64(rec.values[v]) for v in leaves}
        for v in leaves:
            if rec.info[v].floating:
                base[v] = jnp.asarray(base[v])
        env, bad = _replay(rec, needed, dict(base), _on_jax(jnp), check=True)
        if not bad and prog.parts:     # the values of decompositions' parts (after the
            env, bad = _replay(rec, list(prog.parts), env, _on_jax(jnp))   # calls they make
                                                                           # up passed the gate)
        if bad:
            return cell_report((), "jax autograd", seed=seed, status="UNCHECKED", reason=bad)
        inputs, inner = _derived(backward)
        live = [s for s in prog.sinks if s in env]
        cots, got = _values_and_gradients(backward, env, base, seed)

        def forward(xs, bs):
            start = dict(base)
            start.update(zip(inputs, xs))
            out, _ = _replay(rec, needed, start, _on_jax(jnp), bumps=dict(zip(inner, bs)))
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
    return verdict(backward, got, want, inputs + inner, seed, framework="jax")


# -- without JAX: NumPy's adjoint test of a NumPy replay -------------------------------------


#: Calls that add their operands: a value near 0 they read moves with what it meets there.
_ADDING = frozenset({"add", "subtract", "__add__", "__radd__", "__iadd__", "__sub__",
                     "__rsub__", "__isub__"})


def _adds(node) -> bool:
    return node.op.rsplit(".", 1)[-1] in _ADDING


def adjoint_numpy(backward, seed: int = 0, budget: int = CHECK_ELEMENTS, *,
                  fallback: str = ""):
    """Check the backward of a NumPy record with NumPy alone: the adjoint test of every
    derived gradient against central finite differences of a NumPy replay (see the module
    doc). ``fallback`` says why JAX was not used (the summary's end).

    The same report as the JAX check's, its reference ``"adjoint"``: rows ``against``
    ``"adjoint test"``, whose ``max_abs_error`` is ``|<u, J d> - <g, d>|`` and ``scale`` the
    magnitude of the terms it is measured against.
    """
    rec: Recording = backward.recording
    prog = backward.program

    def unchecked(reason: str):
        return cell_report((), "adjoint", seed=seed, status="UNCHECKED", reason=reason,
                           fallback=fallback)

    needed, sizes = replayed(rec, prog.sinks)
    if sum(sizes) > budget:
        return unchecked(f"the replay would recompute {sum(sizes)} elements, over the "
                         f"check's budget of {budget}")
    leaves = sorted({r for n in needed for r in rec.nodes[n].refs
                     if rec.info[r].producer is None})
    base = {v: _float64(rec.values[v]) for v in leaves}
    env, bad = _replay(rec, needed, dict(base), _in_numpy, check=True)
    if bad:
        return unchecked(bad)
    inputs, inner = _derived(backward)
    ids = inputs + inner
    live = [s for s in prog.sinks if s in env]
    cots, got = _values_and_gradients(backward, env, base, seed)
    # the replay of a moved value starts at the first needed node that reads it
    readers = {v: [k for k, n in enumerate(needed) if v in rec.nodes[n].refs] for v in ids}
    first = {v: (readers[v] or [len(needed)])[0] for v in ids}
    tails = np.cumsum([0] + sizes[::-1])[::-1].tolist()     # elements from position k on
    work = sum(2 * tails[first[v]] for v in ids)
    if work > ADJOINT_ELEMENTS * budget:
        return unchecked(f"the adjoint test would recompute {work} elements, over its budget "
                         f"of {ADJOINT_ELEMENTS * budget}")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    here = [np.asarray(env[s], dtype=np.float64) for s in live]
    u = [np.asarray(cots[s], dtype=np.float64) for s in live]
    sides = {}
    for v in ids:
        x = np.asarray(env[v])
        d = rng.standard_normal(x.shape)
        g = got.get(v)
        if x.dtype.kind == "c" or np.iscomplexobj(g):
            sides[v] = "a complex value: the adjoint test pairs real directions only"
            continue
        if g is None or np.shape(g) != x.shape:
            sides[v] = f"shape {np.shape(g)} != {x.shape}"
            continue
        g = np.asarray(g, dtype=np.float64)
        # each element moves relative to its own magnitude (values of very different sizes
        # in one array: exp's), or to CONTEXT of what it is added to (a value near 0 added
        # to larger ones); the direction carries the relative sizes, t the largest
        met = max([_magnitude(env[r]) for k in readers[v] if _adds(rec.nodes[needed[k]])
                   for r in rec.nodes[needed[k]].refs
                   if r != v and rec.info[r].floating] or [0.0])
        w = np.maximum(np.abs(x.astype(np.float64)), CONTEXT * met)
        top = float(w.max()) if w.size else 0.0
        if not (top > 0 and math.isfinite(top)):
            w, top = np.ones(x.shape), 1.0
        small = (w > 0) & (w < SPREAD * SPREAD * top)
        if small.any():
            sides[v] = (f"its magnitudes span more than {round(-2 * math.log10(SPREAD))} "
                        "orders (one step cannot suit them all)")
            continue
        w = np.maximum(w, SPREAD * top)          # every element moves (a 0 at a kink too)
        d = d * (w / top)
        t = STEP * top

        def steps(t):
            """``(<u, J d> by central differences, the one-sided differences' spread)``."""
            moved = []
            for sign in (1.0, -1.0):
                out, bad = _moved(rec, needed, env, v, sign * t * d, first[v])
                if bad:
                    raise _Unreplayable(bad)
                moved.append([np.asarray(out[s], dtype=np.float64) for s in live])
            plus, minus = moved
            lhs = sum(float(np.sum(c * (p - m))) for c, p, m in zip(u, plus, minus)) / (2 * t)
            ahead = sum(float(np.sum(c * (p - h))) for c, p, h in zip(u, plus, here)) / t
            behind = sum(float(np.sum(c * (h - m))) for c, m, h in zip(u, minus, here)) / t
            scale = sum(float(np.sum(np.abs(c * (p - m)))) for c, p, m in zip(u, plus, minus))
            return lhs, abs(ahead - behind), scale / (2 * t)

        try:
            lhs, spread, moved = steps(t)
            rhs = float(np.sum(g * d))
            scale = max(moved, float(np.sum(np.abs(g * d))))
            if spread > KINK * scale and math.isfinite(spread):
                # A kink's spread stays as the step grows (the same jump of slopes); a
                # smooth step's (its curvature, all there is at a stationary point, where
                # the gradient is 0) grows with it, and rounding matters less.
                _, wider, _ = steps(10 * t)
                if wider > SMOOTH * spread:
                    spread = 0.0
            # Central differences err by the curvature, as t² (a stiff chain: exp of exp):
            # where the test fails, a shorter step tells. A right gradient's error shrinks
            # with it (tenfold at least per tenfold shorter step), a wrong one's stays.
            shorter = t
            for _ in range(REFINE):
                err = abs(lhs - rhs)
                if not err > ADJOINT_RTOL * scale:
                    break
                shorter /= 10
                lhs2, spread2, _ = steps(shorter)
                if not abs(lhs2 - rhs) < err / 10:
                    break
                lhs, spread = lhs2, min(spread, spread2)
        except _Unreplayable as e:
            return unchecked(str(e))
        if not all(math.isfinite(z) for z in (lhs, rhs, scale, spread)):
            sides[v] = "the finite differences are not finite (a step out of the domain)"
            continue
        sides[v] = (lhs, rhs, scale, spread)
    floor = ADJOINT_FLOOR * max([s[2] for s in sides.values() if not isinstance(s, str)
                                 and math.isfinite(s[2])] or [0.0])
    rows = [_adjoint_row(backward, v, sides[v], floor) for v in ids]
    cut_rows, cut = not_derived(backward)
    skipped = [r.target for r in rows if r.status == "not checked"]
    reason = "; ".join(filter(None, [cut, ("the adjoint test could not judge "
                                           + ", ".join(skipped)) if skipped else ""]))
    return cell_report(rows + cut_rows, "adjoint", seed=seed, cut=reason, fallback=fallback)


def _magnitude(x) -> float:
    a = np.asarray(x)
    return float(np.max(np.abs(a))) if a.size and a.dtype.kind in "fc" else 0.0


def _adjoint_row(backward, v, side, floor: float) -> GradCheck:
    """The adjoint test's row of value ``v``: ``side`` is ``(<u, J d>, <g, d>, scale, the
    one-sided differences' spread)``, or why the test cannot judge it (a shape that differs
    is a FAIL)."""
    name = backward.names.name[v]
    grad, shape = backward.program.grad_names[v], backward.recording.info[v].shape
    row = dict(shape=shape, against="adjoint test")
    if isinstance(side, str):
        wrong_shape = side.startswith("shape ")
        return GradCheck(grad, name, "", False, math.nan, math.nan, math.nan, ADJOINT_RTOL,
                         floor, side, skipped="" if wrong_shape else side, **row)
    lhs, rhs, scale, spread = side
    err = abs(lhs - rhs)
    rel = 0.0 if err == 0 else (err / scale if scale > 0 else math.inf)
    if spread > KINK * scale + floor:
        why = "not smooth along the test's direction (the one-sided differences disagree)"
        return GradCheck(grad, name, "", False, err, rel, math.nan, ADJOINT_RTOL, floor, why,
                         scale=scale, skipped=why, **row)
    passed = err <= ADJOINT_RTOL * scale + floor
    message = "" if passed else (f"fails the adjoint test: <u, J d{name}> = {lhs:.6g} by "
                                 f"finite differences but <{grad}, d{name}> = {rhs:.6g}")
    return GradCheck(grad, name, "", passed, err, rel, math.nan, ADJOINT_RTOL, floor, message,
                     scale=scale, **row)


def _wide_numpy(obj, key=None):
    """``obj`` (a call's arguments) with a narrower floating dtype made float64 (complex128):
    dtypes and scalar types anywhere, strings as ``dtype=``."""
    if isinstance(obj, tuple):
        return tuple(_wide_numpy(o) for o in obj)
    if isinstance(obj, list):
        return [_wide_numpy(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _wide_numpy(v, k) for k, v in obj.items()}
    if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)) \
            or (key == "dtype" and isinstance(obj, str)):
        try:
            dt = np.dtype(obj)
        except TypeError:
            return obj
        if dt.kind == "f" and dt.itemsize < 8:
            return np.float64
        if dt.kind == "c" and dt.itemsize < 16:
            return np.complex128
    return obj


def _moved(rec, needed, env, v, step, start: int):
    """The replay from position ``start`` of ``needed`` on, with value ``v`` moved by
    ``step``: an input replaced, an intermediate as if its node had computed it so."""
    moved = dict(env)
    moved[v] = np.asarray(env[v]) + step
    return _replay(rec, needed, moved, _in_numpy, start=start)
