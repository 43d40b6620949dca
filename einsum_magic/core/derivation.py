"""Derive the backward einsum of every operand: the generalized swap trick.

This module owns the middle of the data flow: an :class:`~einsum_magic.core.equation.Equation`
(optionally bound to shapes) becomes a :class:`Derivation` holding one :class:`Grad`
per operand position. The rule, for the gradient of operand ``k``:

1. swap: the cotangent takes operand ``k``'s place (first), the other operands keep
   their order, and the result gets operand ``k``'s subscripts;
2. a letter repeated in operand ``k`` gets a fresh letter for each repeat, tied to
   the first by an identity matrix ``np.eye`` (a Kronecker delta);
3. a letter of operand ``k`` that no input of the backward carries (it was summed
   inside operand ``k`` alone) is broadcast back by ``np.ones``;
4. with shapes, ``...`` and size-1 broadcast axes are spelled with letters first
   (:func:`einsum_magic.core.equation.bind`), so rules 1-3 cover them too.

>>> d = derive("ij,jk->ik")
>>> [g.equation for g in d.grads]
['ik,jk->ij', 'ik,ij->jk']
>>> derive("ii->").grads[0].code
"dL_dA = np.einsum(',ij->ij', dL_dB, np.eye(A.shape[1]))"
"""

from __future__ import annotations

import functools
import keyword
import string
from dataclasses import dataclass, field
from typing import Sequence

from .equation import (ELLIPSIS, Bound, Equation, axis_index, bind, check_shapes, fresh_letters, parse,
                       spell, spell_equation)
from ..errors import EinsumError
from .loops import loop_source
from .names import RESERVED, free_name
from .interpret import interpret, relabel

__all__ = ["derive", "Derivation", "Grad", "Aux", "Total", "Letter", "register_export"]


@dataclass(frozen=True)
class Aux:
    """An auxiliary tensor of the generalized rule: ``np.eye`` or ``np.ones`` over an operand's axis."""

    kind: str          # "eye" or "ones"
    subscripts: str    # 'ij' for an eye, 'j' for ones
    operand: str       # the name whose axis gives the size
    axis: int
    letter: str        # the letter it stands for (the repeated or summed one)

    @property
    def code(self) -> str:
        return f"np.{self.kind}({self.operand}.shape[{self.axis}])"


@dataclass(frozen=True)
class Grad:
    """The backward einsum of one operand position."""

    position: int                 # 0-based position of the operand in the forward call
    wrt: str                      # the operand's name ('A')
    target: str                   # the variable the code assigns ('dL_dA', or 'dL_dA_1' for a repeat)
    equation: str                 # over (cotangent, other operands in order, then aux tensors)
    arguments: tuple[str, ...]    # the einsum's operands as code: names, then aux expressions
    aux: tuple[Aux, ...]
    code: str                     # runnable NumPy that assigns ``target``
    relabelled: str
    interpretation: str | None
    loops: str
    steps: tuple[str, ...]        # the swap, then each extra step of the generalized rule
    shape: tuple[int, ...] | None  # equal to the operand's shape
    inputs: tuple[str, ...] = field(repr=False)   # internal subscripts of the backward
    output: str = field(repr=False)


@dataclass(frozen=True)
class Total:
    """The product rule: an array passed at several positions gets the sum of their gradients."""

    wrt: str
    target: str
    parts: tuple[str, ...]
    code: str


@dataclass(frozen=True)
class Letter:
    """One letter of the (bound) forward equation and the part it plays."""

    letter: str
    size: int | None
    role: str                     # free, batch, contracted, diagonal, summed-in-one, broadcast
    operands: tuple[str, ...]     # names of the operands that carry it
    origin: str = ""              # "...": stands for an ellipsis axis; else the letter it broadcasts


@dataclass(frozen=True)
class Derivation:
    """The backward of one einsum: what :func:`derive` returns.

    ``equation`` is the explicit forward equation; ``grads`` holds one :class:`Grad`
    per operand position; ``totals`` the product rule where a name repeats.
    """

    text: str
    equation: str
    implicit: bool
    names: tuple[str, ...]
    output: str
    cotangent: str
    shapes: tuple[tuple[int, ...], ...] | None
    output_shape: tuple[int, ...] | None
    code: str
    loops: str
    grads: tuple[Grad, ...]
    totals: tuple[Total, ...]
    letters: tuple[Letter, ...]
    inputs: tuple[str, ...] = field(repr=False)   # internal subscripts (bound when shapes are known)
    result: str = field(repr=False)

    @property
    def sizes(self) -> dict[str, int] | None:
        """Size of every letter of the bound equation (``None`` without shapes)."""
        if self.shapes is None:
            return None
        return {x.letter: x.size for x in self.letters}

    def bound_to(self, shapes: Sequence[Sequence[int]]) -> "Derivation":
        """This derivation for operands of ``shapes`` (itself when they are its own)."""
        shapes = tuple(tuple(int(n) for n in s) for s in shapes)
        if shapes == self.shapes:
            return self
        return _derive(self.text, self.names, self.output, shapes)

    # -- running what is shown ---------------------------------------------------------

    def _namespace(self, operands, cotangent=None) -> dict:
        import numpy as np

        if len(operands) != len(self.names):
            raise EinsumError(f"the equation takes {len(self.names)} operand(s), "
                              f"{len(operands)} were given", self.equation)
        ns = {"np": np}
        for name, x in zip(self.names, operands):
            if name in ns and ns[name] is not x and not np.array_equal(ns[name], x):
                raise EinsumError(f"{name!r} names two positions of the equation but two "
                                  "different arrays were given", self.equation)
            ns[name] = x
        if cotangent is not None:
            ns[self.cotangent] = cotangent
        return ns

    def _bound(self, operands) -> "Derivation":
        import numpy as np

        return self.bound_to([np.shape(x) for x in operands])

    def vjp(self, cotangent, *operands) -> tuple:
        """The gradients of every position, by running each :attr:`Grad.code` with NumPy."""
        import numpy as np

        d = self._bound(operands)
        cotangent = np.asarray(cotangent)
        if cotangent.shape != d.output_shape:
            raise EinsumError(f"the cotangent {d.cotangent} has shape {cotangent.shape}, the output "
                              f"{d.output} has shape {d.output_shape}", d.equation)
        ns = d._namespace([np.asarray(x) for x in operands], cotangent)
        for code in d._compiled("code"):
            exec(code, ns)
        return tuple(ns[g.target] for g in d.grads)

    def loop_vjp(self, cotangent, *operands) -> tuple:
        """The gradients of every position, by running each :attr:`Grad.loops`."""
        import numpy as np

        d = self._bound(operands)
        ns = d._namespace([np.asarray(x) for x in operands], np.asarray(cotangent))
        for code in d._compiled("loops"):
            exec(code, ns)
        return tuple(ns[g.target] for g in d.grads)

    def loop_forward(self, *operands):
        """The forward result, by running :attr:`loops`."""
        import numpy as np

        d = self._bound(operands)
        ns = d._namespace([np.asarray(x) for x in operands])
        exec(d._compiled("forward")[0], ns)
        return ns[d.output]

    def export(self, target: str) -> str:
        """This backward as source for ``"numpy"``, ``"jax"`` or ``"torch"``.

        Written by :func:`einsum_magic.compute.export.export`, which registers itself here
        (:func:`register_export`) when ``einsum_magic`` is imported: core imports nothing above it.
        """
        return _writer("export")(self, target)

    def compile(self, target: str):
        """Run :meth:`export`'s source and return its callable.

        Run by :func:`einsum_magic.compute.export.compiled` (registered as for :meth:`export`).
        """
        return _writer("compiled")(self, target)

    def _compiled(self, what: str) -> tuple:
        return _compile(self, what)


#: ``export`` and ``compiled``, functions of ``(derivation, target)``: what
#: :meth:`Derivation.export` and :meth:`Derivation.compile` call, given by :func:`register_export`.
_WRITERS: dict = {}


def register_export(export, compiled) -> None:
    """Make :meth:`Derivation.export` / :meth:`Derivation.compile` call ``export`` / ``compiled``.

    :mod:`einsum_magic.compute.export` registers its writer when it is imported, and the package
    imports it, so the methods always have one; the arrow stays compute → core (this module
    never imports compute, not even inside a function).
    """
    _WRITERS.update(export=export, compiled=compiled)


def _writer(which: str):
    if which not in _WRITERS:       # only without the package's __init__ (never in practice)
        raise RuntimeError("no export writer: import einsum_magic.compute.export first")
    return _WRITERS[which]


@functools.lru_cache(maxsize=512)
def _compile(d: Derivation, what: str) -> tuple:
    if what == "forward":
        sources = [d.loops]
    else:
        sources = [getattr(g, what) for g in d.grads]
    return tuple(compile(src, f"<einsum_magic {what}>", "exec") for src in sources)


def default_names(count: int) -> tuple[tuple[str, ...], str]:
    """``A, B, …`` for ``count`` operands, and the next letter for the output."""
    letters = [c for c in string.ascii_uppercase]
    if count < len(letters):
        return tuple(letters[:count]), letters[count]
    return tuple(f"X{k + 1}" for k in range(count)), "Y"


def derive(equation: str, names: Sequence[str] | None = None, output: str | None = None,
           shapes: Sequence[Sequence[int]] | None = None) -> Derivation:
    """Derive the backward einsum of every operand of ``equation``.

    Parameters
    ----------
    equation:
        An einsum equation, explicit (``'ij,jk->ik'``) or implicit (``'ij,jk'``).
    names:
        Operand names, one per position (default ``A, B, …``). A name given twice
        is one array passed twice: its gradient is the sum over its positions.
    output:
        Name of the result (default: the letter after the last default name).
    shapes:
        Operand shapes. With them ``...`` and size-1 broadcasting are spelled out
        with letters of their own and every shape is checked.

    Raises
    ------
    EinsumError
        For any bad input, with a caret under the offending place.

    Examples
    --------
    >>> d = derive("ij,jk->ik", names=("A", "B"), output="C", shapes=((2, 3), (3, 4)))
    >>> d.grads[0].code
    "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"
    >>> d.grads[0].interpretation
    'dL_dC @ B.T'
    """
    eq = parse(equation)
    count = len(eq.inputs)
    if names is None:
        names, default_out = default_names(count)
    else:
        if isinstance(names, str):
            names = (names,)
        names = tuple(names)
        default_out = free_name(default_names(count)[1], set(names))
    output = default_out if output is None else output
    _check_names(eq, names, output)
    if shapes is not None:
        shapes = check_shapes(eq, shapes)
        first: dict[str, tuple] = {}
        for k, (name, shape) in enumerate(zip(names, shapes)):
            if first.setdefault(name, shape) != shape:
                raise eq.fail(f"{name!r} names one array at two positions, but its shapes "
                              f"{first[name]} and {shape} differ", k,
                              width=max(1, len(spell(eq.inputs[k]))))
    return _derive(eq.text, names, output, shapes)


def _check_names(eq: Equation, names: tuple, output) -> None:
    for name in names + (output,):
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise EinsumError(f"the name {name!r} is not a Python identifier", eq.text)
        if name in RESERVED:
            raise EinsumError(f"{name!r} is used by the generated code ({RESERVED[name]}): choose "
                              "another name", eq.text)
    if len(names) != len(eq.inputs):
        raise EinsumError(f"the equation has {len(eq.inputs)} operand(s) but {len(names)} name(s) "
                          "were given", eq.text, eq.starts[min(len(names), len(eq.inputs) - 1)])
    if output in names:
        raise EinsumError(f"the output name {output!r} is also an operand's name", eq.text)


def _targets(names: tuple, output: str) -> tuple[str, list[str], dict[str, str]]:
    """The cotangent's name, each position's gradient name and each repeated name's total.

    ``dL_dA`` for ``A``; ``dL_dA_1``, ``dL_dA_2`` for an array passed twice, and ``dL_dA``
    for their sum. A name already taken (an operand called ``dL_dA``) gets ``_`` appended,
    so that running the generated code never overwrites an operand.
    """
    taken = set(names) | {output} | set(RESERVED)
    cotangent = free_name(f"dL_d{output}", taken)
    counts = {n: names.count(n) for n in names}
    seen: dict[str, int] = {}
    targets = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        base = f"dL_d{name}" if counts[name] == 1 else f"dL_d{name}_{seen[name]}"
        targets.append(free_name(base, taken))
    totals = {n: free_name(f"dL_d{n}", taken) for n in counts if counts[n] > 1}
    return cotangent, targets, totals


@functools.lru_cache(maxsize=1024)
def _derive(text: str, names: tuple, output: str, shapes) -> Derivation:
    eq = parse(text)
    if shapes is None:
        bound = None
        inputs, result = eq.inputs, eq.output
        if ELLIPSIS not in result:           # numpy: a '...' left out of the output is empty
            inputs = tuple(s.replace(ELLIPSIS, "") for s in inputs)
    else:
        bound = bind(eq, shapes)
        inputs, result = bound.inputs, bound.output
    cotangent, targets, total_names = _targets(names, output)
    used = set("".join(inputs) + result)
    grads = [_grad(eq, bound, inputs, result, names, cotangent, k, target, set(used))
             for k, target in enumerate(targets)]
    totals = tuple(
        Total(n, total, parts, f"{total} = " + " + ".join(parts))
        for n, total in total_names.items()
        for parts in [tuple(g.target for g in grads if g.wrt == n)])
    terms = list(zip(names, inputs))
    out_shape = None if bound is None else tuple(bound.sizes[c] for c in result)
    args = ", ".join(names)
    return Derivation(
        text=text, equation=eq.explicit, implicit=eq.implicit, names=names, output=output,
        cotangent=cotangent, shapes=shapes, output_shape=out_shape,
        code=f"{output} = np.einsum({eq.explicit!r}, {args})",
        loops=loop_source(output, result, terms),
        grads=tuple(grads), totals=totals, letters=_letters(inputs, result, names, bound),
        inputs=inputs, result=result)


def _grad(eq: Equation, bound: Bound | None, inputs, result, names, cotangent, k, target,
          used: set) -> Grad:
    subs, name = inputs[k], names[k]
    fresh = fresh_letters(used)
    out, aux, steps = [], [], []
    others = [m for m in range(len(inputs)) if m != k]
    steps.append(_swap_step(name, subs, result, cotangent, bool(others)))
    first: dict[str, int] = {}
    for i, c in enumerate(subs):
        if c in first:
            f = next(fresh)
            out.append(f)
            aux.append(Aux("eye", c + f, name, axis_index(subs, i), c))
            steps.append(f"{c!r} repeats in {name}: the repeat becomes {f!r}, tied to {c!r} by "
                         f"np.eye (a Kronecker delta), since the output may not repeat a letter")
        else:
            first[c] = i
            out.append(c)
    grad_in = [result] + [inputs[m] for m in others] + [a.subscripts for a in aux]
    present = set("".join(grad_in))
    for c, i in first.items():
        if c not in present:
            aux.append(Aux("ones", c, name, axis_index(subs, i), c))
            steps.append(f"{c!r} is summed inside {name} alone, so no input of the backward "
                         f"carries it: np.ones broadcasts it back over {name}'s axis")
    grad_in += [a.subscripts for a in aux if a.kind == "ones"]
    grad_out = "".join(out)
    if bound is not None:
        steps.extend(_bound_steps(bound, subs, name))
    arguments = (cotangent,) + tuple(names[m] for m in others) + tuple(a.code for a in aux)
    equation = spell_equation(grad_in, grad_out)
    if bound is None and ELLIPSIS in "".join(eq.inputs):
        steps.append("without shapes, '...' stands for the same axes in every operand: no size-1 "
                     "broadcasting is assumed (for operands that broadcast, derive with shapes=; "
                     "vjp() binds the operands' shapes itself)")
    optimize = _optimize(bound, grad_in, grad_out, result, [inputs[m] for m in others], aux)
    if ELLIPSIS in "".join(grad_in) and ELLIPSIS not in grad_out:
        # Shapes unknown and this operand has no '...': numpy cannot sum '...' away
        # inside einsum, so keep it in the output and sum it off after.
        steps.append(f"{name} has no '...': the '...' axes of the others are summed away")
        runnable = spell_equation(grad_in, ELLIPSIS + grad_out)
        code = (f"{target} = np.einsum({runnable!r}, {', '.join(arguments)}{optimize})\n"
                f"{target} = {target}.sum(axis=tuple(range({target}.ndim - {name}.ndim)))")
    else:
        code = f"{target} = np.einsum({equation!r}, {', '.join(arguments)}{optimize})"
    terms = [(cotangent, result)] + [(names[m], inputs[m]) for m in others]
    shape = None if bound is None else bound.shapes[k]
    return Grad(
        position=k, wrt=name, target=target, equation=equation, arguments=arguments,
        aux=tuple(aux), code=code, relabelled=relabel(equation),
        interpretation=interpret(tuple(grad_in), grad_out, arguments, tuple(aux), name),
        loops=loop_source(target, subs, terms, shape_of=name, order="".join(inputs)), steps=tuple(steps),
        shape=shape, inputs=tuple(grad_in), output=grad_out)


def _swap_step(name: str, subs: str, result: str, cotangent: str, others: bool) -> str:
    """The first step in words: which letters trade places, what comes first, what follows.

    >>> _swap_step("A", "ij", "ik", "dL_dC", True)
    "swap: A's subscripts 'ij' trade places with the output's 'ik', so dL_dC comes first, the other operands keep their order, and the result has A's subscripts"
    >>> _swap_step("A", "ii", "", "dL_dB", False)
    "swap: A's subscripts 'ii' trade places with the output's, which has none (a scalar), so dL_dB comes first, and the result has A's subscripts"
    """
    own = f"{spell(subs)!r}" if subs else "none (a scalar)"
    out = f"the output's {spell(result)!r}" if result else "the output's, which has none (a scalar)"
    rest = ", the other operands keep their order" if others else ""
    if not subs:
        return (f"swap: {name} has no subscripts (a scalar) and trades places with {out}, so "
                f"{cotangent} comes first{rest}, and the result is a scalar")
    return (f"swap: {name}'s subscripts {own} trade places with {out}, so {cotangent} comes "
            f"first{rest}, and the result has {name}'s subscripts")


def _optimize(bound: Bound | None, grad_in, grad_out: str, result: str, others, aux) -> str:
    """``np.einsum``'s ``optimize`` argument for a backward einsum of three or more operands.

    Without it NumPy evaluates such an einsum as one loop nest over all its letters (seconds
    where a contraction order takes milliseconds). With shapes, opt_einsum's path is computed
    here, once per derivation and shapes, and written into the code (what is shown runs);
    without shapes, ``optimize=True`` lets NumPy choose a path per call. Two operands: ''.

    >>> d = derive("ij,jk,kl->il", shapes=((2, 3), (3, 4), (4, 5)))
    >>> d.grads[0].code
    "dL_dA = np.einsum('il,jk,kl->ij', dL_dD, B, C, optimize=['einsum_path', (0, 2), (0, 1)])"
    >>> derive("ij,jk,kl->il").grads[0].code
    "dL_dA = np.einsum('il,jk,kl->ij', dL_dD, B, C, optimize=True)"
    """
    if len(grad_in) < 3:
        return ""
    if bound is None:
        return ", optimize=True"
    import opt_einsum

    sizes = bound.sizes
    shapes = ([tuple(sizes[c] for c in result)] + [tuple(sizes[c] for c in s) for s in others]
              + [(sizes[a.letter],) * len(a.subscripts) for a in aux])
    path, _ = opt_einsum.contract_path(spell_equation(grad_in, grad_out), *shapes, shapes=True,
                                       optimize="auto")
    return f", optimize={['einsum_path', *path]!r}"


def _bound_steps(bound: Bound, subs: str, name: str) -> list[str]:
    steps = []
    own_ell = [c for c in bound.ellipsis if c in subs]
    if own_ell:
        steps.append(f"'...' of {name} is spelled {''.join(own_ell)!r} from the shapes")
    for c in subs:
        if c in bound.broadcast:
            steps.append(f"{name}'s axis {subs.index(c)} has size 1 and broadcasts: it gets its own "
                         f"letter {c!r}, summed like a letter of one operand")
    return steps


def _letters(inputs, result, names, bound: Bound | None) -> tuple[Letter, ...]:
    out = []
    order = dict.fromkeys(c for s in inputs for c in s if c != ELLIPSIS)
    for c in order:
        carriers = tuple(dict.fromkeys(n for n, s in zip(names, inputs) if c in s))
        count = sum(c in s for s in inputs)
        if bound is not None and c in bound.broadcast:
            role = "broadcast"
        elif any(s.count(c) > 1 for s in inputs):
            role = "diagonal"
        elif c in result:
            role = "batch" if count > 1 else "free"
        else:
            role = "contracted" if count > 1 else "summed-in-one"
        origin = "..." if bound is not None and c in bound.ellipsis else ""
        size = None if bound is None else bound.sizes[c]
        out.append(Letter(c, size, role, carriers, origin))
    return tuple(out)
