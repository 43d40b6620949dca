"""Parse an einsum equation, make it explicit, and bind it to operand shapes.

This module owns the first arrow of the data flow: a string (``'ij,jk'``) becomes
an :class:`Equation` (explicit, validated, with positions for error carets), and
an equation plus shapes becomes a :class:`Bound` equation in which ``...`` and
size-1 broadcast axes are spelled with letters of their own.

Inside this package a subscript is a plain string in which ``'.'`` stands for a
whole ``'...'``; :func:`spell` turns it back into what users write.

>>> eq = parse("ba")
>>> eq.explicit
'ba->ab'
>>> b = bind(parse("...ij,...jk->...ik"), ((1, 2, 3), (5, 3, 4)))
>>> b.inputs, b.output, b.sizes["a"]
(('lij', 'ajk'), 'aik', 5)
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import EinsumError

__all__ = ["Equation", "Bound", "parse", "bind", "spell", "spell_equation", "fresh_letters",
           "axis_index", "check_shapes",
           "LETTERS", "ELLIPSIS"]

#: Every letter numpy accepts as a subscript.
LETTERS = string.ascii_letters
#: The one character that stands for ``'...'`` inside this package.
ELLIPSIS = "."


def spell(subscripts: str) -> str:
    """Write an internal subscript string as users write it (``'.ij'`` → ``'...ij'``)."""
    return subscripts.replace(ELLIPSIS, "...")


def spell_equation(inputs: Sequence[str], output: str) -> str:
    """``('ij', 'jk'), 'ik'`` → ``'ij,jk->ik'``."""
    return ",".join(spell(s) for s in inputs) + "->" + spell(output)


@dataclass(frozen=True)
class Equation:
    """A parsed einsum equation, always explicit.

    ``inputs`` and ``output`` hold letters and ``'.'`` for ``'...'``;
    ``starts`` and ``positions`` map back into ``text`` for error carets.
    """

    text: str
    inputs: tuple[str, ...]
    output: str
    implicit: bool
    starts: tuple[int, ...] = field(repr=False, compare=False)
    positions: tuple[tuple[int, ...], ...] = field(repr=False, compare=False)
    arrow: int = field(default=-1, repr=False, compare=False)

    @property
    def explicit(self) -> str:
        """The explicit form of the equation, as numpy would read it."""
        return spell_equation(self.inputs, self.output)

    @property
    def letters(self) -> str:
        """Every letter of the equation, in order of first appearance."""
        return "".join(dict.fromkeys(c for s in self.inputs for c in s if c != ELLIPSIS))

    def fail(self, message: str, operand: int | None = None, index: int | None = None,
             width: int = 1) -> EinsumError:
        """An :class:`EinsumError` pointing at operand ``operand`` (its ``index``-th label)."""
        if operand is None:
            return EinsumError(message, self.text)
        if index is None:
            return EinsumError(message, self.text, self.starts[operand], width)
        pos = self.positions[operand][index]
        if self.inputs[operand][index] == ELLIPSIS:
            width = 3
        return EinsumError(message, self.text, pos, width)


def parse(text: object) -> Equation:
    """Parse ``text`` into an explicit :class:`Equation`, or raise :class:`EinsumError`.

    >>> parse("ij,jk").explicit
    'ij,jk->ik'
    >>> parse("ii").explicit
    'ii->'
    """
    if not isinstance(text, str):
        raise EinsumError(f"an einsum equation is a string, not {type(text).__name__}")
    terms: list[list[str]] = [[]]
    where: list[list[int]] = [[]]
    starts = [0]
    output: list[str] | None = None
    out_where: list[int] = []
    arrow_at = -1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        labels, places = (terms[-1], where[-1]) if output is None else (output, out_where)
        if c in LETTERS:
            labels.append(c)
            places.append(i)
        elif c == ".":
            if text[i:i + 3] != "..." or text[i + 3:i + 4] == ".":
                run = len(text[i:]) - len(text[i:].lstrip("."))
                raise EinsumError("dots must come as one '...' (an ellipsis)", text, i, run)
            if ELLIPSIS in labels:
                raise EinsumError("a subscript may hold only one '...'", text, i, 3)
            labels.append(ELLIPSIS)
            places.append(i)
            i += 2
        elif c == ",":
            if output is not None:
                raise EinsumError("the output has one subscript: ',' after '->'", text, i)
            terms.append([])
            where.append([])
            starts.append(i + 1)
        elif c == "-":
            if text[i + 1:i + 2] != ">":
                raise EinsumError("'-' must be followed by '>' (write '->')", text, i)
            if output is not None:
                raise EinsumError("a second '->': an equation has one output", text, i, 2)
            output, arrow_at = [], i
            i += 1
        elif c == ">":
            raise EinsumError("'>' without '-' before it (write '->')", text, i)
        elif c == " ":
            pass
        else:
            raise EinsumError(f"{c!r} is not a subscript letter (use a-z, A-Z or '...')", text, i)
        i += 1

    inputs = tuple("".join(t) for t in terms)
    positions = tuple(tuple(w) for w in where)
    has_ellipsis = any(ELLIPSIS in s for s in inputs)
    if output is None:
        counts: dict[str, int] = {}
        for s in inputs:
            for c in s:
                counts[c] = counts.get(c, 0) + 1
        once = sorted(c for c, k in counts.items() if k == 1 and c != ELLIPSIS)
        out = (ELLIPSIS if has_ellipsis else "") + "".join(once)
        implicit = True
    else:
        seen: set[str] = set()
        for c, pos in zip(output, out_where):
            if c == ELLIPSIS:
                pass
            elif not any(c in s for s in inputs):
                raise EinsumError(f"output subscript {c!r} appears in no input", text, pos)
            if c in seen:
                raise EinsumError(f"output subscript {c!r} appears twice", text, pos)
            seen.add(c)
        out = "".join(output)
        if not has_ellipsis:                 # numpy: it stands for no dimension at all
            out = out.replace(ELLIPSIS, "")
        implicit = False
    return Equation(text, inputs, out, implicit, tuple(starts), positions, arrow_at)


@dataclass(frozen=True)
class Bound:
    """An equation bound to shapes: letters only, one size per letter.

    ``'...'`` is spelled with fresh letters (``ellipsis``, outermost first) and an
    axis of size 1 that broadcasts against a larger size of the same letter gets
    a fresh letter of its own (listed in ``broadcast``), so that every einsum
    derived from it is valid without numpy's broadcasting rules.
    """

    inputs: tuple[str, ...]
    output: str
    sizes: dict
    shapes: tuple[tuple[int, ...], ...]
    ellipsis: str = ""
    broadcast: frozenset = frozenset()


#: The order in which fresh letters are taken: as a reader would name new indices.
INDEX_ORDER = "ijklmnopqrstuvwxyzabcdefgh" + string.ascii_uppercase
#: The order in which letters for ``'...'`` are taken: batch dimensions read as a, b, c.
BATCH_ORDER = string.ascii_letters


def fresh_letters(used: set, count: int | None = None, order: str = INDEX_ORDER):
    """Yield letters not in ``used`` (adding each to it), ``count`` of them or as many as asked."""
    taken = 0
    for c in order:
        if count is not None and taken == count:
            return
        if c not in used:
            used.add(c)
            taken += 1
            yield c
    if count is None or taken < count:
        raise EinsumError("the equation uses too many letters to name its derived axes")


def bind(eq: Equation, shapes: Sequence[Sequence[int]]) -> Bound:
    """Check ``shapes`` against ``eq`` and spell ``...`` and size-1 broadcasting with letters.

    Raises :class:`EinsumError` for a wrong operand count, a rank that does not fit
    the subscripts, a negative size, or a letter with two sizes (1 broadcasts).
    """
    shapes = check_shapes(eq, shapes)
    sizes: dict[str, int] = {}
    first: dict[str, int] = {}
    ell_shapes = []
    for k, (subs, shape) in enumerate(zip(eq.inputs, shapes)):
        nell = len(shape) - (len(subs) - (ELLIPSIS in subs))
        ell_shapes.append(shape[subs.index(ELLIPSIS):][:nell] if ELLIPSIS in subs else ())
        own: dict[str, int] = {}
        for i, (c, n) in enumerate(zip(_axes(subs, nell), shape)):
            if c is None:
                continue
            if c in own and own[c] != n:
                raise eq.fail(f"letter {c!r} repeats in operand {k + 1} with sizes {own[c]} and {n}; "
                              "a diagonal needs equal sizes", k, _label_index(subs, i, nell))
            own[c] = n
            old = sizes.get(c)
            if old is not None and old != n and 1 not in (old, n):
                raise eq.fail(f"letter {c!r} has size {old} in operand {first[c] + 1} but {n} in "
                              f"operand {k + 1} (only size 1 broadcasts)", k, _label_index(subs, i, nell))
            if old is None or old == 1:
                sizes[c] = n
                first[c] = k
    nmax = max((len(s) for s in ell_shapes), default=0)
    ell_size = [1] * nmax
    for k, es in enumerate(ell_shapes):
        for j, n in enumerate(es):
            at = nmax - len(es) + j
            if ell_size[at] != n and 1 not in (ell_size[at], n):
                raise eq.fail(f"the '...' of operand {k + 1} has shape {tuple(es)}, which does not "
                              f"broadcast with the others", k, eq.inputs[k].index(ELLIPSIS))
            if n != 1:
                ell_size[at] = n
    if nmax and ELLIPSIS not in eq.output:
        raise EinsumError(f"the output leaves out '...', which stands for {nmax} dimension(s) "
                          "here: numpy needs '...' in the output to keep them",
                          eq.text, eq.arrow if eq.arrow >= 0 else None, 2)

    used = set(eq.letters)
    ell_letters = "".join(fresh_letters(used, nmax, BATCH_ORDER))
    fresh = fresh_letters(used)
    for c, n in zip(ell_letters, ell_size):
        sizes[c] = n
    broadcast = []
    inputs = []
    for subs, shape in zip(eq.inputs, shapes):
        nell = len(shape) - (len(subs) - (ELLIPSIS in subs))
        letters = []
        for c, n in zip(_axes(subs, nell, ell_letters), shape):
            if n == 1 and sizes[c] != 1:
                c = next(fresh)
                sizes[c] = 1
                broadcast.append(c)
            letters.append(c)
        inputs.append("".join(letters))
    output = eq.output.replace(ELLIPSIS, ell_letters)
    return Bound(tuple(inputs), output, sizes, shapes, ell_letters, frozenset(broadcast))


def axis_index(subs: str, i: int) -> int:
    """Axis of label ``i`` of ``subs``: counted from the end when it comes after ``'...'``."""
    if ELLIPSIS in subs and i > subs.index(ELLIPSIS):
        return i - len(subs)
    return i


def _axes(subs: str, nell: int, ell_letters: str | None = None):
    """One label per axis: a letter, or for ``...`` axes the matching ``ell_letters`` (else None)."""
    for c in subs:
        if c == ELLIPSIS:
            if ell_letters is None:
                yield from [None] * nell
            else:
                yield from ell_letters[len(ell_letters) - nell:]
        else:
            yield c


def _label_index(subs: str, axis: int, nell: int) -> int:
    """Index in ``subs`` of the label that covers axis ``axis``."""
    if ELLIPSIS in subs:
        e = subs.index(ELLIPSIS)
        if axis >= e + nell:
            return axis - nell + 1
        if axis >= e:
            return e
    return axis


def check_shapes(eq: Equation, shapes) -> tuple[tuple[int, ...], ...]:
    """``shapes`` as tuples of ints, checked against ``eq``'s operands (count, rank, signs)."""
    try:
        shapes = [tuple(s) for s in shapes]
    except TypeError:
        raise EinsumError("shapes must be a sequence of tuples of sizes, one per operand",
                          eq.text) from None
    if len(shapes) != len(eq.inputs):
        raise EinsumError(f"the equation has {len(eq.inputs)} operand(s) but {len(shapes)} "
                          "shape(s) were given", eq.text, eq.starts[min(len(shapes), len(eq.inputs) - 1)])
    out = []
    for k, (subs, shape) in enumerate(zip(eq.inputs, shapes)):
        clean = []
        for n in shape:
            if isinstance(n, bool) or not hasattr(n, "__index__"):
                raise eq.fail(f"operand {k + 1} has shape {shape}: sizes must be integers", k,
                              width=max(1, len(spell(subs))))
            if int(n) < 0:
                raise eq.fail(f"operand {k + 1} has shape {shape}: sizes must not be negative", k,
                              width=max(1, len(spell(subs))))
            clean.append(int(n))
        named = len(subs) - (ELLIPSIS in subs)
        if len(clean) < named or (ELLIPSIS not in subs and len(clean) != named):
            what = f"subscripts {spell(subs)!r} name {named}" if subs else "it has no subscripts"
            raise eq.fail(f"operand {k + 1} has {len(clean)} dimension(s) {tuple(clean)} but "
                          f"{what}", k, width=max(1, len(spell(subs))))
        out.append(tuple(clean))
    return tuple(out)
