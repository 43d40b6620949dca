"""The JAX recorder: every primitive the run binds eagerly, through JAX's evaluation trace.

This module owns the arrow *a JAX run → nodes of the record*
(:class:`~einsum_magic.chain.record.Recording`). Every eager JAX operation ends in one
primitive bound on JAX's evaluation trace: ``x[0]`` binds ``slice`` and ``squeeze``, a
``jax.numpy`` function or a ``jax.jit``-ed function of the user's binds one ``jit`` with
its jaxpr, ``vmap`` binds the batched primitives. Each becomes one node, named
``jax.lax.<primitive name>`` (``jax.lax.dot_general``, ``jax.lax.jit``), with the
primitive's params as its keyword arguments and the primitive itself as ``func``, so that
a check replays it with ``func.bind(*args, **kwargs)``.

What becomes what:

* a primitive with an array among its inputs is a node; its array results are its outs;
* a ``jit`` node is kept whole while the cell runs (the user's result is the compiled
  call's, bit for bit); after the run, one on a path to a sink is decomposed into the
  equations of its jaxpr (:func:`decompose`), evaluated one by one on the recorded inputs
  so that every part's value is known, nested ``jit`` calls inlined;
* a ``custom_jvp`` function called eagerly (``jax.nn.relu``) is one
  ``jax.lax.custom_jvp_call`` node, as it is inside a jaxpr: traced once into that one
  equation (``call_jaxpr``, ``jvp_jaxpr_fun``, ``name``), evaluated, kept whole: its rule
  is the function's own derivative (relu's gradient at 0 is 0, as in JAX);
* results of primitives without array inputs (``jnp.ones``, ``iota``) are leaves; random
  draws are nodes of integer keys, never differentiated (no floating input leads to them);
* ``stop_gradient`` is a node whose rule passes nothing back.

JAX internals, guarded (:func:`unavailable` says why not, in one line, and then nothing
is patched and a cell that computes JAX arrays says so instead of a cell backward):

* ``jax._src.core.EvalTrace.process_primitive`` and ``.process_custom_jvp_call`` are
  wrapped while the block runs and restored after it, also on an error or an interrupt;
* a jitted call made eagerly runs its compiled jaxpr without binding ``jit``:
  ``jax._src.pjit._run_python_pjit`` is wrapped to see it (the call's params, flat
  arguments and results); and its C++ fast path never comes back to Python once it has
  run: while the block runs, :func:`jax.make_user_context` (public) keys JAX's jit caches
  apart (a function already traced outside is traced again once, inside, and a ``print``
  in it runs then), and ``jax._src.pjit._get_fastpath_data`` is wrapped to give no fast
  path, so that every call comes back to Python.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np

from ..names import READERS
from ..record import Recorder, Recording, Ref, cell_line, renamed

__all__ = ["JaxRecorder", "unavailable", "describe", "decompose", "product_of", "is_einsum",
           "SUPPORTED"]

READERS.setdefault("jax", ("np.asarray({})", np.asarray))

#: JAX versions whose internals this recorder was written against: [low, high).
SUPPORTED = ((0, 7, 0), (0, 11, 0))

#: The recorder observing now (one at a time; a nested block takes over and gives back).
_ACTIVE: list = [None]
_CONTEXT: list = []          # the user context keying JAX's jit caches apart, made once
_RECORDING = "einsum_magic.chain.recorders.jax"


def unavailable(version: tuple | None = None) -> str:
    """Why JAX operations cannot be recorded with this JAX (``''`` when they can).

    ``version``: the version to judge (default: the installed one's ``__version_info__``).

    >>> unavailable((0, 4, 1))
    'JAX 0.4.1 is outside the versions whose internals the recorder observes (0.7.0 to 0.11.0, exclusive)'
    """
    try:
        import jax
    except Exception as e:  # noqa: BLE001 - any failure to import is said, not raised
        return f"JAX failed to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"

    version = tuple(version if version is not None else getattr(jax, "__version_info__", ()))
    low, high = SUPPORTED
    if not version or not (low <= version[:3] < high):
        shown = ".".join(map(str, version)) or "of unknown version"
        return (f"JAX {shown} is outside the versions whose internals the recorder observes "
                f"({'.'.join(map(str, low))} to {'.'.join(map(str, high))}, exclusive)")
    try:
        from jax._src import core, pjit
    except ImportError as e:
        return f"this JAX lacks the internals the recorder observes ({e})"
    trace = getattr(core, "EvalTrace", None)
    missing = [name for owner, name in ((trace, "process_primitive"),
                                        (trace, "process_custom_jvp_call"),
                                        (pjit, "_get_fastpath_data"),
                                        (pjit, "_run_python_pjit"),
                                        (jax, "make_user_context"))
               if owner is None or not callable(getattr(owner, name, None))]
    if not hasattr(getattr(pjit, "jit_p", None), "bind"):
        missing.append("jit_p")
    if missing:
        return f"this JAX lacks the internals the recorder observes ({', '.join(missing)})"
    return ""


def describe(a):
    """(shape, dtype, floating, nbytes, memory key) of a JAX (or NumPy) array."""
    shape = tuple(getattr(a, "shape", ()))
    dtype = getattr(a, "dtype", None)
    try:
        kind = np.dtype(dtype).kind
        floating = kind in "fc" or str(dtype) in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
    except TypeError:                     # PRNG keys and other extended dtypes
        floating = False
    try:
        nbytes = int(a.nbytes)
    except Exception:  # noqa: BLE001 - extended dtypes have no nbytes
        nbytes = 0
    return shape, str(dtype), floating, nbytes, id(a)


def _is_array(x) -> bool:
    import jax

    return isinstance(x, (jax.Array, np.ndarray))


class JaxRecorder(Recorder):
    """Records every primitive the run binds eagerly into ``rec`` (see the module doc).

    A context manager; where :func:`unavailable` gives a reason, it patches nothing and,
    on leaving, stops the record with that reason if the cell left a new JAX array in
    its namespace.
    """

    def __init__(self, rec: Recording):
        self.rec = rec
        self.busy = False
        self.thread = threading.get_ident()
        self.why = ""
        self._restore: list = []

    # -- entering and leaving --------------------------------------------------------------

    def _start(self) -> None:
        self.why = unavailable()
        self._before = {k: id(v) for k, v in self.rec.namespace.items()}
        if self.why:
            return
        import jax
        from jax._src import core, pjit

        if not _CONTEXT:
            _CONTEXT.append(jax.make_user_context(None))
        context = _CONTEXT[0](_RECORDING)
        context.__enter__()
        self._restore.append(lambda: context.__exit__(None, None, None))
        self._patch(core.EvalTrace, "process_primitive", _process_primitive)
        self._patch(core.EvalTrace, "process_custom_jvp_call", _process_custom_jvp_call)
        self._patch(pjit, "_get_fastpath_data", _no_fastpath)
        self._patch(pjit, "_run_python_pjit", _run_python_pjit)
        self._previous = _ACTIVE[0]
        _ACTIVE[0] = self
        self._restore.append(self._deactivate)
        self.rec.observed.add("jax")
        me = weakref.ref(self)               # (held weakly: no cycle keeps the record alive)

        def release():                       # stopped for any reason: JAX runs as without it
            recorder = me()
            if recorder is not None:
                recorder.release()

        self.rec.on_stop(release)

    def __exit__(self, *exc) -> bool:
        self._exit()
        if self.why and not self.rec.stopped:
            new = _new_jax_array(self.rec.namespace, self._before)
            if new:
                self.rec.stop(f"JAX operations are not recorded ({new} is a JAX array the "
                              f"cell computed): {self.why}")
        return False

    def release(self) -> None:
        """The record stopped: put everything back now, so that the rest of the run costs
        what it would without the magic (:meth:`__exit__` finds nothing left to do)."""
        self._exit()

    def _patch(self, owner, name, wrapper) -> None:
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        current = getattr(owner, name)
        if current is not wrapper:          # a nested recorder meets the outer one's patch:
            _ORIGINALS[name] = current      # what that patch calls stays JAX's own
        setattr(owner, name, wrapper)
        self._restore.append(lambda: setattr(owner, name, original))

    def _deactivate(self) -> None:
        _ACTIVE[0] = self._previous

    def _exit(self) -> None:
        while self._restore:
            undo = self._restore.pop()
            try:
                undo()
            except Exception:  # noqa: BLE001 - restore the rest whatever one does
                pass

    # -- recording ---------------------------------------------------------------------------

    def observes(self, trace) -> bool:
        from jax._src import core

        return (not self.busy and not self.rec.stopped and type(trace) is core.EvalTrace
                and threading.get_ident() == self.thread)

    def record(self, prim, args, params, outs) -> None:
        rec = self.rec
        arrays = [o for o in outs if _is_array(o)]
        if not arrays:
            return
        ins = [a for a in args if _is_array(a)]
        if not ins:                                # jnp.ones, iota: the run's values
            rec.leaf(arrays, "jax", describe)
            return
        if any(o is a for o in arrays for a in ins):
            return                                 # returns its input: identity kept
        line, where = cell_line(rec.namespace, 1)
        refs = rec.refs_of(ins, "jax", describe)
        it = iter(refs)
        conv = [next(it) if _is_array(a) else a for a in args]
        op = f"jax.lax.{prim.name}"
        name = params.get("name") if isinstance(params.get("name"), str) else ""
        rec.record("jax", op, prim, conv, dict(params), arrays, describe, line=line,
                   where=where, refs=tuple(r.id for r in refs),
                   count_as=f"{op}:{name}" if name else op)
        if rec.stopped:
            self.release()


_ORIGINALS: dict = {}


def _process_primitive(trace, primitive, args, params, /):
    self = _ACTIVE[0]
    original = _ORIGINALS["process_primitive"]
    if self is None or not self.observes(trace):
        return original(trace, primitive, args, params)
    self.busy = True
    try:
        out = original(trace, primitive, args, params)
    finally:
        self.busy = False
    try:
        self.record(primitive, list(args), params,
                    list(out) if primitive.multiple_results else [out])
    except Exception as e:  # noqa: BLE001 - never fail the user's cell
        self.rec.stop(f"the record failed at jax.lax.{primitive.name}: "
                      f"{type(e).__name__}: {e}")
        self.release()
    return out


def _process_custom_jvp_call(trace, primitive, fun, jvp, tracers, /, **params):
    self = _ACTIVE[0]
    original = _ORIGINALS["process_custom_jvp_call"]
    if self is None or not self.observes(trace):
        return original(trace, primitive, fun, jvp, tracers, **params)
    import jax
    from jax._src import core

    self.busy = True
    try:
        try:          # the one equation a jaxpr would hold: call_jaxpr, jvp_jaxpr_fun, name
            avals = [jax.ShapeDtypeStruct(np.shape(t), t.dtype) for t in tracers]
            closed = jax.make_jaxpr(lambda *xs: primitive.bind(
                *xs, subfuns=(fun, jvp), **params))(*avals)
            (eqn,) = closed.jaxpr.eqns
            assert eqn.primitive is primitive
        except Exception as e:  # noqa: BLE001 - said, never hidden
            self.rec.stop(f"the record could not trace the custom_jvp function it met: "
                          f"{type(e).__name__}: {e}")
            self.release()
            return original(trace, primitive, fun, jvp, tracers, **params)
        out = core.eval_jaxpr(closed.jaxpr, closed.consts, *tracers)
    finally:
        self.busy = False
    try:
        self.record(primitive, list(tracers), dict(eqn.params), list(out))
    except Exception as e:  # noqa: BLE001 - never fail the user's cell
        self.rec.stop(f"the record failed at jax.lax.custom_jvp_call: {type(e).__name__}: {e}")
        self.release()
    return out


def _run_python_pjit(p, args_flat, fun, args, kwargs):
    """A jitted call made eagerly: JAX runs its compiled jaxpr without binding ``jit``."""
    self = _ACTIVE[0]
    original = _ORIGINALS["_run_python_pjit"]
    from jax._src import core

    if self is None or self.busy or self.rec.stopped or not core.trace_state_clean() \
            or threading.get_ident() != self.thread:
        return original(p, args_flat, fun, args, kwargs)
    self.busy = True
    try:
        result = original(p, args_flat, fun, args, kwargs)
    finally:
        self.busy = False
    try:
        from jax._src import pjit

        self.record(pjit.jit_p, list(result[3]), dict(p.params), list(result[1]))
    except Exception as e:  # noqa: BLE001 - never fail the user's cell
        self.rec.stop(f"the record failed at jax.lax.jit: {type(e).__name__}: {e}")
        self.release()
    return result


def _no_fastpath(*args, **kwargs):
    if _ACTIVE[0] is not None:
        return None                   # every jitted call comes back to Python to bind
    return _ORIGINALS["_get_fastpath_data"](*args, **kwargs)


def _new_jax_array(ns: dict, before: dict) -> str:
    """The name of a JAX array the namespace binds that it did not bind before, or ''."""
    import jax

    for key, value in ns.items():
        if (not key.startswith("_") and isinstance(value, jax.Array)
                and before.get(key) != id(value)):
            return key
    return ""


# -- after the run: a jit's equations -------------------------------------------------------

#: Primitives whose equations are inlined by :func:`decompose` (their jaxpr's equations).
CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"})


def _inner_jaxpr(eqn_or_params):
    params = eqn_or_params
    for key in ("jaxpr", "call_jaxpr"):
        j = params.get(key)
        if j is not None:
            return j
    return None


def product_of(node):
    """A ``jit`` node that is one ``dot_general`` of its own arguments (``x @ W``,
    ``jnp.matmul``, ``jnp.dot``: jax.numpy jits them) as that ``dot_general``'s node, with the
    jit's results, or None. Reads the jaxpr only: nothing is evaluated."""
    from ..record import Node

    if node.framework != "jax" or node.op.rsplit(".", 1)[-1] not in CALLS:
        return None
    closed = _inner_jaxpr(node.kw())
    jaxpr = getattr(closed, "jaxpr", closed)
    eqns = getattr(jaxpr, "eqns", None)
    if not eqns or len(eqns) != 1 or eqns[0].primitive.name != "dot_general":
        return None
    (eqn,) = eqns
    if list(eqn.outvars) != list(jaxpr.outvars) or len(jaxpr.invars) != len(node.args):
        return None
    where = {id(v): k for k, v in enumerate(jaxpr.invars)}
    if any(id(v) not in where for v in eqn.invars):
        return None                                  # a literal operand
    args = tuple(node.args[where[id(v)]] for v in eqn.invars)
    return Node(node.index, "jax", "jax.lax.dot_general", eqn.primitive, args,
                tuple(eqn.params.items()), node.outs, node.line, node.where)


#: Primitives of a jitted einsum (``jnp.einsum`` lays its operands out, then contracts).
_EINSUM_PARTS = frozenset({"dot_general", "transpose", "reshape", "convert_element_type",
                           "reduce_sum", "squeeze", "expand_dims", "broadcast_in_dim", "copy"})


def is_einsum(node) -> bool:
    """Whether ``node`` is a ``jit`` that is one einsum and nothing more: ``jnp.einsum``
    (called as it is, or alone in a jitted function of the user's), or one ``dot_general``
    (:func:`product_of`). Reads the jaxpr only."""
    if product_of(node) is not None:
        return True
    if node.framework != "jax" or node.op.rsplit(".", 1)[-1] not in CALLS:
        return False
    named = []

    def linear(params) -> bool:
        closed = _inner_jaxpr(params)
        jaxpr = getattr(closed, "jaxpr", closed)
        for eqn in getattr(jaxpr, "eqns", None) or ():
            name = eqn.primitive.name
            if name in CALLS:
                named.append(str(eqn.params.get("name", "")))
                if not linear(eqn.params):
                    return False
            elif name not in _EINSUM_PARTS:
                return False
        return jaxpr is not None

    named.append(str(node.kw().get("name", "")))
    return linear(node.kw()) and any("einsum" in n for n in named)


def decompose(rec: Recording, node, keep=lambda op, params: False):
    """``node`` (a ``jit`` or an unknown ``custom_jvp_call``) as the equations of its jaxpr,
    or None.

    Each part is a :class:`~einsum_magic.chain.record.Node` with ``op``
    ``jax.lax.<primitive>``, ``func`` the primitive and the equation's params as kwargs,
    at the node's index, line and function; nested calls (:data:`CALLS`) are inlined, and
    so is a ``custom_jvp_call`` unless ``keep(op, params)`` (it has a rule). The parts
    are evaluated one by one on the recorded inputs; the last ones' results take the
    node's own ids, and a decomposition that does not reproduce the node's values is
    refused. Called after the run, only for a node without a rule on a path to a sink.
    """
    try:
        return _decomposed(rec, node, keep)
    except Exception:  # noqa: BLE001 - no decomposition: the node stays opaque
        return None


def _decomposed(rec, node, keep):
    from jax._src import core

    from ..record import Node

    closed = _inner_jaxpr(node.kw())
    if closed is None:
        return None
    args = [rec.values[a.id] if isinstance(a, Ref) else a for a in node.args]
    known = list(node.args)
    parts: list = []

    def run(jaxpr, consts, inputs, values):
        env: dict = {}
        for var, c in zip(jaxpr.constvars, consts):
            if _is_array(c):
                env[var] = (Ref(_constant_leaf(rec, c)), c)
            else:
                env[var] = (c, c)
        for var, k, v in zip(jaxpr.invars, inputs, values):
            env[var] = (k, v)

        def read(atom):
            if isinstance(atom, core.Literal):
                return atom.val, atom.val
            return env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(a) for a in eqn.invars]
            name = eqn.primitive.name
            inner = _inner_jaxpr(eqn.params)
            if inner is not None and (name in CALLS or (
                    name == "custom_jvp_call" and not keep(f"jax.lax.{name}", eqn.params))):
                sub = inner.jaxpr if hasattr(inner, "jaxpr") else inner
                sub_consts = inner.consts if hasattr(inner, "consts") else ()
                outs = run(sub, sub_consts, [k for k, _ in ins], [v for _, v in ins])
                for var, o in zip(eqn.outvars, outs):
                    env[var] = o
                continue
            values_in = [v for _, v in ins]
            result = eqn.primitive.bind(*values_in,
                                        **eqn.primitive.get_bind_params(eqn.params))
            flat = list(result) if eqn.primitive.multiple_results else [result]
            new = [Ref(rec._new(t, "jax", node.index, describe)) for t in flat]
            kargs = tuple(k for k, _ in ins)
            parts.append(Node(node.index, "jax", f"jax.lax.{name}", eqn.primitive, kargs,
                              tuple(eqn.params.items()), tuple(r.id for r in new),
                              node.line, node.where, False,
                              tuple(k.id for k in kargs if isinstance(k, Ref))))
            for var, r, t in zip(eqn.outvars, new, flat):
                env[var] = (r, t)
        return [read(a) for a in jaxpr.outvars]

    outs = run(closed.jaxpr, closed.consts, known, args)
    if len(outs) != len(node.outs):
        return None
    made = {o for p in parts for o in p.outs}
    for k, (ref, got) in enumerate(outs):       # an input returned as it is (jnp.real of a
        if isinstance(ref, Ref) and ref.id not in made:      # real array): a copy of it
            from jax._src.lax.lax import copy_p

            value = copy_p.bind(got)
            new = rec._new(value, "jax", node.index, describe)
            parts.append(Node(node.index, "jax", "jax.lax.copy", copy_p, (ref,), (), (new,),
                              node.line, node.where, False, (ref.id,)))
            outs[k] = (Ref(new), value)
            made.add(new)
    rename: dict = {}
    for (ref, got), v in zip(outs, node.outs):
        if not isinstance(ref, Ref) or ref.id in rename or not any(
                ref.id in p.outs for p in parts):
            return None                         # an input or a constant returned as it is
        if not _same(got, rec.values[v]):
            return None
        rename[ref.id] = v
    return renamed(parts, rename)


def _constant_leaf(rec: Recording, c) -> int:
    """A new constant leaf for an array a jaxpr closes over (JAX never differentiates
    those); the array's own current version, if the record has one, stays current."""
    before = rec.current(c)
    v = rec._new(c, "jax", None, describe, constant=True, why="a constant of a jitted function")
    if before is not None:
        rec._current[id(c)] = before
    return v


def _same(got, run) -> bool:
    a, b = np.asarray(got), np.asarray(run)
    if a.shape != b.shape:
        return False
    if a.dtype.kind not in "fc":
        return bool(np.array_equal(a, b))
    tol = 1e-9 if a.dtype in (np.float64, np.complex128) else 1e-4
    a64, b64 = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64), \
        b.astype(np.complex128 if b.dtype.kind == "c" else np.float64)
    return bool(np.allclose(a64, b64, rtol=tol, atol=tol * max(float(np.max(np.abs(b64),
                                                                          initial=0)), 1e-30),
                            equal_nan=True))
