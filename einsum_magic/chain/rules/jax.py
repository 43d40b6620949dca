"""Backward rules of JAX primitives, in NumPy: ``dot_general`` as an einsum, gathers as scatter-adds.

This module owns the arrow *a recorded JAX node → its backward lines*
(:mod:`einsum_magic.chain.rules` states the contract; the nodes are those of
:mod:`einsum_magic.chain.recorders.jax`: ``jax.lax.<primitive>`` with the primitive's params
as keyword arguments). It never imports JAX: rules write text. Each rule follows JAX's own
derivative of the primitive (its JVP rule, transposed), also at kinks:

* ``max`` / ``min``: half the gradient to each side of a tie (``jnp.maximum(0, x)`` passes
  0.5 at 0); ``reduce_max`` / ``reduce_min``: evenly over ties; ``abs``: ``+g`` at 0;
  ``clamp``: nothing at a bound; ``sign``, comparisons, ``stop_gradient``: nothing;
* ``custom_jvp`` functions kept whole take their own derivative: ``relu`` passes the
  gradient where ``x > 0`` (0 at 0, as ``jax.nn.relu``), ``relu6`` where ``0 < x < 6``;
  another ``custom_jvp`` function is decomposed into its equations (no rule here).

``dot_general`` (every product: ``@``, ``jnp.dot``, ``jnp.matmul``, ``jnp.einsum``'s
contractions) and ``transpose`` are written by the swap trick
(:func:`einsum_magic.core.derivation.derive`) from the einsum they are
(:func:`dot_general_equation`); broadcasting (``broadcast_in_dim``, a scalar operand) is
summed back; a ``gather`` of integer indices scatter-adds (``np.add.at``, the one-hot einsum
it equals), a slice is zero-padded back.

>>> dot_general_equation((((1,), (0,)), ((), ())), 2, 2)
'ab,bd->ad'
>>> dot_general_equation((((2,), (1,)), ((0,), (0,))), 3, 3)
'abc,acf->abf'
"""

from __future__ import annotations

import re

import numpy as np

from ..record import Ref
from .registry import Back, NoRule, rule
from .shared import paren as _p
from .shared import elementwise_words, parts_back, power_back, unbroadcast

__all__ = ["dot_general_equation", "custom_name", "KEPT", "jax_ops"]

_J = "jax.lax."
_L = "abcdefghijklmnopqrstuvwxyz"


def jax_ops() -> tuple[str, ...]:
    """Every JAX primitive this module has a rule for (``jax.lax.<name>``), sorted."""
    from .registry import RULES

    return tuple(sorted(op for op in RULES if op.startswith(_J)))


def _lit(value) -> str:
    """A constant operand (a jaxpr's literal, a Python number) as NumPy source."""
    import numpy as np

    a = np.asarray(value)
    if a.shape != () or a.dtype.kind not in "biuf":
        raise NoRule(f"a constant operand of shape {a.shape} and dtype {a.dtype}")
    v = a.item()
    if isinstance(v, bool):
        return repr(v)
    text = repr(v)
    if text in ("inf", "-inf", "nan"):
        return {"inf": "np.inf", "-inf": "(-np.inf)", "nan": "np.nan"}[text]
    return f"({text})" if text.startswith("-") else text


def _x(ctx, arg) -> str:
    return ctx.x(arg) if isinstance(arg, Ref) else _lit(arg)


def _out(node, ctx, k: int = 0) -> tuple:
    return tuple(ctx.shape(Ref(node.outs[k])))


def _shape(ctx, arg) -> tuple:
    return tuple(ctx.shape(arg)) if isinstance(arg, Ref) else ()


def _axes(axes) -> str:
    axes = tuple(axes)
    return repr(axes[0]) if len(axes) == 1 else repr(axes)


# -- elementwise -------------------------------------------------------------------------------


def _binary(node, ctx, grads, words: str):
    """A binary primitive (equal shapes, or a scalar operand): ``grads(a, b, g, y)`` →
    (expr_a, expr_b), each of the output's shape, summed back to its operand's."""
    a, b = node.args[0], node.args[1]
    g = ctx.g(0)
    ea, eb = grads(_p(_x(ctx, a)), _p(_x(ctx, b)), g, _p(ctx.out(0)))
    out = _out(node, ctx)
    return [Back(arg, unbroadcast(e, out, _shape(ctx, arg)), view=e == g, rule=words)
            for arg, e in ((a, ea), (b, eb)) if isinstance(arg, Ref) and e is not None]


@rule(_J + "add", _J + "add_any")
def _add(node, ctx):
    return _binary(node, ctx, lambda a, b, g, y: (g, g), "add: broadcasting summed back")


@rule(_J + "sub")
def _sub(node, ctx):
    return _binary(node, ctx, lambda a, b, g, y: (g, f"-{g}"), "sub: broadcasting summed back")


@rule(_J + "mul")
def _mul(node, ctx):
    return _binary(node, ctx, lambda a, b, g, y: (f"{g} * {b}", f"{g} * {a}"),
                   "mul: each factor takes g times the other")


@rule(_J + "div")
def _div(node, ctx):
    return _binary(node, ctx, lambda a, b, g, y: (f"{g} / {b}", f"-{g} * {y} / {b}"),
                   "div: g / b, and -g a / b² to b")


@rule(_J + "pow")
def _pow(node, ctx):
    # JAX: y x^(y-1) to x; log(x) x^y to y, with log(0) taken as 0
    return _binary(node, ctx, lambda a, b, g, y: (
        f"{g} * {b} * {a} ** ({b} - 1)", f"{g} * np.log(np.where({a} == 0, 1, {a})) * {y}"),
        "pow: y x^(y-1), and log(x) x^y")


def _maxmin(node, ctx, which: str):
    def grads(a, b, g, y):
        # JAX's _balanced_eq: the side that is the result takes g, half of it at a tie
        return (f"{g} * ({a} == {y}) * np.where({b} == {y}, 0.5, 1.0)",
                f"{g} * ({b} == {y}) * np.where({a} == {y}, 0.5, 1.0)")

    return _binary(node, ctx, grads, f"{which}: to the side taken, half each at a tie, as JAX")


@rule(_J + "max")
def _max(node, ctx):
    return _maxmin(node, ctx, "max")


@rule(_J + "min")
def _min(node, ctx):
    return _maxmin(node, ctx, "min")


def _unary(names, grad, words=""):
    def fn(node, ctx):
        x = node.args[0]
        return [Back(x, grad(_p(ctx.x(x)), _p(ctx.out(0)), ctx.g(0), node),
                     rule=words or elementwise_words(node.op, grad("x", "y", "g", node)))]

    rule(*(_J + n for n in names))(fn)
    return fn


_unary(("neg",), lambda x, y, g, n: f"-{g}")
_unary(("exp",), lambda x, y, g, n: f"{g} * {y}")
_unary(("exp2",), lambda x, y, g, n: f"{g} * {y} * np.log(2.0)")
_unary(("log",), lambda x, y, g, n: f"{g} / {x}")
_unary(("log1p",), lambda x, y, g, n: f"{g} / (1 + {x})")
_unary(("expm1",), lambda x, y, g, n: f"{g} * ({y} + 1)")
_unary(("tanh",), lambda x, y, g, n: f"{g} * (1 - {y} ** 2)")
_unary(("logistic",), lambda x, y, g, n: f"{g} * {y} * (1 - {y})")
_unary(("sqrt",), lambda x, y, g, n: f"{g} * 0.5 / {y}")
_unary(("rsqrt",), lambda x, y, g, n: f"{g} * (-0.5) * {y} / {x}")
_unary(("cbrt",), lambda x, y, g, n: f"{g} / (3 * {y} ** 2)")
_unary(("square",), lambda x, y, g, n: f"{g} * (2 * {x})")
_unary(("sin",), lambda x, y, g, n: f"{g} * np.cos({x})")
_unary(("cos",), lambda x, y, g, n: f"-{g} * np.sin({x})")
_unary(("erf",), lambda x, y, g, n: f"{g} * (2 / np.sqrt(np.pi)) * np.exp(-{x} ** 2)")
_unary(("abs",), lambda x, y, g, n: f"{g} * np.where({x} >= 0, 1.0, -1.0)",
       "abs: +g at 0, as JAX")
_unary(("copy", "copy_p", "optimization_barrier", "reduce_precision"),
       lambda x, y, g, n: g, "the identity")


@rule(_J + "integer_pow")
def _integer_pow(node, ctx):
    x, n = node.args[0], node.kw()["y"]
    g = ctx.g(0)
    expr = power_back(g, _p(ctx.x(x)), n, str)
    return [Back(x, expr, view=expr == g, rule=f"integer_pow: {n} x^{n - 1}")]


@rule(_J + "clamp")
def _clamp(node, ctx):
    lo, x, hi = node.args
    xs = _p(ctx.x(x))
    # JAX: the gradient passes strictly inside the bounds
    expr = f"{ctx.g(0)} * (({xs} > {_p(_x(ctx, lo))}) & ({xs} < {_p(_x(ctx, hi))}))"
    return [Back(x, expr, rule="clamp: nothing at a bound, as JAX")]


@rule(_J + "stop_gradient", _J + "sign", _J + "floor", _J + "ceil", _J + "round")
def _nothing(node, ctx):
    """No gradient passes (``stop_gradient`` makes a constant; the others are flat)."""
    return []


@rule(_J + "convert_element_type")
def _convert(node, ctx):
    x = node.args[0]
    return [Back(x, f"np.asarray({ctx.g(0)}).astype({ctx.x(x)}.dtype)",
                 rule="cast: back to x's dtype")]


@rule(_J + "select_n")
def _select_n(node, ctx):
    which, *cases = node.args
    w, g, out = _x(ctx, which), ctx.g(0), _out(node, ctx)
    backs = []
    for k, c in enumerate(cases):
        if isinstance(c, Ref):
            test = w if len(cases) == 2 and k == 1 else f"({w} == {k})"
            if len(cases) == 2 and k == 0:
                test = f"~{_p(w)}" if ctx.dtype(which) == "bool" else f"({w} == 0)"
            backs.append(Back(c, unbroadcast(f"np.where({test}, {g}, 0)", out, _shape(ctx, c)),
                              rule="select: to the case chosen"))
    return backs


# -- products and permutations: the swap trick --------------------------------------------------


def dot_general_equation(dimension_numbers, na: int, nb: int) -> str:
    """The einsum a ``dot_general`` is: batch dimensions first, then the free dimensions of
    the left operand, then those of the right one (JAX's order)."""
    (lc, rc), (lb, rb) = dimension_numbers
    la = list(_L[:na])
    lbl = list(_L[na:na + nb])
    for i, j in zip(lc, rc):
        lbl[j] = la[i]
    for i, j in zip(lb, rb):
        lbl[j] = la[i]
    batch = [la[i] for i in lb]
    free_a = [c for k, c in enumerate(la) if k not in lc and k not in lb]
    free_b = [c for k, c in enumerate(lbl) if k not in rc and k not in rb]
    return f"{''.join(la)},{''.join(lbl)}->{''.join(batch + free_a + free_b)}"


def _swap(node, ctx, equation: str, operands, words=""):
    """One Back per Ref operand of ``equation``, derived with the node's shapes."""
    from ...core.derivation import derive

    names = tuple(f"em_op{k}" for k in range(len(operands)))
    d = derive(equation, names=names, output=ctx.gname(0),
               shapes=tuple(_shape(ctx, o) for o in operands))
    real = {n: _x(ctx, o) for n, o in zip(names, operands)}
    backs = []
    for gr, o in zip(d.grads, operands):
        if isinstance(o, Ref):
            expr = re.sub(r"\bem_op\d+\b", lambda m: real[m.group(0)],
                          gr.code.split(" = ", 1)[1])
            backs.append(Back(o, expr, view=True, rule=words or f"swap: {gr.equation}"))
    return backs


@rule(_J + "dot_general")
def _dot_general(node, ctx):
    a, b = node.args[0], node.args[1]
    eq = dot_general_equation(node.kw()["dimension_numbers"], len(_shape(ctx, a)),
                              len(_shape(ctx, b)))
    return _swap(node, ctx, eq, (a, b))


@rule(_J + "transpose")
def _transpose(node, ctx):
    x = node.args[0]
    perm = node.kw()["permutation"]
    letters = _L[:len(perm)]
    return _swap(node, ctx, f"{letters}->{''.join(letters[p] for p in perm)}", (x,))


# -- shapes -------------------------------------------------------------------------------------


@rule(_J + "reshape", _J + "squeeze", _J + "expand_dims")
def _reshape(node, ctx):
    x = node.args[0]
    if node.op == _J + "reshape" and node.kw().get("dimensions") is not None:
        raise NoRule("a reshape with dimensions (a transpose first)")
    return [Back(x, f"np.reshape({ctx.g(0)}, {_shape(ctx, x)})", view=True,
                 rule="reshape: reshaped back")]


@rule(_J + "broadcast_in_dim")
def _broadcast_in_dim(node, ctx):
    x = node.args[0]
    if not isinstance(x, Ref):
        return []
    kept = tuple(node.kw()["broadcast_dimensions"])
    out, shape = _out(node, ctx), _shape(ctx, x)
    g = ctx.g(0)
    new = tuple(d for d in range(len(out)) if d not in kept)
    expr = g if not new else f"{_p(g)}.sum(axis={_axes(new)})"
    stretched = tuple(i for i, d in enumerate(kept) if shape[i] == 1 and out[d] != 1)
    if stretched:
        expr = f"{_p(expr)}.sum(axis={_axes(stretched)}, keepdims=True)"
    return [Back(x, f"np.reshape({expr}, {shape})", view=True,
                 rule="broadcast: summed back over the new and stretched axes")]


@rule(_J + "device_put")
def _device_put(node, ctx):
    return [Back(x, ctx.g(k), view=True, rule="device_put: the identity")
            for k, x in enumerate(node.args) if isinstance(x, Ref) and ctx.g(k) is not None]


# -- reductions -----------------------------------------------------------------------------------


def _restored(node, ctx, x) -> tuple[str, tuple]:
    axes = tuple(node.kw()["axes"])
    g = ctx.g(0)
    return (f"np.expand_dims({g}, {_axes(axes)})" if axes else g), axes


@rule(_J + "reduce_sum")
def _reduce_sum(node, ctx):
    x = node.args[0]
    g, _ = _restored(node, ctx, x)
    return [Back(x, f"np.broadcast_to({g}, {_shape(ctx, x)})", view=True,
                 rule="sum: its backward broadcasts")]


def _chooser(node, ctx, which: str):
    x = node.args[0]
    g, axes = _restored(node, ctx, x)
    y = ctx.out(0)
    if axes:
        y = f"np.expand_dims({y}, {_axes(axes)})"
    m = ctx.tmp("ties")
    ax = _axes(axes) if axes else "None"
    return [Back(x, f"{_p(g)} * {m} / {m}.sum(axis={ax}, keepdims=True)",
                 (f"{m} = {_p(ctx.x(x))} == {_p(y)}",),
                 rule=f"{which}: evenly over ties, as JAX")]


@rule(_J + "reduce_max")
def _reduce_max(node, ctx):
    return _chooser(node, ctx, "reduce_max")


@rule(_J + "reduce_min")
def _reduce_min(node, ctx):
    return _chooser(node, ctx, "reduce_min")


# -- indexing and joining ---------------------------------------------------------------------------


@rule(_J + "slice")
def _slice(node, ctx):
    x = node.args[0]
    kw = node.kw()
    strides = kw.get("strides") or (1,) * len(kw["start_indices"])
    at = ", ".join(f"{a}:{b}" + ("" if s == 1 else f":{s}")
                   for a, b, s in zip(kw["start_indices"], kw["limit_indices"], strides))
    t = ctx.tmp("padded")
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})", f"{t}[{at},] = {ctx.g(0)}"),
                 rule="slice: zero-padded back")]


@rule(_J + "dynamic_slice")
def _dynamic_slice(node, ctx):
    x, *starts = node.args
    sizes = node.kw()["slice_sizes"]
    shape = _shape(ctx, x)
    at = []
    for s, n, dim in zip(starts, sizes, shape):
        start = f"int({_x(ctx, s)})"
        start = f"min(max({start}, 0), {dim - n})"         # JAX clamps the start
        at.append(f"{start}:{start} + {n}")
    t = ctx.tmp("padded")
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})",
                        f"{t}[{', '.join(at)},] = {ctx.g(0)}"),
                 rule="dynamic_slice: zero-padded back")]


@rule(_J + "concatenate")
def _concatenate(node, ctx):
    dim = node.kw()["dimension"]
    return parts_back(ctx.g(0), [(a, _shape(ctx, a)[dim] if isinstance(a, Ref) else 1)
                                 for a in node.args], dim)


@rule(_J + "gather")
def _gather(node, ctx):
    """``x[i, j]`` of integer arrays (leading axes indexed, the rest taken whole): its
    backward scatter-adds the cotangent at those indices (``np.add.at``)."""
    x, idx = node.args[0], node.args[1]
    kw = node.kw()
    dn = kw["dimension_numbers"]
    shape = _shape(ctx, x)
    if tuple(getattr(dn, "operand_batching_dims", ())):
        return _point_gather(node, ctx, x, idx, dn, shape)
    k = len(dn.start_index_map)
    lead = tuple(range(k))
    if (tuple(dn.start_index_map) != lead or tuple(dn.collapsed_slice_dims) != lead
            or tuple(getattr(dn, "operand_batching_dims", ())) or
            tuple(kw["slice_sizes"]) != (1,) * k + tuple(shape[k:])):
        raise NoRule("a gather other than integer indexing of leading axes")
    out = _out(node, ctx)
    rest = len(shape) - k
    if tuple(dn.offset_dims) != tuple(range(len(out) - rest, len(out))):
        raise NoRule("a gather whose taken axes do not come last")
    if str(kw.get("mode", "")).rsplit(".", 1)[-1] not in ("PROMISE_IN_BOUNDS", "CLIP", "1", "0"):
        raise NoRule(f"a gather in mode {kw.get('mode')}")
    i, g, t = _x(ctx, idx), ctx.g(0), ctx.tmp("scatter")
    at = ", ".join(f"{i}[..., {j}]" for j in range(k))
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})", f"np.add.at({t}, ({at},), {g})"),
                 rule="gather: its backward scatter-adds (the one-hot einsum)")]


def _point_gather(node, ctx, x, idx, dn, shape):
    """A batched gather of single elements (``jnp.take_along_axis``): each output element is
    one element of ``x``, at the index the indices give along the gathered axes and at the
    output's own position along the batch axes; the backward scatter-adds it there."""
    kw = node.kw()
    n = len(shape)
    batch, along = tuple(dn.operand_batching_dims), tuple(dn.start_index_map)
    if (tuple(dn.offset_dims) or tuple(kw["slice_sizes"]) != (1,) * n
            or sorted(batch + along) != list(range(n))
            or tuple(sorted(dn.collapsed_slice_dims)) != tuple(sorted(along))):
        raise NoRule("a batched gather other than one element per output (take_along_axis)")
    if not isinstance(idx, Ref):
        raise NoRule("a gather of constant indices")
    index = np.asarray(ctx.value(idx))
    bounds = np.array([shape[d] for d in along])
    if index.size and (index.min() < 0 or (index >= bounds).any()):
        raise NoRule("a gather with indices out of bounds (filled or clipped)")
    i, g, t, at = _x(ctx, idx), ctx.g(0), ctx.tmp("scatter"), ctx.tmp("at")
    where = dict(zip(batch, (f"{at}[{b}]" for b in dn.start_indices_batching_dims)))
    where.update((d, f"{i}[..., {j}]") for j, d in enumerate(along))
    parts = ", ".join(where[d] for d in range(n))
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})",
                        f"{at} = np.indices({i}.shape[:-1], sparse=True)",
                        f"np.add.at({t}, ({parts},), {g})"),
                 rule="gather: its backward scatter-adds (take_along_axis)")]


# -- custom_jvp functions kept whole ----------------------------------------------------------------


def custom_name(params) -> str:
    """The name of the function a ``custom_jvp_call`` calls (``relu``), or ``''``."""
    call = params.get("call_jaxpr")
    info = getattr(getattr(call, "jaxpr", call), "debug_info", None)
    name = getattr(info, "func_name", "") or params.get("name", "") or ""
    return name.rsplit(".", 1)[-1].strip("<>")


#: ``custom_jvp`` functions kept whole (name → the rule of their own derivative).
KEPT = {
    "relu": ("({x} > 0)", "relu: passes g where x > 0 (0 at 0, as jax.nn.relu)"),
    "relu6": ("(({x} > 0) & ({x} < 6))", "relu6: passes g where 0 < x < 6, as jax.nn.relu6"),
}


@rule(_J + "custom_jvp_call")
def _custom_jvp_call(node, ctx):
    name = custom_name(node.kw())
    if name not in KEPT or len(node.args) != 1 or len(node.outs) != 1:
        raise NoRule(f"the custom_jvp function {name or '?'}")
    mask, words = KEPT[name]
    x = node.args[0]
    return [Back(x, f"{ctx.g(0)} * {mask.format(x=_p(ctx.x(x)))}", rule=words)]


_custom_jvp_call.applies = lambda node: custom_name(node.kw()) in KEPT   # else: decomposed
