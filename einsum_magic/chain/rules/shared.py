"""What every framework's rules write alike: parentheses, broadcasting summed back, and the
backward of indexing (a gather scatter-adds, a slice is zero-padded back, a write
zeroes what it overwrote).

The rule modules (:mod:`~einsum_magic.chain.rules.numpy`, ``torch``, ``jax``) read their
framework's own calls; the NumPy lines they write back are the same, and are written here.
"""

from __future__ import annotations

import re
from typing import Callable

from ..record import Ref
from .registry import Back

__all__ = ["paren", "unbroadcast", "power_back", "parts_back", "elementwise_words", "getitem_back",
           "setitem_backs"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*|\d+(\.\d*)?")
_CALL = re.compile(r"[A-Za-z_][A-Za-z_0-9.]*\(.*\)")


def paren(expr: str) -> str:
    """``expr`` in parentheses unless it is a name, a plain number or one call.

    >>> paren("x"), paren("np.exp(a)"), paren("a + f(x)"), paren("f(a) * g(b)"), paren("-x")
    ('x', 'np.exp(a)', '(a + f(x))', '(f(a) * g(b))', '(-x)')
    """
    s = expr.strip()
    if _NAME.fullmatch(s):
        return s
    if _CALL.fullmatch(s):
        depth = 0
        for k, c in enumerate(s):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and c == ")" and k != len(s) - 1:
                break                       # f(a) * g(b): two calls, not one
        else:
            return s
    return f"({s})"


def unbroadcast(expr: str, shape, to) -> str:
    """``expr`` (of ``shape``) summed back to ``to`` (what broadcasting made of it).

    >>> unbroadcast("g", (32, 64), (64,)), unbroadcast("g", (32, 64), (1, 64))
    ('g.sum(axis=0)', 'g.sum(axis=0, keepdims=True)')
    >>> unbroadcast("g", (5, 2, 3), (2, 1)), unbroadcast("g", (2, 3), (2, 3))
    ('g.sum(axis=0).sum(axis=1, keepdims=True)', 'g')
    """
    shape, to = tuple(shape), tuple(to)
    if shape == to:
        return expr
    lead = len(shape) - len(to)
    out = paren(expr)
    if lead > 0:
        axes = tuple(range(lead))
        out += f".sum(axis={axes[0] if len(axes) == 1 else axes})"
    keep = tuple(i for i, n in enumerate(to) if n == 1 and shape[lead + i] != 1)
    if keep:
        out += f".sum(axis={keep[0] if len(keep) == 1 else keep}, keepdims=True)"
    return out


def power_back(g: str, base: str, n, literal: Callable[[object], str] = repr) -> str:
    """The backward of ``base ** n`` for a number ``n`` (``literal`` writes it), read from
    the upstream gradient ``g``; written plainly where ``n`` is 0, 1 or 2.

    >>> power_back("g", "x", 0), power_back("g", "x", 1), power_back("g", "x", 2)
    ('np.zeros_like(g)', 'g', 'g * (2 * x)')
    >>> power_back("g", "(a + b)", 3), power_back("g", "x", 0.5)
    ('g * (3 * (a + b) ** 2)', 'g * (0.5 * x ** -0.5)')
    """
    if n == 0:
        return f"np.zeros_like({g})"
    if n == 1:
        return g
    if n == 2:
        return f"{g} * (2 * {base})"
    return f"{g} * ({literal(n)} * {base} ** {literal(n - 1)})"


def parts_back(g: str, parts, axis: int) -> list[Back]:
    """The backward of joining ``parts`` (``(operand, size along axis)``, in order) along
    ``axis``: each operand of the record gets its slice of ``g``; constants take theirs.

    >>> [b.expr for b in parts_back("g", [(Ref(1), 2), (3.0, 1), (Ref(2), 4)], 1)]
    ['g[:, 0:2]', 'g[:, 3:7]']
    """
    start, backs = 0, []
    for a, size in parts:
        if isinstance(a, Ref):
            backs.append(Back(a, f"{g}[{':, ' * axis}{start}:{start + size}]", view=True,
                              rule="concatenate: each part's slice"))
        start += size
    return backs


def elementwise_words(op: str, formula: str) -> str:
    """The rule of an elementwise function in the trick's words, from its own backward
    ``formula`` written over ``x`` (the input), ``y`` (the output) and ``g`` (y's gradient).

    >>> elementwise_words("numpy.tanh", "g * (1 - y ** 2)"), elementwise_words("jax.lax.neg", "-g")
    ('y = tanh(x): g * (1 - y ** 2)', 'y = neg(x): -g')
    """
    return f"y = {op.rsplit('.', 1)[-1]}(x): {formula}"


def getitem_back(x: Ref, ctx, bracket: str, gather: str | None) -> Back:
    """The backward of ``x[key]``: ``bracket`` is the key as source (inside ``[...]``);
    ``gather``, for a key of integer arrays, the index ``np.add.at`` takes (repeats add up:
    the one-hot einsum), else None (a slice or mask: the gradient zero-padded back)."""
    g, t = ctx.g(0), ctx.tmp("scatter")
    zeros = f"{t} = np.zeros_like({ctx.x(x)})"
    if gather is not None:
        return Back(x, t, (zeros, f"np.add.at({t}, {gather}, {g})"),
                    rule="gather: its backward scatter-adds (the one-hot einsum)")
    return Back(x, t, (zeros, f"{t}[{bracket}] = {g}"), rule="slice: zero-padded back")


def setitem_backs(x: Ref, value, ctx, bracket: str, shape: Callable[[], tuple]) -> list[Back]:
    """The backward of ``x[key] = value``: ``x`` gets the gradient but where it was
    overwritten; ``value`` (if it is an array of the record) the gradient there, summed
    back from ``shape()`` (the shape of ``x[key]``) to its own."""
    g, t = ctx.g(0), ctx.tmp("unset")
    backs = [Back(x, t, (f"{t} = {g}.copy()", f"{t}[{bracket}] = 0"),
                  rule="setitem: what was overwritten gets no gradient")]
    if isinstance(value, Ref):
        backs.append(Back(value, unbroadcast(f"{g}[{bracket}]", shape(), ctx.shape(value)),
                          rule="setitem: the written value takes the gradient there"))
    return backs
