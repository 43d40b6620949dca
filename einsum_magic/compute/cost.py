"""What a derivation costs: opt_einsum's paths, and the joint backward plan that export writes out.

This module owns contraction order and FLOP counts for a :class:`~einsum_magic.core.derivation.Derivation`
bound to shapes:

* :func:`cost` returns a :class:`CostReport`: the forward einsum and each derived gradient einsum
  *as written* (aux tensors ``np.eye``/``np.ones`` counted as operands), each with opt_einsum's
  naive and optimised FLOPs, largest intermediate and pairwise steps
  (:func:`opt_einsum.contract_path`), plus the joint backward below.
* :func:`plan` returns the :class:`Plan` that :mod:`einsum_magic.compute.export` turns into source: the
  forward contracted pairwise along opt_einsum's path, and the backward as that path read
  backwards, as reverse-mode autodiff does. Every gradient is its derived einsum, but contracted
  along the forward's path: the forward intermediates it needs are residuals, and the cotangent
  of each intermediate (``dL_dT1 = einsum(dL_dC, C)``: the cotangent contracted with an operand)
  is computed once and shared by every gradient below it. Each pairwise backward step is the
  plain swap trick on one pairwise forward step and costs what that step costs, so the path that
  is cheapest forward is cheapest backward too.
* :func:`xla_vjp_flops` measures the same thing with XLA: the FLOPs of ``jax.vjp`` of the
  exported function against ``jax.vjp`` of ``jnp.einsum``.

How ``eye`` and ``ones`` are treated. In :attr:`CostReport.grads` they are operands of the
derived einsum as written (that is what ``Grad.code`` runs). The plan never materialises them:
a letter summed inside one operand is summed once before the contractions and its backward is a
broadcast (``np.broadcast_to``, no FLOPs); a letter repeated inside one operand is a diagonal
read (``A[i_, i_]``, a gather) and its backward a diagonal write into zeros (a scatter); an
axis of size 1 that broadcasts is a reshape both ways. These count 0 FLOPs here (no arithmetic);
einsum steps count what :func:`opt_einsum.helpers.flop_count` says, a product-rule sum one FLOP
per element.

>>> from einsum_magic import derive
>>> report = cost(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
>>> report.summary
'cost: forward 48 FLOPs, backward 96 FLOPs (separate paths 96, naive 96), largest intermediate 12'
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

__all__ = ["cost", "plan", "tally", "lesson", "Tally", "Part", "MOVEMENT", "vjp_function", "xla_vjp_flops", "CostReport", "Contraction", "Plan", "Step"]


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
class Step:
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
    forward: tuple[Step, ...]
    backward: tuple[Step, ...]
    residuals: tuple[str, ...]
    recompute: tuple[Step, ...]
    gradients: tuple[str, ...]

    @property
    def forward_flops(self) -> int:
        return sum(s.flops for s in self.forward)

    @property
    def backward_flops(self) -> int:
        return sum(s.flops for s in self.backward)

    @property
    def recompute_flops(self) -> int:
        return sum(s.flops for s in self.recompute)

    @property
    def largest_intermediate(self) -> int:
        """Elements of the largest tensor a step creates (results and gradients included)."""
        return max((prod(s.shape) for s in self.forward + self.backward), default=0)


@dataclass(frozen=True)
class CostReport:
    """FLOPs of the forward, of each derived gradient alone, and of the joint backward."""

    equation: str
    shapes: tuple[tuple[int, ...], ...]
    forward: Contraction
    grads: tuple[Contraction, ...]
    plan: Plan

    @property
    def backward(self) -> int:
        """FLOPs of the joint backward (:attr:`plan`): every gradient, intermediates shared."""
        return self.plan.backward_flops

    @property
    def separate_backward(self) -> int:
        """FLOPs of the gradients one einsum each, each along its own optimised path."""
        return sum(g.flops for g in self.grads)

    @property
    def naive_backward(self) -> int:
        """FLOPs of the gradients one einsum each, without a path (one loop nest each)."""
        return sum(g.naive_flops for g in self.grads)

    @property
    def largest_intermediate(self) -> int:
        return self.plan.largest_intermediate

    @property
    def summary(self) -> str:
        """One deterministic line for text views."""
        return (f"cost: forward {_flops(self.forward.flops)}, backward {_flops(self.backward)} "
                f"(separate paths {self.separate_backward:,}, naive {self.naive_backward:,}), "
                f"largest intermediate {self.largest_intermediate:,}")


def _flops(n: int) -> str:
    return f"{n:,} FLOP{'' if n == 1 else 's'}"


def _require_shapes(d: Derivation, what: str) -> None:
    if d.shapes is None:
        raise EinsumError(f"{what} needs shapes: derive(..., shapes=...) or d.bound_to(shapes)",
                          d.equation)


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
    _require_shapes(d, "the cost")
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


# -- the joint plan ------------------------------------------------------------------------

def plan(d: Derivation) -> Plan:
    """The joint forward and backward of ``d`` (bound to shapes), as :class:`Step` lines.

    The forward: each operand's repeated letters become a diagonal, letters summed inside it
    alone are summed (size-1 ones reshaped away), then the pairwise contractions follow
    opt_einsum's path (the cheaper of the path for these reduced operands and the path
    ``jnp.einsum`` takes for the einsum as written). The backward runs the forward steps in
    reverse; each one's backward is the swap trick on that step.
    """
    _require_shapes(d, "a contraction plan")
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

    forward: list[tuple[Step, tuple[_Tensor, ...], _Tensor]] = []
    final_out = _Tensor(d.output, d.cotangent, d.result)

    def emit(kind: str, ins: tuple[_Tensor, ...], letters: str, flops: int,
             out: _Tensor | None = None) -> _Tensor:
        if out is None:
            name = temp()
            out = _Tensor(name, f"dL_d{name}", letters)
        forward.append((Step(out.var, kind, tuple(t.var for t in ins), tuple(t.letters for t in ins),
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
    backward: list[Step] = []
    residuals = tuple(dict.fromkeys(v for s, _, _ in forward if s.kind == "einsum"
                                    and len(s.inputs) == 2 for v in s.inputs))
    for step, ins, out in reversed(forward):
        g = out.grad
        if step.kind == "einsum" and len(ins) == 2:
            x, y = ins
            for a, b in ((x, y), (y, x)):   # the swap trick on this pairwise step
                backward.append(Step(a.grad, "einsum", (g, b.var), (out.letters, b.letters),
                                     a.letters, shape(a.letters),
                                     _pair_flops(out.letters, b.letters, a.letters, sizes)))
            continue
        (x,) = ins
        if step.kind == "einsum":
            kind = "broadcast" if set(x.letters) - set(out.letters) else "einsum"
        else:
            kind = {"diagonal": "scatter", "reshape": "reshape"}[step.kind]
        backward.append(Step(x.grad, kind, (g,), (out.letters,), x.letters, shape(x.letters), 0))
    for total in d.totals:
        first = next(g for g in d.grads if g.wrt == total.wrt)
        letters = d.inputs[first.position]
        backward.append(Step(total.target, "add", total.parts, (letters,) * len(total.parts),
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


def _shared(steps: list[Step], keep: tuple[str, ...]) -> tuple[Step, ...]:
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
        s = Step(s.target, s.kind, inputs, s.subscripts, s.output, s.shape, s.flops)
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


# -- measured with XLA ---------------------------------------------------------------------

def vjp_function(d: Derivation, implementation: str = "exported"):
    """A function of the distinct operands and the cotangent returning ``(output, gradients)``.

    ``implementation``: ``"autodiff"`` (``jax.vjp`` of ``jnp.einsum``), ``"exported"``
    (``jax.vjp`` of ``d.compile("jax")``) or ``"naive"`` (the JAX export with one derived
    einsum per gradient). The forward and the pullback are in one function, so that
    ``jax.jit`` compiles them together as a training step would. Imports JAX.
    """
    import jax
    import jax.numpy as jnp

    _require_shapes(d, "a vjp function")
    names = tuple(dict.fromkeys(d.names))
    if implementation == "autodiff":
        def fn(*xs):
            env = dict(zip(names, xs))
            return jnp.einsum(d.equation, *(env[n] for n in d.names))
    elif implementation in ("exported", "naive"):
        from .export import compiled

        fn = compiled(d, "jax", naive=implementation == "naive")
    else:
        raise EinsumError(f"unknown implementation {implementation!r}: "
                          "choose autodiff, exported or naive")

    def forward_and_pullback(*args):
        out, pullback = jax.vjp(fn, *args[:-1])
        return out, pullback(args[-1])

    return forward_and_pullback


def xla_vjp_flops(d: Derivation, implementation: str = "exported", dtype: str = "float32") -> int:
    """XLA's FLOP count of :func:`vjp_function` for ``d``'s shapes, jit-compiled.

    The count is ``jax.jit(fn).lower(...).compile().cost_analysis()['flops']`` (a dict in
    jax 0.10; a list of one dict in some older versions). Nothing runs: the arguments are
    :class:`jax.ShapeDtypeStruct`. Imports JAX.
    """
    import jax

    fn = vjp_function(d, implementation)
    shapes = dict(zip(d.names, d.shapes))
    args = [jax.ShapeDtypeStruct(shapes[n], dtype) for n in dict.fromkeys(d.names)]
    args.append(jax.ShapeDtypeStruct(d.output_shape, dtype))
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return int(analysis.get("flops", 0))


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
    _require_shapes(d, "the cost")
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
    _require_shapes(d, "the cost")
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
