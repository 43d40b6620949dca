"""What a derivation costs: opt_einsum's report, and the learner's count by one rule.

This module owns FLOP counts for a :class:`~einsum_magic.core.derivation.Derivation` bound to
shapes:

* :func:`cost` returns a :class:`CostReport`: the forward einsum and each derived gradient einsum
  *as written* (aux tensors ``np.eye``/``np.ones`` counted as operands), each with opt_einsum's
  naive and optimised FLOPs, largest intermediate and pairwise steps
  (:func:`opt_einsum.contract_path`), plus the joint backward of
  :func:`einsum_magic.compute.plan.plan` (its ``eye``/``ones`` steps are data movement, 0 FLOPs).
* :func:`tally` counts the forward, each gradient alone and the joint backward by the one rule a
  learner can redo by hand; :func:`lesson` is its one deterministic line (the tally's summary,
  as :attr:`CostReport.summary` is the report's).

XLA's own count of the exported backward is a measurement: ``benchmarks/xla_flops.py``.

>>> from einsum_magic import derive
>>> report = cost(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
>>> report.summary
'cost: forward 48 FLOPs, backward 96 FLOPs (separate paths 96, naive 96), largest intermediate 12'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import prod

import opt_einsum

from ..core.derivation import Derivation
from ..core.equation import spell_equation
from .plan import Plan, flops_of, plan, require_shapes

__all__ = ["cost", "tally", "lesson", "Tally", "Part", "MOVEMENT", "CostReport", "Contraction"]


@dataclass(frozen=True)
class Contraction:
    """One einsum as written and opt_einsum's plan for it (:func:`opt_einsum.contract_path`)."""

    label: str                 # 'forward' or the gradient's target ('dL_dA')
    equation: str              # the einsum, letters only (bound to the shapes)
    naive_flops: int           # PathInfo.naive_cost: all operands in one loop nest
    flops: int                 # PathInfo.opt_cost: along the optimised path
    largest_intermediate: int  # PathInfo.largest_intermediate, in elements
    steps: tuple[str, ...]     # the pairwise einsums of the path, in order



@dataclass(frozen=True)
class CostReport:
    """FLOPs of the forward, of each derived gradient alone, and of the joint backward."""

    equation: str
    shapes: tuple[tuple[int, ...], ...]
    forward: Contraction
    grads: tuple[Contraction, ...]
    plan: Plan

    backward = property(lambda self: self.plan.backward_flops, doc="FLOPs of the joint backward "
                        "(:attr:`plan`): every gradient, intermediates shared.")
    separate_backward = property(lambda self: flops_of(self.grads), doc="FLOPs of the gradients "
                                 "one einsum each, each along its own optimised path.")
    naive_backward = property(lambda self: sum(g.naive_flops for g in self.grads), doc="FLOPs of "
                              "the gradients one einsum each, without a path (one loop nest each).")
    largest_intermediate = property(lambda self: self.plan.largest_intermediate,
                                    doc="Elements of the plan's largest tensor.")

    @property
    def summary(self) -> str:
        """One deterministic line for text views."""
        return (f"cost: forward {_flops(self.forward.flops)}, backward {_flops(self.backward)} "
                f"(separate paths {self.separate_backward:,}, naive {self.naive_backward:,}), "
                f"largest intermediate {self.largest_intermediate:,}")


def _flops(n: int) -> str:
    return f"{n:,} FLOP{'' if n == 1 else 's'}"


def cost(d: Derivation) -> CostReport:
    """The cost of ``d``'s forward, of each gradient, and of the joint backward.

    Raises :class:`EinsumError` when ``d`` has no shapes.

    >>> from einsum_magic import derive
    >>> r = cost(derive("i,ij,j->", shapes=((30,), (30, 40), (40,))))
    >>> r.forward.flops, r.backward, r.separate_backward
    (2460, 3660, 6090)
    >>> r.grads[1].equation, r.grads[1].steps
    (',i,j->ij', ('i,->i', 'i,j->ij'))
    """
    require_shapes(d, "the cost")
    return _cost(d)


@functools.lru_cache(maxsize=256)
def _cost(d: Derivation) -> CostReport:
    forward = _contraction("forward", d.inputs, d.result, d.sizes)
    grads = []
    for g in d.grads:
        sizes = dict(d.sizes)
        for a in g.aux:
            for c in a.subscripts:
                sizes.setdefault(c, d.sizes[a.letter])
        grads.append(_contraction(g.target, g.inputs, g.output, sizes))
    return CostReport(d.equation, d.shapes, forward, tuple(grads), plan(d))


def _contraction(label: str, inputs, output: str, sizes: dict) -> Contraction:
    shapes = [tuple(sizes[c] for c in s) for s in inputs]
    equation = spell_equation(inputs, output)
    _, info = opt_einsum.contract_path(equation, *shapes, shapes=True, optimize="auto")
    return Contraction(label, equation, int(info.naive_cost), int(info.opt_cost),
                       int(info.largest_intermediate),
                       tuple(step[2] for step in info.contraction_list))


# -- the learner's count: one rule for every einsum, data movement by its name ----------------

@dataclass(frozen=True)
class Part:
    """One step of computing an einsum, counted by one rule.

    ``kind`` is ``contraction`` (two operands, a letter summed: 2 × the product of its
    letters' sizes, a multiply and an add each), ``product`` (two operands, nothing summed:
    one multiply each), ``sum`` (one operand, letters summed: one add each), ``add`` (the
    product rule), or data movement, which costs nothing: ``transpose``, ``copy``,
    ``diagonal read``, ``diagonal write``, ``broadcast``, ``reshape``.
    """

    kind: str
    equation: str
    letters: str
    flops: int
    formula: str


#: The kinds of :class:`Part` that move data and do no arithmetic.
MOVEMENT = ("transpose", "copy", "diagonal read", "diagonal write", "broadcast", "reshape")


@dataclass(frozen=True)
class Tally:
    """What one einsum costs (``label``: ``forward``, a gradient's name, or ``backward``)."""

    label: str
    equation: str
    flops: int
    parts: tuple[Part, ...]


def _part(inputs: tuple[str, ...], output: str, sizes: dict, order: str = "") -> Part:
    """One einsum step over ``inputs`` (one or two) counted by the learner's rule."""
    equation = spell_equation(inputs, output)
    letters = "".join(dict.fromkeys("".join(inputs)))
    letters = "".join(sorted(letters, key=lambda c: (order.find(c) % (len(order) + 1), c)))
    summed = bool(set(letters) - set(output))
    n = prod(sizes[c] for c in letters)
    dots, nums = "·".join(letters) or "1", "·".join(str(sizes[c]) for c in letters) or "1"
    if len(inputs) == 2:
        flops = (2 if summed else 1) * n
        kind = "contraction" if summed else "product"
        terms = [f"2 × {dots}", f"2 × {nums}"] if summed else [dots, nums]
        return Part(kind, equation, letters, flops, _formula(terms, flops))
    (subs,) = inputs
    if summed:
        return Part("sum", equation, letters, n, _formula([dots, nums], n))
    if len(set(subs)) < len(subs):
        return Part("diagonal read", equation, letters, 0, "0 (data movement)")
    kind = "copy" if subs == output else "transpose"
    return Part(kind, equation, letters, 0, "0 (data movement)")


def _formula(terms: list, total: int) -> str:
    """``'2 × i·j = 2 × 2·3 = 12'``, each term written once (``'j = 3'``, not ``'j = 3 = 3'``)."""
    out = []
    for t in terms + [f"{total:,}"]:
        if t not in out:
            out.append(t)
    return " = ".join(out)


def lesson(d: Derivation) -> str:
    """The cost in one deterministic line, counted by :func:`tally`'s one rule.

    >>> from einsum_magic import derive
    >>> lesson(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
    'cost: forward 48 FLOPs; each gradient alone 48, 48; backward 96 FLOPs, 2 × the forward'
    >>> lesson(derive("ij->ji", shapes=((2, 3),)))
    'cost: forward 0 FLOPs (a transpose); each gradient alone 0; backward 0 FLOPs'
    """
    require_shapes(d, "the cost")
    forward, *grads, backward = _tally(d)
    line = f"cost: forward {_flops(forward.flops)}"
    if not forward.flops:
        moves = ", ".join(dict.fromkeys(p.kind for p in forward.parts if p.kind in MOVEMENT))
        line += f" (a {moves})" if moves else ""
    line += "; each gradient alone " + ", ".join(f"{g.flops:,}" for g in grads)
    line += f"; backward {_flops(backward.flops)}"
    if forward.flops and backward.flops:
        line += f", {_ratio(backward.flops / forward.flops)} × the forward"
    return line


def _ratio(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


def _movement(kind: str, equation: str) -> Part:
    return Part(kind, equation, "", 0, "0 (data movement)")


def _plan_parts(steps, sizes: dict, order: str) -> tuple[Part, ...]:
    parts = []
    for s in steps:
        if s.kind == "einsum":
            parts.append(_part(s.subscripts, s.output, sizes, order))
        elif s.kind == "add":
            parts.append(Part("add", " + ".join(s.inputs), s.output, s.flops,
                              f"{len(s.inputs) - 1} × {prod(s.shape):,} = {s.flops:,}"))
        else:
            kind = {"diagonal": "diagonal read", "scatter": "diagonal write"}.get(s.kind, s.kind)
            parts.append(_movement(kind, s.equation))
    return tuple(parts)


def _grad_parts(g, sizes: dict, order: str) -> tuple[Part, ...]:
    """A gradient alone: its contraction without np.eye/np.ones, then what they do (movement)."""
    core = g.inputs[:len(g.inputs) - len(g.aux)]
    tie = {a.subscripts[1]: a.subscripts[0] for a in g.aux if a.kind == "eye"}
    ones = {a.letter for a in g.aux if a.kind == "ones"}
    out = "".join(dict.fromkeys(tie.get(c, c) for c in g.output if c not in ones))
    parts = []
    if len(core) <= 2:
        parts.append(_part(tuple(core), out, sizes, order))
    else:
        shapes = [tuple(sizes[c] for c in s) for s in core]
        _, info = opt_einsum.contract_path(spell_equation(core, out), *shapes, shapes=True,
                                           optimize="auto")
        for step in info.contraction_list:
            ins, res = step[2].split("->")
            parts.append(_part(tuple(ins.split(",")), res, sizes, order))
    parts = [p for p in parts if p.kind != "copy" or not g.aux]
    for a in g.aux:
        if a.kind == "eye":
            parts.append(_movement("diagonal write", f"np.eye over {a.letter}"))
        else:
            parts.append(_movement("broadcast", f"np.ones over {a.letter}"))
    return tuple(parts)


def tally(d: Derivation) -> tuple[Tally, ...]:
    """The forward, each gradient alone and the joint backward, all counted by one rule.

    An einsum step of two operands costs 2 × the product of its letters' sizes when a letter
    is summed (a multiply and an add for each combination of the letters), 1 × when none is;
    a sum inside one operand one add per element; a transpose, a diagonal or a broadcast moves
    data and costs nothing. The forward and the joint backward are the steps of :func:`plan`;
    a gradient alone is its einsum without ``np.eye``/``np.ones`` (what they do is movement).

    >>> from einsum_magic import derive
    >>> for t in tally(derive("ij,jk->ik", shapes=((2, 3), (3, 4)))):
    ...     print(t.label, t.flops, [p.formula for p in t.parts])
    forward 48 ['2 × i·j·k = 2 × 2·3·4 = 48']
    dL_dA 48 ['2 × i·j·k = 2 × 2·3·4 = 48']
    dL_dB 48 ['2 × i·j·k = 2 × 2·3·4 = 48']
    backward 96 ['2 × i·j·k = 2 × 2·3·4 = 48', '2 × i·j·k = 2 × 2·3·4 = 48']
    >>> [(t.label, t.flops, [p.kind for p in t.parts]) for t in tally(derive("ii->i", shapes=((3, 3),)))]
    [('forward', 0, ['diagonal read']), ('dL_dA', 0, ['diagonal write']), ('backward', 0, ['diagonal write'])]
    """
    require_shapes(d, "the cost")
    return _tally(d)


@functools.lru_cache(maxsize=256)
def _tally(d: Derivation) -> tuple[Tally, ...]:
    p = plan(d)
    sizes = dict(d.sizes)
    order = "".join(dict.fromkeys("".join(d.inputs) + d.result))
    forward = _plan_parts(p.forward, sizes, order)
    out = [Tally("forward", d.equation, sum(x.flops for x in forward), forward)]
    for g in d.grads:
        parts = _grad_parts(g, sizes, order)
        out.append(Tally(g.target, g.equation, sum(x.flops for x in parts), parts))
    backward = _plan_parts(p.backward, sizes, order)
    out.append(Tally("backward", "", sum(x.flops for x in backward), backward))
    return tuple(out)
