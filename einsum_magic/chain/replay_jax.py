"""The replay of a recorded JAX node in float64: its primitive bound again, on wider dtypes.

This module owns one step of the check of a JAX record (:mod:`~einsum_magic.chain.replay_numpy`
runs the check: ``jax.vjp`` of the replay, the fidelity gate, the comparison; it calls
:func:`replayer` for each node of :mod:`~einsum_magic.chain.recorders.jax`). A node is
replayed by binding its own primitive again (``func.bind(*args, **params)``), never by
running the cell again:

* float16/bfloat16/float32 become float64 (complex64 complex128) everywhere: in the
  primitive's dtype params (``new_dtype``, ``preferred_element_type``, ``dtype``), in a
  jaxpr's literals and constants;
* a ``jit`` is replayed as its jaxpr's equations, each bound on the wider values
  (nested calls too): JAX differentiates each primitive;
* a ``custom_jvp_call`` is replayed as a ``jax.custom_jvp`` function whose derivative is
  the recorded function's own (its ``jvp_jaxpr_fun``, evaluated on the wider values):
  ``jax.nn.relu``'s gradient at 0 stays 0;
* a ``scan``, ``while`` or ``cond`` (opaque: no rule) whose inner jaxprs were traced for
  narrower dtypes is bound on those, its results widened;
* a node none of whose inputs is floating (a random draw from a key) is replayed on the
  values it ran on, and its floating results are widened: the run's draws exactly.

Run inside ``jax.enable_x64(True)`` (the caller's context; JAX's global flags are never
changed).
"""

from __future__ import annotations

import numpy as np

__all__ = ["replayer", "widen"]

#: Primitives whose jaxpr is replayed equation by equation.
CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"})
#: Loops and branches: no rule (opaque); replayed on their traced dtypes where need be.
LOOPS = frozenset({"scan", "while", "cond"})

_WIDE = {"float16": "float64", "bfloat16": "float64", "float32": "float64",
         "complex64": "complex128"}


def _wide_dtype(d):
    try:
        name = np.dtype(d).name
    except TypeError:
        return d
    return np.dtype(_WIDE[name]) if name in _WIDE else d


def widen(value):
    """A value (array, literal, dtype) with narrower floating dtypes made float64.

    >>> widen(np.float32(1.5)).dtype, widen(np.dtype("float32")), widen(3)
    (dtype('float64'), dtype('float64'), 3)
    """
    if isinstance(value, (bool, int, float, complex, str, type(None))):
        return value
    if isinstance(value, (np.dtype, type)) and value is not bool:
        return _wide_dtype(value)
    dtype = getattr(value, "dtype", None)
    if dtype is not None and hasattr(value, "shape"):
        wide = _wide_dtype(dtype)
        if wide is not dtype and np.dtype(wide) != np.dtype(dtype):
            return value.astype(wide)
    return value


def _params(params: dict) -> dict:
    return {k: widen(v) if k in ("new_dtype", "preferred_element_type", "dtype") else v
            for k, v in params.items()}


def _floating(x) -> bool:
    dtype = getattr(x, "dtype", None)            # a tracer under jax.vjp has one too
    try:
        return np.dtype(dtype if dtype is not None else np.asarray(x).dtype).kind in "fc"
    except TypeError:                            # PRNG keys
        return False


def _bind(prim, params: dict, args):
    out = prim.bind(*args, **prim.get_bind_params(_params(params)))
    return list(out) if prim.multiple_results else [out]


def _inner(params):
    return params.get("jaxpr", params.get("call_jaxpr"))


def eval_wide(closed, args) -> list:
    """The outputs of ``closed`` (a ClosedJaxpr, or ``(jaxpr, consts)``) on ``args``, each
    equation bound on values made float64."""
    from jax._src import core

    jaxpr, consts = (closed.jaxpr, closed.consts) if hasattr(closed, "consts") else closed
    env: dict = {}
    for var, c in zip(jaxpr.constvars, consts):
        env[var] = widen(c)
    for var, a in zip(jaxpr.invars, args):
        env[var] = a

    def read(atom):
        return widen(atom.val) if isinstance(atom, core.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.invars]
        outs = _apply(eqn.primitive, eqn.params, ins)
        for var, o in zip(eqn.outvars, outs):
            env[var] = o
    return [read(a) for a in jaxpr.outvars]


def _apply(prim, params: dict, args) -> list:
    name = prim.name
    if name in CALLS and _inner(params) is not None:
        return eval_wide(_inner(params), args)
    if name == "custom_jvp_call":
        return _custom_jvp(params, args)
    if name in LOOPS:
        return _loop(prim, params, args)
    return _bind(prim, params, args)


def _ran_dtypes(prim, params: dict) -> list:
    """The dtypes a ``scan``, ``while`` or ``cond`` was traced for, one per argument (None:
    any), read from its inner jaxprs."""
    name = prim.name
    if name == "scan":
        avals = list(params["jaxpr"].in_avals)
    elif name == "while":
        avals = (list(params["cond_jaxpr"].in_avals[:params["cond_nconsts"]])
                 + list(params["body_jaxpr"].in_avals))
    else:                                         # cond: the branch index, then the operands
        avals = [None, *params["branches"][0].in_avals]
    return [getattr(a, "dtype", None) for a in avals]


def _loop(prim, params: dict, args) -> list:
    """A loop or branch (no rule: opaque) replayed on the dtypes it was traced for when the
    wider ones do not fit its inner jaxprs (a ``jnp.zeros`` carry of float32 against a
    float64 body), its results widened: the fidelity gate and the other paths still run."""
    try:
        return _bind(prim, params, args)
    except (TypeError, ValueError):
        dtypes = _ran_dtypes(prim, params)
        if len(dtypes) != len(args):
            raise
    narrow = [a.astype(d) if d is not None and _floating(a) and a.dtype != d else a
              for a, d in zip(args, dtypes)]
    return [widen(o) for o in _bind(prim, params, narrow)]


def _custom_jvp(params: dict, args) -> list:
    """The recorded ``custom_jvp`` function, replayed with its own derivative."""
    import jax
    import jax.numpy as jnp

    call, jvp_fun, nc = params["call_jaxpr"], params["jvp_jaxpr_fun"], params["num_consts"]

    @jax.custom_jvp
    def f(*xs):
        return tuple(eval_wide(call, xs))

    @f.defjvp
    def f_jvp(primals, tangents):
        jvp_jaxpr, jvp_consts, out_zeros = jvp_fun.call_wrapped(*[False] * (len(primals) - nc))
        out = eval_wide((jvp_jaxpr, jvp_consts), list(primals[nc:]) + list(tangents[nc:]))
        ys, nz = out[:len(out_zeros)], iter(out[len(out_zeros):])
        dys = [jnp.zeros_like(y) if z else next(nz) for y, z in zip(ys, out_zeros)]
        return tuple(ys), tuple(dys)

    return list(f(*args))


def replayer(node):
    """``fn(args, kwargs)`` replaying the JAX ``node`` (see the module doc), for
    :func:`einsum_magic.chain.replay_numpy.namesake`."""
    prim, params = node.func, node.kw()

    def fn(args, kwargs):
        if not any(_floating(a) for a in args):       # a draw from a key: as it ran
            return [widen(o) for o in _bind(prim, params, args)]
        out = _apply(prim, params, [widen(a) for a in args])
        return out if len(node.outs) != 1 or len(out) != 1 else out[0]

    return fn
