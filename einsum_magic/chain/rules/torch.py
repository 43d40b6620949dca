"""Backward rules of torch calls, in NumPy: products as einsums, gathers as scatter-adds.

This module owns the arrow *a recorded torch node → its backward lines*
(:mod:`einsum_magic.chain.rules` states the contract). It never imports torch: rules
write text. Each rule follows torch's own derivative (``tools/autograd/derivatives.yaml``),
also at kinks: ``relu`` passes the gradient where its result is > 0, ``max(dim)`` to the
index torch returned, a full ``max()`` evenly over ties, ``abs`` with ``sign`` (0 at 0),
``pow(x, 0)`` is 0. Products (``@``, ``matmul``, ``mm``, ``bmm``, ``F.linear``,
``einsum``) and permutations (``T``, ``transpose``, ``permute``) are written by the swap
trick (:func:`einsum_magic.core.derivation.derive`), broadcasting summed back.

>>> [op in RULES for op in ("torch.Tensor.matmul", "torch.nn.functional.cross_entropy")]
[True, True]
"""

from __future__ import annotations

import math

from ..record import Ref
from .registry import RULES, Back, NoRule, rule
from .shared import elementwise_words, getitem_back, power_back, setitem_backs, unbroadcast
from .shared import paren as _p

__all__ = ["unbroadcast", "RULES"]

_T = "torch.Tensor."


def _ops(*names: str, tensor=True, torch=True, functional=False) -> tuple[str, ...]:
    out = []
    for n in names:
        if tensor:
            out.append(_T + n)
        if torch:
            out.append("torch." + n)
        if functional:
            out.append("torch.nn.functional." + n)
    return tuple(out)


def _arg(node, i: int, name: str, default=None):
    """Argument ``i`` (positional) or ``name`` (keyword) of ``node``, else ``default``."""
    if len(node.args) > i:
        return node.args[i]
    return node.kw().get(name, default)


def _dims(dim, ndim: int) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (list, tuple)):
        return tuple(sorted(d % max(ndim, 1) for d in dim)) if dim else tuple(range(ndim))
    return (dim % max(ndim, 1),)


def _lit(value) -> str:
    """A constant as a NumPy literal (Python numbers stay weakly typed)."""
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"({text})" if text.startswith("-") else text
    raise NoRule(f"a constant of type {type(value).__name__}")


def _x(ctx, arg) -> str:
    return ctx.x(arg) if isinstance(arg, Ref) else _lit(arg)


# -- elementwise ------------------------------------------------------------------------


def _binary(node, ctx, grads):
    """Contributions of a broadcasting binary op: ``grads(a, b, g)`` → (expr_a, expr_b)."""
    a, b = node.args[0], node.args[1] if len(node.args) > 1 else node.kw().get("other")
    g = ctx.g(0)
    ea, eb = grads(_x(ctx, a), _x(ctx, b), g)
    out = ctx.shape(Ref(node.outs[0]))
    backs = []
    for arg, e in ((a, ea), (b, eb)):
        if isinstance(arg, Ref) and e is not None:
            backs.append(Back(arg, unbroadcast(e, out, ctx.shape(arg)), view=e == g,
                              rule=f"{node.op.rsplit('.', 1)[1].strip('_')}: broadcasting "
                                   "summed back"))
    return backs


def _alpha(node) -> str:
    alpha = node.kw().get("alpha", 1)
    return "" if alpha == 1 else f"{_lit(alpha)} * "


@rule(*_ops("add", "add_", "__iadd__", "__radd__"))
def _add(node, ctx):
    al = _alpha(node)
    return _binary(node, ctx, lambda a, b, g: (g, f"{al}{g}" if al else g))


@rule(*_ops("sub", "sub_", "__isub__", "subtract"))
def _sub(node, ctx):
    al = _alpha(node)
    return _binary(node, ctx, lambda a, b, g: (g, f"-{al}{g}"))


@rule(_T + "__rsub__", "torch.rsub")
def _rsub(node, ctx):            # c - x: args (x, c)
    return [Back(node.args[0], unbroadcast(f"-{ctx.g(0)}", ctx.shape(Ref(node.outs[0])),
                                           ctx.shape(node.args[0])))]


@rule(*_ops("mul", "mul_", "__imul__", "__rmul__", "multiply"))
def _mul(node, ctx):
    return _binary(node, ctx, lambda a, b, g: (f"{g} * {_p(b)}", f"{g} * {_p(a)}"))


@rule(*_ops("div", "div_", "__itruediv__", "__idiv__", "true_divide", "divide",
            "__truediv__"))
def _div(node, ctx):
    if node.kw().get("rounding_mode") is not None:
        raise NoRule("div with rounding_mode")
    y = ctx.out(0)
    return _binary(node, ctx, lambda a, b, g: (f"{g} / {_p(b)}", f"-{g} * {_p(y)} / {_p(b)}"))


@rule(_T + "__rdiv__", _T + "__rtruediv__")
def _rdiv(node, ctx):            # c / x: args (x, c)
    x, y, g = node.args[0], ctx.out(0), ctx.g(0)
    return [Back(x, unbroadcast(f"-{g} * {_p(y)} / {_p(ctx.x(x))}",
                                ctx.shape(Ref(node.outs[0])), ctx.shape(x)))]


@rule(*_ops("neg", "negative", "__neg__"))
def _neg(node, ctx):
    return [Back(node.args[0], f"-{ctx.g(0)}")]


@rule(*_ops("pow", "pow_", "__ipow__", "__pow__", "float_power"))
def _pow(node, ctx):
    base, e = node.args[0], _arg(node, 1, "exponent")
    g, y = ctx.g(0), ctx.out(0)
    out = ctx.shape(Ref(node.outs[0]))
    backs = []
    if isinstance(base, Ref):
        if isinstance(e, Ref):
            expr = f"{g} * {ctx.x(e)} * {_p(ctx.x(base))} ** ({ctx.x(e)} - 1)"
        else:
            expr = power_back(g, _p(ctx.x(base)), e, _lit)
        backs.append(Back(base, unbroadcast(expr, out, ctx.shape(base)), view=expr == g))
    if isinstance(e, Ref):
        b = _p(ctx.x(base)) if isinstance(base, Ref) else _lit(base)
        backs.append(Back(e, unbroadcast(f"{g} * {_p(y)} * np.log({b})", out, ctx.shape(e))))
    return backs


@rule(_T + "__rpow__")
def _rpow(node, ctx):            # c ** x: args (x, c)
    x, c = node.args[0], node.args[1]
    if not isinstance(c, (int, float)) or c <= 0:
        raise NoRule("a base that is not a positive number")
    return [Back(x, f"{ctx.g(0)} * {_p(ctx.out(0))} * {_lit(math.log(c))}")]


def _unary(names, grad, functional=False):
    """Register ``grad(x, y, g)`` for an elementwise function of one tensor."""

    def fn(node, ctx):
        x = node.args[0] if node.args else node.kw().get("input")
        return [Back(x, grad(_p(ctx.x(x)), _p(ctx.out(0)), ctx.g(0), node),
                     rule=elementwise_words(node.op, grad("x", "y", "g", node)))]

    rule(*_ops(*names, functional=functional))(fn)
    return fn


_unary(("exp", "exp_"), lambda x, y, g, n: f"{g} * {y}")
_unary(("log", "log_"), lambda x, y, g, n: f"{g} / {x}")
_unary(("tanh", "tanh_"), lambda x, y, g, n: f"{g} * (1 - {y} ** 2)", functional=True)
_unary(("sigmoid", "sigmoid_"), lambda x, y, g, n: f"{g} * {y} * (1 - {y})", functional=True)
_unary(("relu", "relu_"), lambda x, y, g, n: f"{g} * ({y} > 0)", functional=True)
_unary(("sqrt", "sqrt_"), lambda x, y, g, n: f"{g} / (2 * {y})")
_unary(("rsqrt", "rsqrt_"), lambda x, y, g, n: f"{g} * (-0.5 * {y} ** 3)")
_unary(("abs", "abs_", "absolute"), lambda x, y, g, n: f"{g} * np.sign({x})")
_unary(("sin", "sin_"), lambda x, y, g, n: f"{g} * np.cos({x})")
_unary(("cos", "cos_"), lambda x, y, g, n: f"-{g} * np.sin({x})")
_unary(("log1p",), lambda x, y, g, n: f"{g} / (1 + {x})")
_unary(("expm1",), lambda x, y, g, n: f"{g} * ({y} + 1)")
_unary(("square",), lambda x, y, g, n: f"{g} * (2 * {x})")
_unary(("reciprocal",), lambda x, y, g, n: f"-{g} * {y} ** 2")
_unary(("silu",), lambda x, y, g, n: f"{g} * (1 / (1 + np.exp(-{x}))) * (1 + {x} * "
                                     f"(1 - 1 / (1 + np.exp(-{x}))))", functional=True)


@rule(*_ops("gelu", functional=True, tensor=False))
def _gelu(node, ctx):
    """GELU, exact (``x Φ(x)``) or with ``approximate='tanh'``, as torch differentiates each.

    Exact: ``Φ(x) + x φ(x)``, with ``Φ(x) = (1 + erf(x / √2)) / 2``. NumPy has no erf:
    the line takes ``math.erf`` elementwise (``np.vectorize``), exact to float64.
    """
    approximate = _arg(node, 1, "approximate", "none")
    x, g = _p(ctx.x(node.args[0])), ctx.g(0)
    if approximate == "none":
        cdf = ctx.tmp("cdf")
        setup = (f"{cdf} = 0.5 * (1 + np.vectorize(math.erf, otypes=[{x}.dtype])"
                 f"({x} / math.sqrt(2)))",)
        expr = f"{g} * ({cdf} + {x} * np.exp(-0.5 * {x} ** 2) / math.sqrt(2 * math.pi))"
        return [Back(node.args[0], expr, setup, rule="gelu: Φ(x) + x φ(x)")]
    if approximate != "tanh":
        raise NoRule(f"gelu with approximate={approximate!r}")
    k = "0.7978845608028654"                      # sqrt(2 / pi)
    t = ctx.tmp("tanh_gelu")
    setup = (f"{t} = np.tanh({k} * ({x} + 0.044715 * {x} ** 3))",)
    expr = (f"{g} * (0.5 * (1 + {t}) + 0.5 * {x} * (1 - {t} ** 2) * {k} * "
            f"(1 + 3 * 0.044715 * {x} ** 2))")
    return [Back(node.args[0], expr, setup)]


@rule(*_ops("clone", "contiguous", "alias"))
def _identity(node, ctx):
    return [Back(node.args[0], ctx.g(0), view=True)]


@rule(*_ops("float", "double", "half", "bfloat16", "to", "type", "type_as", torch=False))
def _cast(node, ctx):
    """A cast: the gradient goes back cast to the dtype of the value cast (as torch does).

    The dtype is read from the value itself (``x_np.dtype``), not written as a literal, so
    that the same lines run in float64 on the check's float64 replay.
    """
    x = node.args[0]
    return [Back(x, f"{ctx.g(0)}.astype({ctx.x(x)}.dtype)", rule="cast: back to x's dtype")]


@rule(*_ops("maximum", "minimum", "fmax", "fmin"))
def _maximum(node, ctx):
    a, b = node.args[0], node.args[1]
    g, op = ctx.g(0), node.op.rsplit(".", 1)[1]
    win = ">" if op in ("maximum", "fmax") else "<"
    xa, xb = _x(ctx, a), _x(ctx, b)
    out = ctx.shape(Ref(node.outs[0]))
    # torch: the gradient is shared half and half at a tie
    ga = f"{g} * (({_p(xa)} {win} {_p(xb)}) + 0.5 * ({_p(xa)} == {_p(xb)}))"
    gb = f"{g} * (({_p(xb)} {win} {_p(xa)}) + 0.5 * ({_p(xa)} == {_p(xb)}))"
    return [Back(r, unbroadcast(e, out, ctx.shape(r))) for r, e in ((a, ga), (b, gb))
            if isinstance(r, Ref)]


@rule(*_ops("clamp", "clip", "clamp_", "clip_"))
def _clamp(node, ctx):
    x = node.args[0]
    lo, hi = _arg(node, 1, "min"), _arg(node, 2, "max")
    if isinstance(lo, Ref) or isinstance(hi, Ref):
        raise NoRule("clamp with tensor bounds")
    xs = _p(ctx.x(x))
    mask = " & ".join(([f"({xs} >= {_lit(lo)})"] if lo is not None else [])
                      + ([f"({xs} <= {_lit(hi)})"] if hi is not None else [])) or "True"
    return [Back(x, f"{ctx.g(0)} * ({mask})")]


# -- products: the swap trick ----------------------------------------------------------------


def _swap(ctx, equation: str, operands, rule_words=""):
    """One Back per Ref operand of ``equation`` (derived with the node's shapes)."""
    from ...core.derivation import derive

    names = tuple(ctx.x(o) for o in operands)
    if len(set(names)) != len(names):
        names = tuple(f"{n}" for n in names)
    d = derive(equation, names=names, output=ctx.gname(0),
               shapes=tuple(ctx.shape(o) for o in operands))
    backs = []
    for g, o in zip(d.grads, operands):
        if isinstance(o, Ref):
            expr = g.code.split(" = ", 1)[1]
            backs.append(Back(o, expr, view=True,
                              rule=rule_words or f"swap: {g.equation}"))
    return backs


def _matmul_equation(sa, sb) -> str:
    if len(sa) == 1 and len(sb) == 1:
        return "j,j->"
    if len(sa) == 1:
        return "j,...jk->...k"
    if len(sb) == 1:
        return "...ij,j->...i"
    return "...ij,...jk->...ik"


@rule(*_ops("matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "dot", "inner"))
def _matmul(node, ctx):
    a, b = node.args[0], node.args[1]
    if node.op.endswith("__rmatmul__"):
        a, b = b, a
    if node.op.endswith(("mm", "bmm", "mv", "matmul")) or node.op.endswith("__matmul__"):
        eq = _matmul_equation(ctx.shape(a), ctx.shape(b))
    elif node.op.endswith("inner"):
        eq = "...j,...j->..."
        if len(ctx.shape(a)) > 1 or len(ctx.shape(b)) > 1:
            raise NoRule("inner of tensors of more than one dimension")
    else:
        eq = "j,j->"
    return _swap(ctx, eq, (a, b))


@rule("torch.nn.functional.linear")
def _linear(node, ctx):
    x, w = node.args[0], _arg(node, 1, "weight")
    bias = _arg(node, 2, "bias")
    eq = "...i,oi->...o" if len(ctx.shape(w)) == 2 else "...i,i->..."
    backs = _swap(ctx, eq, (x, w))
    if isinstance(bias, Ref):
        backs.append(Back(bias, unbroadcast(ctx.g(0), ctx.shape(Ref(node.outs[0])),
                                            ctx.shape(bias)), view=True))
    return backs


@rule("torch.einsum")
def _einsum(node, ctx):
    eq, *ops = node.args
    if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = list(ops[0])
    if not isinstance(eq, str):
        raise NoRule("einsum in the interleaved form")
    return _swap(ctx, eq.replace(" ", ""), tuple(ops))


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@rule(_T + "T", _T + "mT", _T + "t", "torch.t", *_ops("transpose", "swapaxes", "swapdims",
                                                      "permute", "movedim", "moveaxis"))
def _permute(node, ctx):
    x = node.args[0]
    n = len(ctx.shape(x))
    short = node.op.rsplit(".", 1)[1]
    order = list(range(n))
    if short in ("T", "t"):
        order = order[::-1]
    elif short == "mT":
        order[-2:] = order[-2:][::-1]
    elif short in ("transpose", "swapaxes", "swapdims"):
        d0, d1 = _arg(node, 1, "dim0"), _arg(node, 2, "dim1")
        d0, d1 = d0 % n, d1 % n
        order[d0], order[d1] = order[d1], order[d0]
    elif short == "permute":
        dims = node.args[1:] if len(node.args) > 2 or not isinstance(
            _arg(node, 1, "dims"), (list, tuple)) else _arg(node, 1, "dims")
        order = [d % n for d in dims]
    else:
        src, dst = _arg(node, 1, "source"), _arg(node, 2, "destination")
        src = [src] if isinstance(src, int) else list(src)
        dst = [dst] if isinstance(dst, int) else list(dst)
        rest = [d for d in range(n) if d not in [s % n for s in src]]
        order = [None] * n
        for s, d in zip(src, dst):
            order[d % n] = s % n
        it = iter(rest)
        order = [o if o is not None else next(it) for o in order]
    letters = _LETTERS[:n]
    eq = f"{letters}->{''.join(letters[o] for o in order)}"
    return _swap(ctx, eq, (x,))


# -- shapes ----------------------------------------------------------------------------------


@rule(*_ops("view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "ravel",
            "view_as", "reshape_as", "squeeze_", "unsqueeze_"))
def _reshape(node, ctx):
    x = node.args[0]
    return [Back(x, f"{ctx.g(0)}.reshape({tuple(ctx.shape(x))})", view=True)]


@rule(*_ops("expand", "expand_as", "broadcast_to", torch=False), "torch.broadcast_to")
def _expand(node, ctx):
    x = node.args[0]
    return [Back(x, unbroadcast(ctx.g(0), ctx.shape(Ref(node.outs[0])), ctx.shape(x)),
                 view=True)]


def _bracket(key, ctx) -> str:
    """The inside of ``[...]`` for an index as torch received it."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for k in parts:
        if isinstance(k, Ref):
            out.append(ctx.x(k))
        elif isinstance(k, slice):
            a = "" if k.start is None else repr(k.start)
            b = "" if k.stop is None else repr(k.stop)
            out.append(f"{a}:{b}" + ("" if k.step is None else f":{k.step!r}"))
        elif k is None:
            out.append("None")
        elif k is Ellipsis:
            out.append("...")
        elif isinstance(k, range):
            args = [k.start, k.stop] + ([k.step] if k.step != 1 else [])
            out.append(f"np.arange({', '.join(map(repr, args))})" if k.start else
                       f"np.arange({k.stop!r}{'' if k.step == 1 else ', ' + repr(k.step)})")
        elif isinstance(k, (int, list)) and not isinstance(k, bool):
            out.append(repr(k))
        else:
            raise NoRule(f"an index of type {type(k).__name__}")
    return ", ".join(out) if len(parts) > 1 or not isinstance(key, tuple) else out[0] + ","


def _gathers(key, ctx) -> bool:
    """Whether an index holds integer arrays (repeats possible: scatter-add, not assign)."""
    parts = key if isinstance(key, tuple) else (key,)
    for k in parts:
        if isinstance(k, (range, list)):
            return True
        if isinstance(k, Ref) and not ctx.dtype(k).startswith("bool"):
            return True
    return False


def _index_tuple(key, ctx) -> str:
    inner = _bracket(key, ctx)
    parts = key if isinstance(key, tuple) else (key,)
    if any(isinstance(k, slice) or k is None or k is Ellipsis for k in parts):
        return f"np.s_[{inner}]"
    return inner if not isinstance(key, tuple) else f"({inner})"


@rule(_T + "__getitem__")
def _getitem(node, ctx):
    x, key = node.args
    return [getitem_back(x, ctx, _bracket(key, ctx),
                         _index_tuple(key, ctx) if _gathers(key, ctx) else None)]


@rule(_T + "__setitem__")
def _setitem(node, ctx):
    x, key, value = node.args

    def shape():
        import numpy as np

        return np.empty(ctx.shape(Ref(node.outs[0])))[_numpy_key(key, ctx)].shape

    return setitem_backs(x, value, ctx, _bracket(key, ctx), shape)


def _numpy_key(key, ctx):
    parts = key if isinstance(key, tuple) else (key,)
    out = tuple(ctx.value(k) if isinstance(k, Ref) else k for k in parts)
    return out if isinstance(key, tuple) else out[0]


@rule("torch.nn.functional.embedding", "torch.embedding")
def _embedding(node, ctx):
    idx, w = node.args[0], _arg(node, 1, "weight")
    if node.op == "torch.embedding":
        w, idx = node.args[0], node.args[1]
    pad = _arg(node, 2, "padding_idx") if node.op.endswith("functional.embedding") else None
    if node.kw().get("max_norm") is not None:
        raise NoRule("embedding with max_norm (it renormalizes the weight in place)")
    g, t = ctx.g(0), ctx.tmp("scatter")
    setup = [f"{t} = np.zeros_like({ctx.x(w)})", f"np.add.at({t}, {ctx.x(idx)}, {g})"]
    if pad is not None:
        setup.append(f"{t}[{pad!r}] = 0")
    return [Back(w, t, tuple(setup), rule="gather: its backward scatter-adds")]


@rule(*_ops("index_select"))
def _index_select(node, ctx):
    """``x.index_select(dim, index)``: the rows ``index`` picks along ``dim``; its backward
    scatter-adds them back (repeated indices add up)."""
    x, dim, idx = node.args[0], _arg(node, 1, "dim"), _arg(node, 2, "index")
    if not isinstance(dim, int) or not isinstance(idx, Ref):
        raise NoRule("index_select with a dim or index that is not a constant int and a tensor")
    dim %= max(len(ctx.shape(x)), 1)
    g, t = ctx.g(0), ctx.tmp("scatter")
    at = (f"np.add.at({t}, {ctx.x(idx)}, {g})" if dim == 0 else
          f"np.add.at(np.moveaxis({t}, {dim}, 0), {ctx.x(idx)}, np.moveaxis({g}, {dim}, 0))")
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})", at),
                 rule=f"index_select(dim={dim}): its backward scatter-adds along dim {dim}")]


@rule(*_ops("gather"))
def _gather(node, ctx):
    """``x.gather(dim, index)``: out[i][j] = x[i][index[i][j]] (dim 1); its backward
    scatter-adds along ``dim`` (repeated indices add up), the other axes index themselves."""
    x, dim, idx = node.args[0], _arg(node, 1, "dim"), _arg(node, 2, "index")
    if not isinstance(dim, int) or not isinstance(idx, Ref):
        raise NoRule("gather with a dim or index that is not a constant int and a tensor")
    n = len(ctx.shape(x))
    dim %= max(n, 1)
    g, t, at = ctx.g(0), ctx.tmp("scatter"), ctx.tmp("at")
    index = ", ".join(ctx.x(idx) if a == dim else f"{at}[{a}]" for a in range(n))
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})",
                        f"{at} = np.indices({ctx.x(idx)}.shape, sparse=True)",
                        f"np.add.at({t}, ({index},), {g})"),
                 rule=f"gather(dim={dim}): its backward scatter-adds along dim {dim}")]


@rule("torch.cat", "torch.concat", "torch.concatenate")
def _cat(node, ctx):
    tensors, dim = node.args[0], _arg(node, 1, "dim", 0)
    n = len(ctx.shape(Ref(node.outs[0])))
    dim %= n
    start, backs = 0, []
    for t in tensors:
        size = ctx.shape(t)[dim] if isinstance(t, Ref) else 0
        if isinstance(t, Ref):
            backs.append(Back(t, f"{ctx.g(0)}[{':, ' * dim}{start}:{start + size}]", view=True))
        start += size
    return backs


@rule("torch.stack")
def _stack(node, ctx):
    tensors, dim = node.args[0], _arg(node, 1, "dim", 0)
    n = len(ctx.shape(Ref(node.outs[0])))
    dim %= n
    return [Back(t, f"{ctx.g(0)}[{':, ' * dim}{k}]", view=True)
            for k, t in enumerate(tensors) if isinstance(t, Ref)]


@rule(*_ops("masked_fill", "masked_fill_"))
def _masked_fill(node, ctx):
    x, mask, value = node.args[0], _arg(node, 1, "mask"), _arg(node, 2, "value")
    g = ctx.g(0)
    m = ctx.x(mask)
    backs = [Back(x, unbroadcast(f"np.where({m}, 0, {g})", ctx.shape(Ref(node.outs[0])),
                                 ctx.shape(x)))]
    if isinstance(value, Ref):
        backs.append(Back(value, f"np.where({m}, {g}, 0).sum().reshape({ctx.shape(value)})"))
    return backs


@rule("torch.where", _T + "where")
def _where(node, ctx):
    if len(node.args) == 1:
        raise NoRule("where with one argument")
    if node.op == _T + "where":                  # x.where(cond, y)
        a, cond, b = node.args[0], node.args[1], node.args[2]
    else:
        cond, a, b = node.args[0], node.args[1], node.args[2]
    g, c, out = ctx.g(0), ctx.x(cond), ctx.shape(Ref(node.outs[0]))
    backs = []
    for r, e in ((a, f"np.where({c}, {g}, 0)"), (b, f"np.where({c}, 0, {g})")):
        if isinstance(r, Ref):
            backs.append(Back(r, unbroadcast(e, out, ctx.shape(r))))
    return backs


# -- reductions -------------------------------------------------------------------------------


def _reduced(node, ctx, x, dim, keepdim) -> tuple[str, tuple[int, ...], int]:
    """(the cotangent with the reduced axes restored as size 1, those axes, their count)."""
    shape = ctx.shape(x)
    axes = _dims(dim, len(shape))
    g = ctx.g(0)
    count = 1
    for a in axes:
        count *= shape[a] if shape else 1
    if not keepdim and dim is not None and len(shape) > 0:
        g = f"np.expand_dims({g}, {axes[0] if len(axes) == 1 else axes})"
    return g, axes, count


def _keepdim(node, i=2):
    return bool(_arg(node, i, "keepdim", node.kw().get("keepdims", False)))


@rule(*_ops("sum", "nansum"))
def _sum(node, ctx):
    x, dim = node.args[0], _arg(node, 1, "dim", node.kw().get("axis"))
    g, _, _ = _reduced(node, ctx, x, dim, _keepdim(node))
    return [Back(x, f"np.broadcast_to({g}, {tuple(ctx.shape(x))})", view=True,
                 rule="sum: its backward broadcasts")]


@rule(*_ops("mean"))
def _mean(node, ctx):
    x, dim = node.args[0], _arg(node, 1, "dim", node.kw().get("axis"))
    g, _, count = _reduced(node, ctx, x, dim, _keepdim(node))
    return [Back(x, f"np.broadcast_to({_p(g)} / {count}, {tuple(ctx.shape(x))})", view=True,
                 rule="mean: its backward broadcasts, divided by the count")]


def _correction(node) -> float:
    kw = node.kw()
    if "correction" in kw and kw["correction"] is not None:
        return float(kw["correction"])
    unbiased = kw.get("unbiased")
    if unbiased is None and len(node.args) > 1 and isinstance(node.args[1], bool):
        unbiased = node.args[1]
    return 1.0 if unbiased is None or unbiased else 0.0


def _var_dim(node):
    dim = _arg(node, 1, "dim", node.kw().get("axis"))
    return None if isinstance(dim, bool) else dim


@rule(*_ops("var"))
def _var(node, ctx):
    x = node.args[0]
    dim = _var_dim(node)
    keep = bool(node.kw().get("keepdim", node.kw().get("keepdims", False)))
    g, axes, count = _reduced(node, ctx, x, dim, keep)
    xs = _p(ctx.x(x))
    ax = axes[0] if len(axes) == 1 else axes
    n = count - _correction(node)
    return [Back(x, f"{_p(g)} * 2 * ({xs} - {xs}.mean(axis={ax}, keepdims=True)) / {n!r}",
                 rule="var: 2 (x - mean) / (N - correction)")]


@rule(*_ops("std"))
def _std(node, ctx):
    x = node.args[0]
    dim = _var_dim(node)
    keep = bool(node.kw().get("keepdim", node.kw().get("keepdims", False)))
    g, axes, count = _reduced(node, ctx, x, dim, keep)
    xs = _p(ctx.x(x))
    y = ctx.out(0)
    if not keep and dim is not None:
        y = f"np.expand_dims({y}, {axes[0] if len(axes) == 1 else axes})"
    ax = axes[0] if len(axes) == 1 else axes
    n = count - _correction(node)
    return [Back(x, f"{_p(g)} * ({xs} - {xs}.mean(axis={ax}, keepdims=True)) / "
                    f"({n!r} * {_p(y)})", rule="std: (x - mean) / ((N - correction) std)")]


@rule(*_ops("max", "min", "amax", "amin"))
def _max(node, ctx):
    x = node.args[0]
    other = _arg(node, 1, "dim", node.kw().get("other"))
    if isinstance(other, Ref):                     # torch.max(a, b): maximum
        return _maximum(node, ctx)
    short = node.op.rsplit(".", 1)[1]
    xs, g = ctx.x(x), ctx.g(0)
    if g is None:
        return []
    if short in ("max", "min") and other is not None and len(node.outs) == 2:
        # max(dim): the gradient goes to the index torch returned (its tie-break)
        dim = other % max(len(ctx.shape(x)), 1)
        keep = _keepdim(node)
        idx = ctx.out(1)
        if not keep:
            idx, g = f"np.expand_dims({idx}, {dim})", f"np.expand_dims({g}, {dim})"
        t = ctx.tmp("scatter")
        return [Back(x, t, (f"{t} = np.zeros_like({xs})",
                            f"np.put_along_axis({t}, {idx}, {g}, axis={dim})"),
                     rule=f"{short}(dim): to the index torch picked")]
    # a full max() / amax(): evenly over ties, as torch does
    dim = other if short in ("amax", "amin") else None
    keep = _keepdim(node) if short in ("amax", "amin") else False
    y = ctx.out(0)
    ge, axes, _ = _reduced(node, ctx, x, dim, keep)
    if not keep and dim is not None:
        y = f"np.expand_dims({y}, {axes[0] if len(axes) == 1 else axes})"
    ax = "None" if dim is None else (axes[0] if len(axes) == 1 else axes)
    m = ctx.tmp("ties")
    return [Back(x, f"{_p(ge)} * {m} / {m}.sum(axis={ax}, keepdims=True)",
                 (f"{m} = {_p(xs)} == {_p(y)}",),
                 rule=f"{short}: evenly over ties, as torch does")]


@rule(*_ops("logsumexp"))
def _logsumexp(node, ctx):
    x, dim = node.args[0], _arg(node, 1, "dim")
    keep = _keepdim(node)
    g, axes, _ = _reduced(node, ctx, x, dim, keep)
    y = ctx.out(0)
    if not keep:
        y = f"np.expand_dims({y}, {axes[0] if len(axes) == 1 else axes})"
    return [Back(x, f"{_p(g)} * np.exp({_p(ctx.x(x))} - {_p(y)})")]


# -- library layers and losses: closed forms ---------------------------------------------------


def _softmax_dim(node, ctx, x):
    dim = _arg(node, 1, "dim")
    n = len(ctx.shape(x))
    if dim is None:                   # torch's legacy choice without dim
        dim = 0 if n in (0, 1, 3) else 1
    return dim % max(n, 1)


@rule(*_ops("softmax", functional=True))
def _softmax(node, ctx):
    x = node.args[0]
    dim, y, g = _softmax_dim(node, ctx, x), _p(ctx.out(0)), ctx.g(0)
    return [Back(x, f"{y} * ({g} - ({g} * {y}).sum(axis={dim}, keepdims=True))",
                 rule="softmax: y (g - <g, y>)")]


@rule(*_ops("log_softmax", functional=True))
def _log_softmax(node, ctx):
    x = node.args[0]
    dim, y, g = _softmax_dim(node, ctx, x), _p(ctx.out(0)), ctx.g(0)
    return [Back(x, f"{g} - np.exp({y}) * {_p(g)}.sum(axis={dim}, keepdims=True)",
                 rule="log_softmax: g - softmax * sum(g)")]


@rule("torch.nn.functional.cross_entropy")
def _cross_entropy(node, ctx):
    x, y = node.args[0], _arg(node, 1, "target")
    kw = node.kw()
    if _arg(node, 2, "weight") is not None:
        raise NoRule("cross_entropy with class weights")
    reduction = kw.get("reduction", "mean")
    if kw.get("size_average") is not None or kw.get("reduce") is not None:
        raise NoRule("cross_entropy with the deprecated size_average / reduce")
    eps = float(kw.get("label_smoothing", 0.0))
    ignore = kw.get("ignore_index", -100)
    shape = ctx.shape(x)
    if len(shape) not in (1, 2):
        raise NoRule("cross_entropy over more than (N, C)")
    axis = len(shape) - 1
    xs, g, p = _p(ctx.x(x)), ctx.g(0), ctx.tmp("softmax")
    setup = [f"{p} = np.exp({xs} - {xs}.max(axis={axis}, keepdims=True))",
             f"{p} /= {p}.sum(axis={axis}, keepdims=True)"]
    C = shape[-1]
    if isinstance(y, Ref) and ctx.dtype(y).startswith("float"):       # probabilities
        ys = _p(ctx.x(y))
        if eps:
            setup.append(f"{p} -= {ys} * {1 - eps!r} + {eps / C!r}")
        else:
            setup.append(f"{p} -= {ys}")
        count = shape[0] if len(shape) == 2 else 1
        valid = None
    else:
        ys = ctx.x(y)
        labels = ctx.value(y)
        rows = f"np.arange({shape[0]})" if len(shape) == 2 else None
        valid = None
        import numpy as np

        if np.any(labels == ignore):
            valid = ctx.tmp("counted")
            setup.insert(0, f"{valid} = {ys} != {ignore!r}")
            ys = f"np.where({valid}, {ys}, 0)"
        at = f"{rows}, {ys}" if rows else ys
        if eps:
            setup.append(f"{p} -= {eps / C!r}")
        setup.append(f"{p}[{at}] -= {1 - eps!r}")
        if valid is not None:
            setup.append(f"{p} *= {valid}[:, None]" if rows else f"{p} *= {valid}")
        count = int(np.sum(labels != ignore)) if len(shape) == 2 else 1
    if reduction == "mean":
        expr = f"{p} * ({g} / {count})"
    elif reduction == "sum":
        expr = f"{p} * {g}"
    elif reduction == "none":
        expr = f"{p} * {g}[:, None]" if len(shape) == 2 else f"{p} * {g}"
    else:
        raise NoRule(f"cross_entropy with reduction={reduction!r}")
    return [Back(x, expr, tuple(setup), rule="cross_entropy: softmax - one-hot, over the count")]


@rule("torch.nn.functional.nll_loss")
def _nll_loss(node, ctx):
    x, y = node.args[0], _arg(node, 1, "target")
    kw = node.kw()
    if _arg(node, 2, "weight") is not None or kw.get("ignore_index", -100) != -100:
        raise NoRule("nll_loss with weights or ignore_index")
    shape = ctx.shape(x)
    if len(shape) != 2:
        raise NoRule("nll_loss over more than (N, C)")
    reduction = kw.get("reduction", "mean")
    g, t = ctx.g(0), ctx.tmp("scatter")
    scale = {"mean": f"-{g} / {shape[0]}", "sum": f"-{g}", "none": f"-{g}"}.get(reduction)
    if scale is None:
        raise NoRule(f"nll_loss with reduction={reduction!r}")
    return [Back(x, t, (f"{t} = np.zeros_like({ctx.x(x)})",
                        f"{t}[np.arange({shape[0]}), {ctx.x(y)}] = {scale}"))]


@rule("torch.nn.functional.mse_loss")
def _mse_loss(node, ctx):
    a, b = node.args[0], _arg(node, 1, "target")
    reduction = node.kw().get("reduction", "mean")
    n = 1
    for s in ctx.shape(a):
        n *= s
    g = ctx.g(0)
    scale = {"mean": f"2 * {_p(g)} / {n}", "sum": f"2 * {_p(g)}", "none": f"2 * {_p(g)}"}
    if reduction not in scale:
        raise NoRule(f"mse_loss with reduction={reduction!r}")
    diff = f"({_x(ctx, a)} - {_x(ctx, b)})"
    backs = []
    if isinstance(a, Ref):
        backs.append(Back(a, f"{scale[reduction]} * {diff}"))
    if isinstance(b, Ref):
        backs.append(Back(b, f"-{scale[reduction]} * {diff}"))
    return backs


@rule("torch.nn.functional.layer_norm")
def _layer_norm(node, ctx):
    x, ns = node.args[0], _arg(node, 1, "normalized_shape")
    w, b = _arg(node, 2, "weight"), _arg(node, 3, "bias")
    eps = _arg(node, 4, "eps", 1e-5)
    shape = ctx.shape(x)
    k = len(tuple(ns)) if isinstance(ns, (tuple, list)) else 1
    axes = tuple(range(len(shape) - k, len(shape)))
    lead = tuple(range(len(shape) - k))
    ax = axes[0] if len(axes) == 1 else axes
    xs, g = _p(ctx.x(x)), ctx.g(0)
    inv, xhat, gh = ctx.tmp("inv_std"), ctx.tmp("xhat"), ctx.tmp("dxhat")
    setup = [f"{inv} = 1 / np.sqrt({xs}.var(axis={ax}, keepdims=True) + {eps!r})",
             f"{xhat} = ({xs} - {xs}.mean(axis={ax}, keepdims=True)) * {inv}",
             f"{gh} = {g} * {ctx.x(w)}" if isinstance(w, Ref) else f"{gh} = {g}"]
    backs = [Back(x, f"{inv} * ({gh} - {gh}.mean(axis={ax}, keepdims=True) - {xhat} * "
                     f"({gh} * {xhat}).mean(axis={ax}, keepdims=True))", tuple(setup),
                  rule="layer_norm: its closed form")]
    if isinstance(w, Ref):
        red = f".sum(axis={lead[0] if len(lead) == 1 else lead})" if lead else ""
        backs.append(Back(w, f"({g} * {xhat}){red}"))
    if isinstance(b, Ref):
        red = f".sum(axis={lead[0] if len(lead) == 1 else lead})" if lead else ""
        backs.append(Back(b, f"{_p(g)}{red}", view=not lead))
    return backs


@rule("torch.nn.functional.batch_norm")
def _batch_norm(node, ctx):
    x = node.args[0]
    rm, rv = _arg(node, 1, "running_mean"), _arg(node, 2, "running_var")
    w, b = _arg(node, 3, "weight"), _arg(node, 4, "bias")
    training = _arg(node, 5, "training", False)
    eps = _arg(node, 7, "eps", 1e-5)
    shape = ctx.shape(x)
    nd = len(shape)
    if nd < 2:
        raise NoRule("batch_norm of fewer than 2 dimensions")
    axes = (0,) + tuple(range(2, nd))
    ax = axes[0] if len(axes) == 1 else axes
    bshape = (1, shape[1]) + (1,) * (nd - 2)
    xs, g = _p(ctx.x(x)), ctx.g(0)
    inv, xhat, gh = ctx.tmp("inv_std"), ctx.tmp("xhat"), ctx.tmp("dxhat")
    scale = f"{ctx.x(w)}.reshape({bshape})" if isinstance(w, Ref) else None
    batch = training or rm is None or rv is None
    if batch:             # the batch's own statistics (biased variance), as torch's forward
        setup = [f"{inv} = 1 / np.sqrt({xs}.var(axis={ax}, keepdims=True) + {eps!r})",
                 f"{xhat} = ({xs} - {xs}.mean(axis={ax}, keepdims=True)) * {inv}",
                 f"{gh} = {g} * {scale}" if scale else f"{gh} = {g}"]
        dx = (f"{inv} * ({gh} - {gh}.mean(axis={ax}, keepdims=True) - {xhat} * "
              f"({gh} * {xhat}).mean(axis={ax}, keepdims=True))")
        words = "batch_norm (training): its closed form"
    else:                 # running statistics: a linear map of x
        setup = [f"{inv} = 1 / np.sqrt({ctx.x(rv)}.reshape({bshape}) + {eps!r})",
                 f"{xhat} = ({xs} - {ctx.x(rm)}.reshape({bshape})) * {inv}",
                 f"{gh} = {g} * {scale}" if scale else f"{gh} = {g}"]
        dx = f"{gh} * {inv}"
        words = "batch_norm (running statistics): a scaling of x"
    backs = [Back(x, dx, tuple(setup), rule=words)]
    if isinstance(w, Ref):
        backs.append(Back(w, f"({g} * {xhat}).sum(axis={ax})"))
    if isinstance(b, Ref):
        backs.append(Back(b, f"{_p(g)}.sum(axis={ax})"))
    return backs


# -- the parts of torch's decompositions (prims): what a call without a rule becomes ------------

from .registry import ALIASES  # noqa: E402

ALIASES.update({f"prims.{p}": f"torch.{t}" for p, t in {
    "exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "tanh": "tanh",
    "sqrt": "sqrt", "rsqrt": "rsqrt", "sin": "sin", "cos": "cos", "abs": "abs", "neg": "neg",
    "reciprocal": "reciprocal", "add": "add", "sub": "sub", "mul": "mul", "div": "div",
    "pow": "pow", "where": "where", "sum": "sum", "amax": "amax", "amin": "amin",
    "maximum": "maximum", "minimum": "minimum", "reshape": "reshape", "squeeze": "squeeze",
    "view_of": "clone", "clone": "clone", "transpose": "permute",
    "convert_element_type": "Tensor.to"}.items()})
ALIASES.update({f"aten.{p}": f"torch.{t}" for p, t in {
    "mm": "mm", "bmm": "bmm", "add": "add", "sub": "sub", "mul": "mul", "div": "div",
    "neg": "neg", "exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid",
    "relu": "relu", "view": "reshape", "_unsafe_view": "reshape", "reshape": "reshape",
    "t": "t", "transpose": "transpose", "permute": "permute", "expand": "Tensor.expand",
    "clone": "clone", "sum": "sum", "mean": "mean", "pow": "pow", "where": "where",
    "amax": "amax", "_softmax": "softmax", "_log_softmax": "log_softmax", "rsqrt": "rsqrt",
    "sqrt": "sqrt", "unsqueeze": "unsqueeze", "squeeze": "squeeze"}.items()})


@rule("prims.broadcast_in_dim")
def _broadcast_in_dim(node, ctx):
    x, shape, kept = node.args[0], node.args[1], node.args[2]
    g = ctx.g(0)
    new = tuple(d for d in range(len(shape)) if d not in kept)
    expr = g if not new else f"{_p(g)}.sum(axis={new[0] if len(new) == 1 else new})"
    mid = tuple(shape[d] for d in kept)
    return [Back(x, unbroadcast(expr, mid, ctx.shape(x)), view=not new)]


ALIASES["prims.broadcast_in_dim"] = "prims.broadcast_in_dim"


@rule("torch.nn.functional.dropout")
def _dropout(node, ctx):
    p, training = _arg(node, 1, "p", 0.5), _arg(node, 2, "training", True)
    if training and p:
        raise NoRule("dropout in training mode (its mask is a draw of the run)")
    return [Back(node.args[0], ctx.g(0), view=True, rule="dropout off: the identity")]


@rule(*_ops("split", "chunk", "unbind", "tensor_split", "split_with_sizes"))
def _split(node, ctx):
    x = node.args[0]
    short = node.op.rsplit(".", 1)[1]
    shape = ctx.shape(x)
    dim = _arg(node, 2, "dim", 0) if short != "unbind" else _arg(node, 1, "dim", 0)
    dim %= len(shape)
    t = ctx.tmp("pieces")
    setup = [f"{t} = np.zeros_like({ctx.x(x)})"]
    start = 0
    for k, o in enumerate(node.outs):
        size = 1 if short == "unbind" else ctx.shape(Ref(o))[dim]
        g = ctx.g(k)
        if g is not None:
            at = f"{':, ' * dim}{start}" + ("" if short == "unbind" else f":{start + size}")
            setup.append(f"{t}[{at}] = {g}")
        start += size
    return [Back(x, t, tuple(setup), rule=f"{short}: the pieces put back")]


@rule("torch.constant")
def _constant(node, ctx):
    """A value made from an input's shape or dtype alone (``full_like``): no gradient."""
    return []


ALIASES.update({k: "torch.constant" for k in (
    "aten.full_like", "aten.zeros_like", "aten.ones_like", "aten.empty_like",
    "aten.new_zeros", "aten.new_ones", "aten.new_full", "aten.new_empty", "aten.scalar_tensor",
    "prims.full_like", "prims.empty_strided", "prims.full", "prims.iota", "prims.scalar_tensor",
    "aten.empty_strided", "aten.zeros", "aten.ones", "aten.full")})
