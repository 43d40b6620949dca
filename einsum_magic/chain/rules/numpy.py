"""Backward rules of NumPy calls: products as einsums, gathers as scatter-adds.

This module owns the arrow *a recorded NumPy node → its backward lines*
(:mod:`einsum_magic.chain.rules` states the contract; the op names are those of
:mod:`einsum_magic.chain.recorders.numpy`). NumPy has no derivative of its own: at kinks
each rule takes the one of the check's reference, ``jax.vjp`` of the ``jax.numpy``
namesake, so that the derived gradient and the reference agree:

* ``maximum`` / ``minimum``: half the gradient to each side of a tie (so ``np.maximum(h, 0)``
  passes 0.5 at ``h == 0``, where ``torch.relu`` passes 0);
* ``clip``: half at a bound (``jnp.clip`` is a ``maximum`` then a ``minimum``);
* ``abs``: ``+g`` at 0 (``jax``'s ``select(x >= 0, g, -g)``; ``np.sign`` would give 0);
* ``max`` / ``min`` reductions: evenly over ties; ``argmax``, ``sign``, ``floor``,
  comparisons: constants (gradient 0);
* ``x ** e`` with a constant ``e``: ``e x ** (e - 1)`` (NaN at ``x = 0`` for ``e < 1``, as
  in JAX); ``sqrt`` at 0: infinite.

Products (``@``, ``matmul``, ``dot``, ``inner``, ``outer`` of vectors, ``tensordot``,
``einsum``, ``trace``, ``diagonal``) and permutations (``T``, ``transpose``, ``swapaxes``,
``moveaxis``) are written by the swap trick (:func:`einsum_magic.core.derivation.derive`);
broadcasting is summed back; ``x[i]`` with integer arrays scatter-adds (``np.add.at``, the
one-hot einsum it equals), a slice is zero-padded back.

>>> len([op for op in RULES if op.startswith("numpy.")]) > 80
True
"""

from __future__ import annotations

import re

import numpy as np

from ...core.derivation import derive
from ..record import Ref
from .registry import RULES, Back, NoRule, rule
from .shared import elementwise_words, getitem_back, parts_back, setitem_backs, unbroadcast
from .shared import paren as _p

__all__ = ["RULES", "numpy_ops"]

_N = "numpy."
_M = "numpy.ndarray."


def numpy_ops() -> tuple[str, ...]:
    """Every NumPy op this module has a rule for, sorted."""
    return tuple(sorted(op for op in RULES if op.startswith(_N)))


def _lit(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (int, float)):
        text = repr(value)
        if text in ("inf", "-inf", "nan"):
            text = f"np.{text.lstrip('-')}" if text != "-inf" else "-np.inf"
        return f"({text})" if text.startswith("-") else text
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return f"np.array({list(value)!r})"
    raise NoRule(f"a constant of type {type(value).__name__}")


def _x(ctx, arg) -> str:
    return ctx.x(arg) if isinstance(arg, Ref) else _lit(arg)


def _arg(node, i: int, name: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    return node.kw().get(name, default)


def _shape_of(ctx, arg) -> tuple:
    return tuple(ctx.shape(arg)) if isinstance(arg, Ref) else np.shape(arg)


def _out_shape(node, ctx, k=0) -> tuple:
    return tuple(ctx.shape(Ref(node.outs[k])))


def _plain_call(node, *allowed):
    """Refuse keyword arguments the rule does not cover (``where=``, ``order=``…)."""
    for k, v in node.kw().items():
        if k in allowed or v is None:
            continue
        if k == "dtype" or k == "casting" or k == "optimize" or k == "subok":
            continue
        raise NoRule(f"{k}={v!r}")


# -- elementwise ----------------------------------------------------------------------------


def _binary(node, ctx, grads, words="", reads=True):
    """Contributions of a broadcasting binary op: ``grads(a, b, g)`` → (expr_a, expr_b);
    ``reads=False``: the gradients read neither operand (add, subtract)."""
    _plain_call(node)
    a, b = node.args[0], node.args[1]
    g = ctx.g(0)
    if reads:
        ea, eb = grads(_p(_x(ctx, a)), _p(_x(ctx, b)), g)
    else:
        ea, eb = grads("", "", g)
    out = _out_shape(node, ctx)
    backs = []
    for arg, e in ((a, ea), (b, eb)):
        if isinstance(arg, Ref) and e is not None:
            backs.append(Back(arg, unbroadcast(e, out, ctx.shape(arg)), view=e == g,
                              rule=words or f"{node.op.rsplit('.', 1)[1]}: broadcasting "
                                            "summed back"))
    return backs


@rule(_N + "add")
def _add(node, ctx):
    return _binary(node, ctx, lambda a, b, g: (g, g), reads=False)


@rule(_N + "subtract")
def _subtract(node, ctx):
    return _binary(node, ctx, lambda a, b, g: (g, f"-{g}"), reads=False)


@rule(_N + "multiply")
def _multiply(node, ctx):
    return _binary(node, ctx, lambda a, b, g: (f"{g} * {b}", f"{g} * {a}"))


@rule(_N + "divide")
def _divide(node, ctx):
    y = _p(ctx.out(0))
    backs = _binary(node, ctx, lambda a, b, g: (f"{g} / {b}", None))
    b = node.args[1]
    if isinstance(b, Ref):
        # -g y / b, summed back before dividing: b is constant along what is summed, so the
        # division runs on b's elements, not the output's (fewer FLOPs than jax.vjp's)
        summed = unbroadcast(f"{ctx.g(0)} * {y}", _out_shape(node, ctx), ctx.shape(b))
        backs.append(Back(b, f"-{summed} / {_p(ctx.x(b))}",
                          rule="divide: broadcasting summed back"))
    return backs


@rule(_N + "power", _N + "float_power")
def _power(node, ctx):
    base, e = node.args[0], node.args[1]
    y = _p(ctx.out(0))
    if not isinstance(e, Ref):
        ev = e.item() if isinstance(e, np.generic) else e
        if isinstance(ev, (int, float)) and ev == 0:
            # JAX: 0 * x ** -1 (NaN at x = 0, as jax.vjp gives)
            return _binary(node, ctx, lambda a, b, g: (f"{g} * 0 * {a} ** (-1.0)", None))
    return _binary(node, ctx, lambda a, b, g: (
        f"{g} * {b} * {a} ** ({b} - 1)", f"{g} * {y} * np.log({a})"))


def _maxmin(node, ctx, win: str):
    def grads(a, b, g):
        return (f"{g} * (({a} {win} {b}) + 0.5 * ({a} == {b}))",
                f"{g} * (({b} {win} {a}) + 0.5 * ({a} == {b}))")

    return _binary(node, ctx, grads, words="maximum: half to each side of a tie, as jax.vjp"
                   if win == ">" else "minimum: half to each side of a tie, as jax.vjp")


@rule(_N + "maximum", _N + "fmax")
def _maximum(node, ctx):
    return _maxmin(node, ctx, ">")


@rule(_N + "minimum", _N + "fmin")
def _minimum(node, ctx):
    return _maxmin(node, ctx, "<")


def _unary(ops, grad, words=""):
    def fn(node, ctx):
        _plain_call(node)
        x = node.args[0]
        return [Back(x, grad(_p(ctx.x(x)), _p(ctx.out(0)), ctx.g(0)),
                     rule=words or elementwise_words(node.op, grad("x", "y", "g")))]

    rule(*ops)(fn)
    return fn


_unary((_N + "negative",), lambda x, y, g: f"-{g}")
_unary((_N + "positive", _N + "conjugate", _M + "conj"), lambda x, y, g: g)
_unary((_N + "exp",), lambda x, y, g: f"{g} * {y}")
_unary((_N + "exp2",), lambda x, y, g: f"{g} * {y} * {np.log(2.0)!r}")
_unary((_N + "expm1",), lambda x, y, g: f"{g} * ({y} + 1)")
_unary((_N + "log",), lambda x, y, g: f"{g} / {x}")
_unary((_N + "log2",), lambda x, y, g: f"{g} / ({x} * {np.log(2.0)!r})")
_unary((_N + "log10",), lambda x, y, g: f"{g} / ({x} * {np.log(10.0)!r})")
_unary((_N + "log1p",), lambda x, y, g: f"{g} / (1 + {x})")
_unary((_N + "tanh",), lambda x, y, g: f"{g} * (1 - {y} ** 2)")
_unary((_N + "sinh",), lambda x, y, g: f"{g} * np.cosh({x})")
_unary((_N + "cosh",), lambda x, y, g: f"{g} * np.sinh({x})")
_unary((_N + "sin",), lambda x, y, g: f"{g} * np.cos({x})")
_unary((_N + "cos",), lambda x, y, g: f"-{g} * np.sin({x})")
_unary((_N + "tan",), lambda x, y, g: f"{g} * (1 + {y} ** 2)")
_unary((_N + "arctan",), lambda x, y, g: f"{g} / (1 + {x} ** 2)")
_unary((_N + "sqrt",), lambda x, y, g: f"{g} / (2 * {y})")
_unary((_N + "cbrt",), lambda x, y, g: f"{g} / (3 * {y} ** 2)")
_unary((_N + "square",), lambda x, y, g: f"{g} * (2 * {x})")
_unary((_N + "reciprocal",), lambda x, y, g: f"-{g} * {y} ** 2")
_unary((_N + "absolute", _N + "fabs"), lambda x, y, g: f"{g} * np.where({x} >= 0, 1.0, -1.0)",
       words="abs: +g at 0, as jax.vjp")


@rule(_N + "clip", _M + "clip")
def _clip(node, ctx):
    x = node.args[0]
    lo = _arg(node, 1, "a_min", node.kw().get("min"))
    hi = _arg(node, 2, "a_max", node.kw().get("max"))
    for k in node.kw():
        if k not in ("a_min", "a_max", "min", "max", "out"):
            raise NoRule(f"clip with {k}=")
    if isinstance(lo, Ref) or isinstance(hi, Ref):
        raise NoRule("clip with array bounds")
    xs, g = _p(ctx.x(x)), ctx.g(0)
    factors = []
    inner = xs
    if lo is not None:
        factors.append(f"(({xs} > {_lit(lo)}) + 0.5 * ({xs} == {_lit(lo)}))")
        inner = f"np.maximum({xs}, {_lit(lo)})"
    if hi is not None:
        factors.append(f"(({inner} < {_lit(hi)}) + 0.5 * ({inner} == {_lit(hi)}))")
    mask = " * ".join(factors) or "1"
    return [Back(x, f"{g} * {mask}", rule="clip: half at a bound, as jax.vjp")]


@rule(_N + "where")
def _where(node, ctx):
    if len(node.args) != 3:
        raise NoRule("where with one argument")
    cond, a, b = node.args
    g, c, out = ctx.g(0), _x(ctx, cond), _out_shape(node, ctx)
    backs = []
    for r, e in ((a, f"np.where({c}, {g}, 0)"), (b, f"np.where({c}, 0, {g})")):
        if isinstance(r, Ref):
            backs.append(Back(r, unbroadcast(e, out, ctx.shape(r)), rule="where: to the branch "
                              "taken"))
    return backs


@rule(_N + "copy", _M + "copy", _N + "array", _N + "asarray", _N + "ascontiguousarray",
      _M + "view", _M + "astype")
def _copy(node, ctx):
    x = node.args[0]
    if node.op == _M + "view" and (len(node.args) > 1 or node.kw()):
        raise NoRule("view as another dtype")
    src = ctx.dtype(x)
    g = ctx.g(0)
    if ctx.dtype(Ref(node.outs[0])) != src:
        return [Back(x, f"{g}.astype(np.{src})", rule="cast: cast back")]
    return [Back(x, g, view=True, rule="copy: the identity")]


# -- products and permutations: the swap trick -------------------------------------------------


def _swap(node, ctx, equation: str, operands, words=""):
    """One Back per Ref operand of ``equation``, derived with the node's shapes."""
    names = tuple(f"em_op{k}" for k in range(len(operands)))
    shapes = tuple(_shape_of(ctx, o) for o in operands)
    d = derive(equation, names=names, output=ctx.gname(0), shapes=shapes)
    real = {n: _x(ctx, o) for n, o in zip(names, operands)}
    backs = []
    for gr, o in zip(d.grads, operands):
        if isinstance(o, Ref):
            expr = gr.code.split(" = ", 1)[1]
            expr = re.sub(r"\bem_op\d+\b", lambda m: real[m.group(0)], expr)
            backs.append(Back(o, expr, view=True, rule=words or f"swap: {gr.equation}"))
    return backs


_L = "abcdefghijklmnopqrstuvwxyz"


def _matmul_equation(sa, sb) -> str:
    if len(sa) == 1 and len(sb) == 1:
        return "j,j->"
    if len(sa) == 1:
        return "j,...jk->...k"
    if len(sb) == 1:
        return "...ij,j->...i"
    return "...ij,...jk->...ik"


@rule(_N + "matmul")
def _matmul(node, ctx):
    _plain_call(node)
    a, b = node.args[0], node.args[1]
    return _swap(node, ctx, _matmul_equation(_shape_of(ctx, a), _shape_of(ctx, b)), (a, b))


@rule(_N + "dot", _M + "dot")
def _dot(node, ctx):
    _plain_call(node)
    a, b = node.args[0], node.args[1]
    sa, sb = _shape_of(ctx, a), _shape_of(ctx, b)
    if not sa or not sb:
        raise NoRule("dot with a scalar (a multiply)")
    la = _L[:len(sa) - 1] + "z"
    if len(sb) == 1:
        lb, out = "z", la[:-1]
    else:
        rest = _L[len(sa) - 1:len(sa) - 1 + len(sb) - 1]
        lb = rest[:-1] + "z" + rest[-1]
        out = la[:-1] + rest
    return _swap(node, ctx, f"{la},{lb}->{out}", (a, b))


@rule(_N + "inner")
def _inner(node, ctx):
    a, b = node.args[0], node.args[1]
    sa, sb = _shape_of(ctx, a), _shape_of(ctx, b)
    if not sa or not sb:
        raise NoRule("inner with a scalar (a multiply)")
    la = _L[:len(sa) - 1] + "z"
    lb = _L[len(sa) - 1:len(sa) + len(sb) - 2] + "z"
    return _swap(node, ctx, f"{la},{lb}->{la[:-1]}{lb[:-1]}", (a, b))


@rule(_N + "outer")
def _outer(node, ctx):
    a, b = node.args[0], node.args[1]
    if len(_shape_of(ctx, a)) != 1 or len(_shape_of(ctx, b)) != 1:
        raise NoRule("outer of arrays that are not vectors (it flattens them)")
    return _swap(node, ctx, "i,j->ij", (a, b))


@rule(_N + "tensordot")
def _tensordot(node, ctx):
    a, b = node.args[0], node.args[1]
    axes = _arg(node, 2, "axes", 2)
    sa, sb = _shape_of(ctx, a), _shape_of(ctx, b)
    if isinstance(axes, int):
        xa, xb = list(range(len(sa) - axes, len(sa))), list(range(axes))
    else:
        xa, xb = axes
        xa = [xa] if isinstance(xa, int) else list(xa)
        xb = [xb] if isinstance(xb, int) else list(xb)
    xa = [k % len(sa) for k in xa]
    xb = [k % len(sb) for k in xb]
    la = list(_L[:len(sa)])
    lb = list(_L[len(sa):len(sa) + len(sb)])
    for i, j in zip(xa, xb):
        lb[j] = la[i]
    out = [c for k, c in enumerate(la) if k not in xa] + [c for k, c in enumerate(lb)
                                                          if k not in xb]
    return _swap(node, ctx, f"{''.join(la)},{''.join(lb)}->{''.join(out)}", (a, b))


@rule("einops.einsum")
def _einops_einsum(node, ctx):
    *ops, pattern = node.args
    if not isinstance(pattern, str) or "(" in pattern:
        raise NoRule("an einops pattern with groups")
    left, _, right = pattern.partition("->")
    letters: dict = {}

    def spell(part: str) -> str:
        out = ""
        for word in part.split():
            if word == "...":
                out += "..."
                continue
            if word not in letters:
                letters[word] = _L[len(letters)]
            out += letters[word]
        return out

    inputs = ",".join(spell(p) for p in left.split(","))
    return _swap(node, ctx, f"{inputs}->{spell(right)}", tuple(ops))


@rule(_N + "einsum", "opt_einsum.contract")
def _einsum(node, ctx):
    eq, *ops = node.args
    if not isinstance(eq, str):
        raise NoRule("einsum in the interleaved form")
    for k in node.kw():
        if k not in ("optimize", "memory_limit", "backend", "use_blas"):
            raise NoRule(f"einsum with {k}=")
    return _swap(node, ctx, eq.replace(" ", ""), tuple(ops))


def _two_axes(node, ctx, x, a1, a2, offset):
    if offset:
        raise NoRule("a diagonal with an offset")
    n = len(ctx.shape(x))
    a1, a2 = a1 % n, a2 % n
    letters = list(_L[:n])
    letters[a2] = letters[a1]
    rest = [c for k, c in enumerate(letters) if k not in (a1, a2)]
    return "".join(letters), "".join(rest), letters[a1]


@rule(_N + "trace", _M + "trace")
def _trace(node, ctx):
    x = node.args[0]
    ins, rest, d = _two_axes(node, ctx, x, _arg(node, 2, "axis1", 0), _arg(node, 3, "axis2", 1),
                             _arg(node, 1, "offset", 0))
    return _swap(node, ctx, f"{ins}->{rest}", (x,))


@rule(_N + "diagonal", _M + "diagonal")
def _diagonal(node, ctx):
    x = node.args[0]
    ins, rest, d = _two_axes(node, ctx, x, _arg(node, 2, "axis1", 0), _arg(node, 3, "axis2", 1),
                             _arg(node, 1, "offset", 0))
    return _swap(node, ctx, f"{ins}->{rest}{d}", (x,))


@rule(_N + "diag")
def _diag(node, ctx):
    """``np.diag(v)`` of a vector builds a diagonal matrix: its backward reads the diagonal
    back; of a matrix it is its diagonal (the einsum ``ii->i``)."""
    x, k = node.args[0], _arg(node, 1, "k", 0)
    if len(ctx.shape(x)) == 2:
        ins, rest, d = _two_axes(node, ctx, x, 0, 1, k)
        return _swap(node, ctx, f"{ins}->{rest}{d}", (x,))
    return [Back(x, f"np.diagonal({ctx.g(0)}, {k!r})", view=True,
                 rule="diag: its backward reads the diagonal")]


def _permutation(node, ctx, x) -> list[int]:
    n = len(ctx.shape(x))
    short = node.op.rsplit(".", 1)[1]
    order = list(range(n))
    if short == "T":
        return order[::-1]
    if short == "mT":
        order[-2:] = order[-2:][::-1]
        return order
    if short == "swapaxes":
        d0, d1 = _arg(node, 1, "axis1") % n, _arg(node, 2, "axis2") % n
        order[d0], order[d1] = order[d1], order[d0]
        return order
    if short == "transpose":
        axes = node.args[1:] if node.op.startswith(_M) else node.args[1:2]
        if not axes:
            axes = (node.kw().get("axes"),)
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        if axes is None:
            return order[::-1]
        return [a % n for a in axes]
    if short == "moveaxis":
        src, dst = _arg(node, 1, "source"), _arg(node, 2, "destination")
        src = [src % n] if isinstance(src, int) else [s % n for s in src]
        dst = [dst % n] if isinstance(dst, int) else [d % n for d in dst]
        out: list = [None] * n
        for s, d in zip(src, dst):
            out[d] = s
        it = iter(k for k in range(n) if k not in src)
        return [o if o is not None else next(it) for o in out]
    raise NoRule(short)


@rule(_M + "T", _M + "mT", _N + "transpose", _M + "transpose", _N + "swapaxes",
      _M + "swapaxes", _N + "moveaxis", _N + "matrix_transpose")
def _permute(node, ctx):
    x = node.args[0]
    if node.op == _N + "matrix_transpose":
        n = len(ctx.shape(x))
        order = list(range(n))
        order[-2:] = order[-2:][::-1]
    else:
        order = _permutation(node, ctx, x)
    letters = _L[:len(order)]
    return _swap(node, ctx, f"{letters}->{''.join(letters[o] for o in order)}", (x,))


# -- shapes -----------------------------------------------------------------------------------


@rule(_N + "reshape", _M + "reshape", _N + "ravel", _M + "ravel", _M + "flatten",
      _N + "squeeze", _M + "squeeze", _N + "expand_dims", _N + "atleast_2d", _N + "atleast_1d")
def _reshape(node, ctx):
    x = node.args[0]
    order = node.kw().get("order", "C")
    if order not in ("C", "A") or any(a in ("F", "A") for a in node.args[1:]
                                       if isinstance(a, str)):
        raise NoRule("a reshape in Fortran order")
    return [Back(x, f"{ctx.g(0)}.reshape({tuple(ctx.shape(x))})", view=True,
                 rule="reshape: reshaped back")]


@rule(_N + "broadcast_to")
def _broadcast_to(node, ctx):
    x = node.args[0]
    return [Back(x, unbroadcast(ctx.g(0), _out_shape(node, ctx), ctx.shape(x)), view=True,
                 rule="broadcast: summed back")]


# -- reductions -------------------------------------------------------------------------------


def _axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        return tuple(sorted(a % max(ndim, 1) for a in axis))
    return (axis % max(ndim, 1),)


def _reduction(node, ctx):
    """(x, cotangent with the reduced axes back as size 1, axes, count, keepdims)."""
    x = node.args[0]
    axis = _arg(node, 1, "axis")
    for k, v in node.kw().items():
        if k in ("where", "initial") and v is not None and v is not np._NoValue:
            raise NoRule(f"a reduction with {k}=")
        if k == "ddof" or k in ("axis", "keepdims", "dtype", "out", "correction"):
            continue
    short = node.op.rsplit(".", 1)[-1]
    if short == "reduce":
        axis = _arg(node, 1, "axis", 0)          # a ufunc's reduce: axis 0 by default
    at = {"var": 5, "std": 5, "sum": 4, "mean": 4}.get(short, 3)
    keep = bool(node.kw().get("keepdims", _arg(node, at, "keepdims", False)))
    shape = ctx.shape(x)
    axes = _axes(axis, len(shape))
    count = 1
    for a in axes:
        count *= shape[a]
    g = ctx.g(0)
    if not keep and axes and axis is not None:
        g = f"np.expand_dims({g}, {axes[0] if len(axes) == 1 else axes})"
    return x, g, axes, count, keep, axis


@rule(_N + "sum", _M + "sum", _N + "add.reduce")
def _sum(node, ctx):
    x, g, _, _, _, _ = _reduction(node, ctx)
    return [Back(x, f"np.broadcast_to({g}, {tuple(ctx.shape(x))})", view=True,
                 rule="sum: its backward broadcasts")]


@rule(_N + "mean", _M + "mean")
def _mean(node, ctx):
    x, g, _, count, _, _ = _reduction(node, ctx)
    return [Back(x, f"np.broadcast_to({_p(g)} / {count}, {tuple(ctx.shape(x))})", view=True,
                 rule="mean: its backward broadcasts, divided by the count")]


@rule(_N + "var", _M + "var", _N + "std", _M + "std")
def _var(node, ctx):
    x, g, axes, count, keep, axis = _reduction(node, ctx)
    ddof = node.kw().get("ddof", _arg(node, 4, "ddof", 0)) or 0
    if node.kw().get("correction") is not None:
        ddof = node.kw()["correction"]
    xs = _p(ctx.x(x))
    ax = "None" if not axes else (axes[0] if len(axes) == 1 else axes)
    n = count - ddof
    centred = f"({xs} - {xs}.mean(axis={ax}, keepdims=True))"
    if node.op.endswith("var"):
        return [Back(x, f"{_p(g)} * 2 * {centred} / {n!r}",
                     rule="var: 2 (x - mean) / (N - ddof)")]
    y = ctx.out(0)
    if not keep and axes and axis is not None:
        y = f"np.expand_dims({y}, {axes[0] if len(axes) == 1 else axes})"
    return [Back(x, f"{_p(g)} * {centred} / ({n!r} * {_p(y)})",
                 rule="std: (x - mean) / ((N - ddof) std)")]


@rule(_N + "linalg.norm")
def _norm(node, ctx):
    """The 2-norm (of vectors along ``axis``, or of all elements: Frobenius): x / |x|."""
    x, order, axis = node.args[0], _arg(node, 1, "ord"), _arg(node, 2, "axis")
    keep = bool(_arg(node, 3, "keepdims", False))
    axes = _axes(axis, len(ctx.shape(x)))
    if not (order is None and (axis is None or len(axes) <= 2)
            or order == 2 and len(axes) == 1 or order == "fro" and len(axes) == 2):
        raise NoRule(f"norm with ord={order!r} over {len(axes)} axes")
    g, y = ctx.g(0), ctx.out(0)
    if not keep and axis is not None:
        at = axes[0] if len(axes) == 1 else axes
        g, y = f"np.expand_dims({g}, {at})", f"np.expand_dims({y}, {at})"
    return [Back(x, f"{_p(g)} * {_p(ctx.x(x))} / {_p(y)}", rule="norm: x / |x|")]


@rule(_N + "max", _N + "amax", _M + "max", _N + "min", _N + "amin", _M + "min",
      _N + "maximum.reduce", _N + "minimum.reduce")
def _max(node, ctx):
    x, g, axes, _, keep, axis = _reduction(node, ctx)
    y = ctx.out(0)
    if not keep and axes and axis is not None:
        y = f"np.expand_dims({y}, {axes[0] if len(axes) == 1 else axes})"
    ax = "None" if axis is None else (axes[0] if len(axes) == 1 else axes)
    m = ctx.tmp("ties")
    # the reduced cotangent divided by the count of ties, then spread over them
    return [Back(x, f"{_p(g)} / {m}.sum(axis={ax}, keepdims=True) * {m}",
                 (f"{m} = {_p(ctx.x(x))} == {_p(y)}",),
                 rule="max: evenly over ties, as jax.vjp")]


@rule(_N + "cumsum", _M + "cumsum")
def _cumsum(node, ctx):
    x, axis = node.args[0], _arg(node, 1, "axis")
    if axis is None:
        if len(ctx.shape(x)) > 1:
            raise NoRule("cumsum without an axis over more than one dimension")
        axis = 0
    g = ctx.g(0)
    return [Back(x, f"np.flip(np.cumsum(np.flip({g}, {axis}), {axis}), {axis})",
                 rule="cumsum: a reversed cumsum")]


# -- indexing -----------------------------------------------------------------------------------


def _key_part(k, ctx) -> str:
    if isinstance(k, Ref):
        value = np.asarray(ctx.value(k))
        if value.dtype.kind in "iu" and value.ndim == 1 and np.array_equal(
                value, np.arange(len(value))):
            return f"np.arange({len(value)})"          # probs[np.arange(N), y]
        return ctx.x(k)
    if isinstance(k, slice):
        text = ("" if k.start is None else _lit(k.start)) + ":" + \
               ("" if k.stop is None else _lit(k.stop))
        return text + ("" if k.step is None else f":{_lit(k.step)}")
    if k is None:
        return "None"
    if k is Ellipsis:
        return "..."
    if isinstance(k, range):
        return f"np.arange({k.start}, {k.stop}, {k.step})" if k.step != 1 else (
            f"np.arange({k.stop})" if k.start == 0 else f"np.arange({k.start}, {k.stop})")
    if isinstance(k, (int, np.integer, bool, np.bool_)):
        return _lit(k)
    if isinstance(k, list) and all(isinstance(v, (int, bool)) for v in k):
        return repr(k)
    raise NoRule(f"an index of type {type(k).__name__}")


def _bracket(key, ctx) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    inner = ", ".join(_key_part(k, ctx) for k in parts)
    return inner + ("," if isinstance(key, tuple) and len(parts) == 1 else "")


def _advanced(key, ctx) -> bool:
    """Whether the key holds an integer array (a gather, with repeats)."""
    parts = key if isinstance(key, tuple) else (key,)
    for k in parts:
        if isinstance(k, (list, range)):
            return True
        if isinstance(k, Ref) and ctx.dtype(k) not in ("bool",):
            return True
    return False


@rule(_M + "__getitem__")
def _getitem(node, ctx):
    x, key = node.args
    bracket = _bracket(key, ctx)
    return [getitem_back(x, ctx, bracket, f"np.s_[{bracket}]" if _advanced(key, ctx) else None)]


@rule(_M + "__setitem__")
def _setitem(node, ctx):
    x, key, value = node.args

    def shape():
        parts = key if isinstance(key, tuple) else (key,)
        real = tuple(ctx.value(k) if isinstance(k, Ref) else k for k in parts)
        return np.empty(ctx.shape(x))[real if isinstance(key, tuple) else real[0]].shape

    return setitem_backs(x, value, ctx, _bracket(key, ctx), shape)


@rule(_M + "fill")
def _fill(node, ctx):
    value = node.args[1]
    if isinstance(value, Ref):
        return [Back(value, f"np.sum({ctx.g(0)}).reshape({tuple(ctx.shape(value))})",
                     rule="fill: the value takes every element's gradient")]
    return []


@rule(_N + "copyto")
def _copyto(node, ctx):
    dst, src = node.args[0], node.args[1]
    if node.kw().get("where") is not None:
        raise NoRule("copyto with where=")
    if isinstance(src, Ref):
        return [Back(src, unbroadcast(ctx.g(0), _out_shape(node, ctx), ctx.shape(src)),
                     rule="copyto: the source takes the gradient")]
    return []


@rule(_N + "add.at")
def _add_at(node, ctx):
    x, key = node.args[0], node.args[1]
    value = node.args[2] if len(node.args) > 2 else None
    g = ctx.g(0)
    backs = [Back(x, g, view=True, rule="add.at: the target passes the gradient on")]
    if isinstance(value, Ref):
        shape = np.empty(ctx.shape(x))[
            tuple(ctx.value(k) if isinstance(k, Ref) else k for k in key)
            if isinstance(key, tuple) else (ctx.value(key) if isinstance(key, Ref) else key)
        ].shape
        backs.append(Back(value, unbroadcast(f"{g}[{_bracket(key, ctx)}]", shape,
                                             ctx.shape(value)),
                          rule="add.at: the values gather the gradient"))
    return backs


# -- joining and splitting ---------------------------------------------------------------------


@rule(_N + "concatenate", _N + "concat")
def _concatenate(node, ctx):
    arrays, axis = node.args[0], _arg(node, 1, "axis", 0)
    if axis is None:
        raise NoRule("concatenate with axis=None (it flattens)")
    n = len(_out_shape(node, ctx))
    axis %= n
    return parts_back(ctx.g(0), [(a, _shape_of(ctx, a)[axis]) for a in arrays], axis)


@rule(_N + "stack")
def _stack(node, ctx):
    arrays, axis = node.args[0], _arg(node, 1, "axis", 0)
    axis %= len(_out_shape(node, ctx))
    return [Back(a, f"{ctx.g(0)}[{':, ' * axis}{k}]", view=True, rule="stack: each part")
            for k, a in enumerate(arrays) if isinstance(a, Ref)]


@rule(_N + "hstack", _N + "vstack")
def _hvstack(node, ctx):
    arrays = node.args[0]
    shapes = [_shape_of(ctx, a) for a in arrays]
    if any(len(s) != len(_out_shape(node, ctx)) for s in shapes):
        raise NoRule("hstack/vstack of arrays of fewer dimensions")
    axis = 0 if node.op.endswith("vstack") or len(shapes[0]) == 1 else 1
    return parts_back(ctx.g(0), [(a, s[axis]) for a, s in zip(arrays, shapes)], axis)


@rule(_N + "split", _N + "array_split")
def _split(node, ctx):
    x, axis = node.args[0], _arg(node, 2, "axis", 0)
    axis %= len(ctx.shape(x))
    t = ctx.tmp("joined")
    setup = [f"{t} = np.zeros_like({ctx.x(x)})"]
    start = 0
    for k in range(len(node.outs)):
        size = ctx.shape(Ref(node.outs[k]))[axis]
        gk = ctx.g(k)
        if gk is not None:
            setup.append(f"{t}[{':, ' * axis}{start}:{start + size}] = {gk}")
        start += size
    return [Back(x, t, tuple(setup), rule="split: the parts joined back")]
