"""The joint contraction plan of a derivation: the forward along opt_einsum's path, the backward
that path read backwards.

This module owns the arrow ``Derivation (bound to shapes) → Plan`` that
:mod:`einsum_magic.compute.export` writes out as source and :mod:`einsum_magic.compute.cost`
counts. :func:`plan` returns the forward contracted pairwise along opt_einsum's path, and the
backward as that path read backwards, as reverse-mode autodiff does. Every gradient is its
derived einsum, but contracted along the forward's path: the forward intermediates it needs are
residuals, and the cotangent of each intermediate (``dL_dT1 = einsum(dL_dC, C)``: the cotangent
contracted with an operand) is computed once and shared by every gradient below it. Each
pairwise backward step is the plain swap trick on one pairwise forward step and costs what that
step costs, so the path that is cheapest forward is cheapest backward too.

The plan never materialises ``eye`` and ``ones``: a letter summed inside one operand is summed
once before the contractions and its backward is a broadcast (no FLOPs); a letter repeated
inside one operand is a diagonal read (a gather) and its backward a diagonal write into zeros (a
scatter); an axis of size 1 that broadcasts is a reshape both ways. These count 0 FLOPs; einsum
steps count what :func:`opt_einsum.helpers.flop_count` says, a product-rule sum one FLOP per
element.

>>> from einsum_magic import derive
>>> for step in plan(derive("i,ij,j->", shapes=((3,), (3, 4), (4,)))).backward:
...     print(step.line)
dL_dA = einsum(",i->i", dL_dD, T1)
dL_dT1 = einsum(",i->i", dL_dD, A)
dL_dB = einsum("i,j->ij", dL_dT1, C)
dL_dC = einsum("i,ij->j", dL_dT1, B)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from math import prod

import opt_einsum
from opt_einsum.helpers import flop_count

from ..core.derivation import Derivation
from ..core.equation import spell_equation
from ..errors import EinsumError

__all__ = ["plan", "Plan", "PlanStep", "flops_of", "require_shapes"]


@dataclass(frozen=True)
class PlanStep:
    """One line of a :class:`Plan`: ``target = kind(inputs)``.

    ``kind`` is ``einsum`` (one or two inputs), ``diagonal`` (a gather: the diagonal of
    repeated letters), ``scatter`` (its backward: a diagonal write into zeros), ``reshape``
    (size-1 axes), ``broadcast`` (the backward of a sum inside one operand) or ``add``
    (the product rule). ``subscripts`` are the inputs' letters, ``output`` the result's.
    """

    target: str
    kind: str
    inputs: tuple[str, ...]
    subscripts: tuple[str, ...]
    output: str
    shape: tuple[int, ...]
    flops: int

    @property
    def equation(self) -> str:
        return spell_equation(self.subscripts, self.output)

    @property
    def line(self) -> str:
        """The step as one plain line (``T1 = einsum("ij,jk->ik", A, B)``), for text views."""
        return f'{self.target} = {self.kind}("{self.equation}", {", ".join(self.inputs)})'


@dataclass(frozen=True)
class Plan:
    """The forward along opt_einsum's path and the joint backward (that path read backwards).

    ``residuals`` are the forward tensors the backward reads (a JAX or PyTorch export keeps
    them from the forward); ``recompute`` the forward steps that produce them (the NumPy
    export, which gets only the operands and the cotangent, runs those first).
    ``gradients`` has one name per distinct operand name, in order.
    """

    operands: tuple[str, ...]
    output: str
    cotangent: str
    forward: tuple[PlanStep, ...]
    backward: tuple[PlanStep, ...]
    residuals: tuple[str, ...]
    recompute: tuple[PlanStep, ...]
    gradients: tuple[str, ...]

    forward_flops = property(lambda self: flops_of(self.forward), doc="FLOPs of the forward steps.")
    backward_flops = property(lambda self: flops_of(self.backward), doc="FLOPs of the backward.")
    recompute_flops = property(lambda self: flops_of(self.recompute),
                               doc="FLOPs of the forward steps the NumPy export runs again.")

    @property
    def largest_intermediate(self) -> int:
        """Elements of the largest tensor a step creates (results and gradients included)."""
        return max((prod(s.shape) for s in self.forward + self.backward), default=0)



def flops_of(steps) -> int:
    """The FLOPs of ``steps`` together: anything with a ``flops`` (plan steps, contractions)."""
    return sum(s.flops for s in steps)


def require_shapes(d: Derivation, what: str) -> None:
    if d.shapes is None:
        raise EinsumError(f"{what} needs shapes: derive(..., shapes=...) or d.bound_to(shapes)",
                          d.equation)



def plan(d: Derivation) -> Plan:
    """The joint forward and backward of ``d`` (bound to shapes), as :class:`PlanStep` lines.

    The forward: each operand's repeated letters become a diagonal, letters summed inside it
    alone are summed (size-1 ones reshaped away), then the pairwise contractions follow
    opt_einsum's path (the cheaper of the path for these reduced operands and the path
    ``jnp.einsum`` takes for the einsum as written). The backward runs the forward steps in
    reverse; each one's backward is the swap trick on that step.
    """
    require_shapes(d, "a contraction plan")
    return _plan(d)


@dataclass(frozen=True)
class _Tensor:
    var: str        # the variable holding it
    grad: str       # the variable holding its gradient
    letters: str


@functools.lru_cache(maxsize=256)
def _plan(d: Derivation) -> Plan:
    sizes = d.sizes
    taken = set(d.names) | {d.output, d.cotangent} | {g.target for g in d.grads}
    counter = iter(range(1, 10_000))

    def temp() -> str:
        while True:
            name = f"T{next(counter)}"
            if name not in taken and f"dL_d{name}" not in taken:
                return name

    def shape(letters: str) -> tuple[int, ...]:
        return tuple(sizes[c] for c in letters)

    forward: list[tuple[PlanStep, tuple[_Tensor, ...], _Tensor]] = []
    final_out = _Tensor(d.output, d.cotangent, d.result)

    def emit(kind: str, ins: tuple[_Tensor, ...], letters: str, flops: int,
             out: _Tensor | None = None) -> _Tensor:
        if out is None:
            name = temp()
            out = _Tensor(name, f"dL_d{name}", letters)
        forward.append((PlanStep(out.var, kind, tuple(t.var for t in ins), tuple(t.letters for t in ins),
                             letters, shape(letters), flops), ins, out))
        return out

    # 1. each operand alone: diagonal, size-1 reshape, sums (and the transpose of a lone operand)
    current: list[_Tensor] = []
    single = len(d.inputs) == 1
    for k, (name, subs) in enumerate(zip(d.names, d.inputs)):
        leaf = _Tensor(name, d.grads[k].target, subs)
        t = leaf
        wanted = set(d.result).union(*(d.inputs[m] for m in range(len(d.inputs)) if m != k))
        steps = []
        unique = "".join(dict.fromkeys(subs))
        if unique != subs:
            steps.append(("diagonal", unique, 0))
        ones = "".join(c for c in unique if c not in wanted and sizes[c] == 1)
        kept = "".join(c for c in unique if c not in ones)
        if ones:
            steps.append(("reshape", kept, 0))
        if any(c not in wanted for c in kept) or (single and (kept != d.result or not steps)):
            out = d.result if single else "".join(c for c in kept if c in wanted)
            summed = any(c not in out for c in kept)
            steps.append(("einsum", out, flop_count(kept, summed, 1, sizes) if summed else 0))
        for i, (kind, letters, flops) in enumerate(steps):
            last = single and i == len(steps) - 1
            t = emit(kind, (t,), letters, flops, final_out if last else None)
        current.append(t)

    # 2. the pairwise contractions along the cheapest candidate path
    if len(current) > 1:
        for pair in _best_path(d, tuple(t.letters for t in current)):
            x, y = (current[i] for i in pair)
            for i in sorted(pair, reverse=True):
                current.pop(i)
            if not current:
                out, letters = final_out, d.result
            else:
                wanted = set(d.result).union(*(t.letters for t in current))
                letters = "".join(c for c in dict.fromkeys(x.letters + y.letters) if c in wanted)
                out = None
            current.append(emit("einsum", (x, y), letters, _pair_flops(x.letters, y.letters,
                                                                        letters, sizes), out))

    # 3. the backward: each forward step in reverse, the swap trick on that step
    backward: list[PlanStep] = []
    residuals = tuple(dict.fromkeys(v for s, _, _ in forward if s.kind == "einsum"
                                    and len(s.inputs) == 2 for v in s.inputs))
    for step, ins, out in reversed(forward):
        g = out.grad
        if step.kind == "einsum" and len(ins) == 2:
            x, y = ins
            for a, b in ((x, y), (y, x)):   # the swap trick on this pairwise step
                backward.append(PlanStep(a.grad, "einsum", (g, b.var), (out.letters, b.letters),
                                     a.letters, shape(a.letters),
                                     _pair_flops(out.letters, b.letters, a.letters, sizes)))
            continue
        (x,) = ins
        if step.kind == "einsum":
            kind = "broadcast" if set(x.letters) - set(out.letters) else "einsum"
        else:
            kind = {"diagonal": "scatter", "reshape": "reshape"}[step.kind]
        backward.append(PlanStep(x.grad, kind, (g,), (out.letters,), x.letters, shape(x.letters), 0))
    for total in d.totals:
        first = next(g for g in d.grads if g.wrt == total.wrt)
        letters = d.inputs[first.position]
        backward.append(PlanStep(total.target, "add", total.parts, (letters,) * len(total.parts),
                             letters, first.shape, (len(total.parts) - 1) * prod(first.shape)))

    needed, recompute = set(residuals), []
    for s, _, _ in reversed(forward):
        if s.target in needed:
            recompute.append(s)
            needed.update(s.inputs)
    recompute.reverse()
    totals = {t.wrt: t.target for t in d.totals}
    gradients = tuple(dict.fromkeys(totals.get(g.wrt, g.target) for g in d.grads))
    return Plan(tuple(dict.fromkeys(d.names)), d.output, d.cotangent,
                tuple(s for s, _, _ in forward), _shared(backward, gradients), residuals,
                tuple(recompute), gradients)


def _shared(steps: list[PlanStep], keep: tuple[str, ...]) -> tuple[PlanStep, ...]:
    """``steps`` with each repeated computation done once (its later copies renamed away).

    Two steps are equal when they apply the same operation to the same inputs: the two
    positions of an array passed twice, say. A copy whose target is a gradient the caller
    returns is kept.
    """
    done: dict[tuple, str] = {}
    alias: dict[str, str] = {}
    out = []
    for s in steps:
        inputs = tuple(alias.get(v, v) for v in s.inputs)
        s = PlanStep(s.target, s.kind, inputs, s.subscripts, s.output, s.shape, s.flops)
        key = (s.kind, inputs, s.subscripts, s.output)
        if key in done and s.target not in keep:
            alias[s.target] = done[key]
            continue
        done.setdefault(key, s.target)
        out.append(s)
    return tuple(out)


def _pair_flops(a: str, b: str, out: str, sizes: dict) -> int:
    letters = set(a) | set(b)
    return flop_count(letters, bool(letters - set(out)), 2, sizes)


def _best_path(d: Derivation, reduced: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """The cheaper (forward plus backward FLOPs) of two opt_einsum paths over ``reduced``.

    Candidates: ``auto`` on the reduced operands, and the path ``jnp.einsum`` takes, which
    opt_einsum picks for the einsum as written (so the plan never loses to ``jax.vjp``).
    """
    shapes = [tuple(d.sizes[c] for c in s) for s in reduced]
    candidates = [opt_einsum.contract_path(spell_equation(reduced, d.result), *shapes,
                                           shapes=True, optimize="auto")[0]]
    try:
        candidates.append(opt_einsum.contract_path(d.equation, *d.shapes, shapes=True,
                                                   optimize="auto")[0])
    except ValueError:   # an einsum opt_einsum reads differently from numpy: keep the first
        pass
    return min((tuple(tuple(p) for p in path) for path in candidates),
               key=lambda path: _path_flops(path, reduced, d.result, d.sizes))


def _path_flops(path, reduced, result: str, sizes: dict) -> int:
    current = list(reduced)
    total = 0
    for pair in path:
        x, y = (current[i] for i in pair)
        for i in sorted(pair, reverse=True):
            current.pop(i)
        wanted = set(result).union(*current)
        out = "".join(c for c in dict.fromkeys(x + y) if c in wanted)
        total += _pair_flops(x, y, out, sizes) + _pair_flops(out, y, x, sizes) \
            + _pair_flops(out, x, y, sizes)
        current.append(out)
    return total
