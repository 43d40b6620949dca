"""The reverse program of a bound cell: one line of NumPy per gradient, in reverse order.

This module owns the backward rules of the chain. For every step read backwards, each
argument that is differentiated gets one line ``dL_d<arg> = …`` from the cotangent
``dL_d<target>``:

* an einsum: the swap trick, exactly as :func:`einsum_magic.derive` writes it (the
  derivation's engine, unchanged);
* ``+ - * /`` with broadcasting: the elementwise rule, and where the argument was broadcast
  the gradient is summed back over the broadcast axes, written as an einsum
  (``np.einsum('ab->b', dL_dH)`` for a bias);
* unary functions: their derivative, written with the forward's values
  (``dL_dt3 = dL_dP_1 * P_1`` for ``P_1 = np.exp(t3)``);
* ``max`` over axes: the cotangent goes to the maxima, shared among ties (as JAX does);
  softmax's shift is held constant and gets no line;
* ``reshape``: the cotangent reshaped back.

A value read by several steps gets one part per use (``dL_dX_1``, ``dL_dX_2``) and their
sum (the product rule), as the single-einsum derivation does for an array passed twice.
An input no sink depends on gets zeros. Each :class:`BackLine` remembers the step it comes
from.

>>> import numpy as np
>>> from einsum_magic.chain.text.reading import read
>>> from einsum_magic.chain.text.forward import bind
>>> p, _ = bind(read("H = X @ W + b"), {"X": np.ones((2, 3)), "W": np.ones((3, 4)),
...                                      "b": np.ones(4)})
>>> for b in backward_lines(p):
...     print(b.code)
dL_dt1 = dL_dH
dL_db = np.einsum('ab->b', dL_dH)
dL_dX = np.einsum('ik,jk->ij', dL_dt1, W)
dL_dW = np.einsum('ik,ij->jk', dL_dt1, X)
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ...core.derivation import derive
from ...core.names import free_name
from .forward import atom
from .program import Program, Step

__all__ = ["BackLine", "backward_lines", "differentiated", "gradient_names"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class BackLine:
    """One line of the backward program.

    ``step`` is the index of the forward step it comes from (``None`` for a product-rule
    sum or a zero gradient), ``line`` the cell's line, ``wrt`` the value whose gradient
    (or part of it) the line assigns, ``shape`` that gradient's shape and ``rule`` a few
    words on why.
    """

    code: str
    target: str
    wrt: str
    step: int | None
    line: int
    shape: tuple[int, ...] | None
    rule: str


def differentiated(program: Program, s: Step) -> tuple[int, ...]:
    """The positions of ``s``'s arguments that get a gradient through it."""
    if s.kind in ("const", "stop") or (s.kind == "max" and s.param[2]):
        return ()
    constant = {t.target for t in program.steps
                if t.kind == "const" or (t.kind == "max" and t.param[2])}
    values = set(program.values)
    return tuple(k for k, a in enumerate(s.args) if a in values and a not in constant)


def gradient_names(program: Program) -> dict[str, str]:
    """Value → the name of its gradient (``dL_d<value>``, stepping aside from the cell's names)."""
    return _names(program)[0]


def _names(program: Program):
    taken = set(program.taken) | set(program.values)
    return {v: free_name(f"dL_d{v}", taken) for v in program.values}, taken


def backward_lines(program: Program) -> tuple[BackLine, ...]:
    """The backward of a bound program (see the module docstring), sinks' cotangents given."""
    steps = program.steps
    # which values the sinks depend on, through differentiated steps
    live = set(program.sinks)
    uses: dict[str, list[tuple[int, int]]] = {}
    for i in range(len(steps) - 1, -1, -1):
        s = steps[i]
        if s.target not in live:
            continue
        for k in differentiated(program, s):
            live.add(s.args[k])
            uses.setdefault(s.args[k], []).append((i, k))
    grad, taken = _names(program)
    part_names: dict[tuple[int, int], str] = {}
    for v, where in uses.items():
        if len(where) > 1:
            for n, use in enumerate(reversed(where), 1):   # numbered in the cell's order
                part_names[use] = free_name(f"{grad[v]}_{n}", taken)
        else:
            part_names[where[0]] = grad[v]
    arg_shapes = program.shapes
    out: list[BackLine] = []
    done: dict[str, int] = {}
    for i in range(len(steps) - 1, -1, -1):
        s = steps[i]
        if s.target not in live:
            continue
        positions = differentiated(program, s)
        if not positions:
            continue
        exprs = _rules(s, positions, grad[s.target], part_names, i, program)
        for k, code, rule in exprs:
            a = s.args[k]
            out.append(BackLine(code, part_names[(i, k)], a, i, s.line,
                                arg_shapes.get(a), rule))
            done[a] = done.get(a, 0) + 1
            if len(uses[a]) > 1 and done[a] == len(uses[a]):
                parts = [part_names[u] for u in reversed(uses[a])]
                out.append(BackLine(f"{grad[a]} = " + " + ".join(parts), grad[a], a, None,
                                    s.line, arg_shapes.get(a),
                                    f"product rule: {a} is used {len(parts)} times"))
    sinks = set(program.sinks)
    for v in program.leaves:
        if v not in uses and v not in sinks:     # a sink's gradient is its given cotangent
            out.append(BackLine(f"{grad[v]} = np.zeros_like({v})", grad[v], v, None, 0,
                                arg_shapes.get(v),
                                f"no sink depends on {v} through differentiated steps"))
    return tuple(out)


def _rules(s: Step, positions, g: str, part_names: dict, i: int, program: Program):
    """``(position, code, rule)`` for each differentiated argument of step ``i``."""
    shapes = program.shapes
    y, a = s.target, s.args
    out = []
    if s.kind == "einsum":
        d = derive(s.param, names=a, output=y, shapes=[shapes[x] for x in a])
        for gr in d.grads:
            if gr.position not in positions:
                continue
            code = gr.code.replace(f"{d.cotangent}", g) if d.cotangent != g else gr.code
            assert code.startswith(f"{gr.target} = ")
            code = f"{part_names[(i, gr.position)]} = " + code[len(gr.target) + 3:]
            rule = f"swap trick: {gr.equation}"
            if gr.interpretation:
                rule += f" ({gr.interpretation})"
            out.append((gr.position, code, rule))
        return out
    for k in positions:
        target = part_names[(i, k)]
        x = a[k]
        expr, rule = _elementwise(s, k, g, shapes)
        if s.kind in ("add", "sub", "mul", "div"):
            negate = expr.startswith("-")       # negate after the sum: fewer elements
            expr, summed = _sum_back(expr[1:] if negate else expr, s.shape, shapes[x])
            expr = f"-{expr}" if negate else expr
            if summed:
                rule += f"; {x} was broadcast, so the gradient is summed back"
        out.append((k, f"{target} = {expr}", rule))
    return out


def _elementwise(s: Step, k: int, g: str, shapes: dict) -> tuple[str, str]:
    y, a = s.target, s.args
    x = a[0] if a else ""
    kind = s.kind
    if kind == "add":
        return g, "d(a + b) = da + db"
    if kind == "sub":
        return (g, "d(a - b) = da - db") if k == 0 else (f"-{g}", "d(a - b) = da - db")
    if kind == "mul":
        return f"{g} * {atom(a[1 - k])}", "product rule: d(a * b) = da * b + a * db"
    if kind == "div":
        if k == 0:
            return f"{g} / {atom(a[1])}", "d(a / b) = da / b - a db / b**2"
        return f"-{g} * {atom(a[0])} / {atom(a[1])} ** 2", "d(a / b) = da / b - a db / b**2"
    if kind == "neg":
        return f"-{g}", "d(-x) = -dx"
    if kind == "pow":
        c = s.param
        try:
            value = Fraction(c)
        except (ValueError, TypeError):
            return f"{g} * {atom(c)} * {x} ** ({c} - 1)", f"d(x ** c) = c x ** (c - 1) dx"
        less = value - 1
        less_text = str(less) if less.denominator == 1 else str(float(less))
        if less == 0:
            return f"{g} * {c}", "d(x ** c) = c x ** (c - 1) dx"
        power = x if less == 1 else f"{x} ** {atom(less_text)}"
        return f"{g} * {atom(c)} * {power}", "d(x ** c) = c x ** (c - 1) dx"
    if kind == "exp":
        return f"{g} * {y}", f"d exp(x) = exp(x) dx, and exp(x) is {y}"
    if kind == "log":
        return f"{g} / {x}", "d log(x) = dx / x"
    if kind == "tanh":
        return f"{g} * (1 - {y} ** 2)", f"d tanh(x) = (1 - tanh(x)**2) dx, and tanh(x) is {y}"
    if kind == "sin":
        return f"{g} * np.cos({x})", "d sin(x) = cos(x) dx"
    if kind == "cos":
        return f"-{g} * np.sin({x})", "d cos(x) = -sin(x) dx"
    if kind == "sqrt":
        return f"{g} / (2 * {y})", f"d sqrt(x) = dx / (2 sqrt(x)), and sqrt(x) is {y}"
    if kind == "abs":
        return f"{g} * np.sign({x})", "d |x| = sign(x) dx"
    if kind == "relu":
        return f"{g} * ({x} > 0)", "d max(x, 0) = dx where x > 0"
    if kind == "max":
        axes, keep, _ = s.param
        yk = y if keep else f"np.expand_dims({y}, {axes!r})"
        gk = g if keep else f"np.expand_dims({g}, {axes!r})"
        return (f"{gk} * ({x} == {yk}) / np.sum({x} == {yk}, axis={axes!r}, keepdims=True)",
                "d max(x) goes to the maxima, shared among ties")
    if kind == "reshape":
        return f"{g}.reshape({shapes[x]!r})", "d reshape(x) = reshape(dx) back"
    raise ValueError(f"no backward rule for a {kind} step")


def _sum_back(expr: str, out_shape, shape) -> tuple[str, bool]:
    """``expr`` (of the output's shape) summed back to ``shape`` (NumPy broadcasting)."""
    out_shape, shape = tuple(out_shape), tuple(shape)
    if out_shape == shape:
        return expr, False
    n, m = len(out_shape), len(shape)
    letters = _LETTERS[:n]
    kept = "".join(c for j, c in enumerate(letters)
                   if j >= n - m and shape[j - (n - m)] == out_shape[j] != 1
                   or (j >= n - m and out_shape[j] == 1 and shape[j - (n - m)] == 1))
    code = f"np.einsum('{letters}->{kept}', {expr})"
    kept_shape = tuple(out_shape[letters.index(c)] for c in kept)
    if kept_shape != shape:
        code += f".reshape({shape!r})"
    return code, True
