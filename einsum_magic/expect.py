"""Teaching: grade a learner's proposed backward einsum (``%%einsum_grad --expect A=SPEC``).

This module owns one question: is ``SPEC`` the backward einsum of an operand of a
derivation bound to shapes, over the operands in the stated order: the cotangent
first, then the other operands in their forward order, then (where the generalized
rule needs them) the ``np.eye``/``np.ones`` tensors in the order the Backward tab
lists them? No other order is accepted.

It answers from the letters first. The proposal is lined up with the derived answer
axis by axis (its letters are only names: any relabelling is right), the cotangent
first, then the result, then each other operand and auxiliary tensor; where a letter
cannot be lined up, that part is the mistake, said in the words of the trick:

* the operands are in the wrong order (the cotangent comes first);
* ``B`` must keep its forward letters ``jk`` (you wrote ``kj``: a transpose);
* the result must carry ``A``'s letters ``ij``;
* ``i`` repeats in ``A``, so an ``np.eye`` over ``i`` is needed;
* ``j`` is summed inside ``A`` alone, so an ``np.ones`` over ``j`` is needed (and the
  result broadcasts it back, it does not sum it);
* a letter the forward summed is taken from the operand that shares it, not broadcast.

Only when the letters do not line up yet the proposal is a valid einsum for these
shapes (``np.eye`` is symmetric, a size-1 axis is any letter, an array passed twice)
are values compared, on small seeded random stand-ins whose sizes keep which letters
are equal and which are 1: grading never builds the user's full-size arrays, so it
takes the same time at any size.

``A=?`` is a blank: :class:`Expectation` ``'blank'``, which fails nothing.

>>> from einsum_magic import derive
>>> d = derive("ij,jk->ik", names=("A", "B"), output="C", shapes=((2, 3), (3, 4)))
>>> judge(d, "dL_dA", "ab,cb->ac").verdict
'correct'
>>> print(judge(d, "dL_dA", "ik,kj->ij").message)
B must keep its forward letters 'jk' (you wrote 'kj': a transpose)
>>> print(judge(d, "dL_dA", "jk,ik->ij").message)
the operands are in the wrong order: the cotangent dL_dC comes first, then B (your letters fit (B, dL_dC))
>>> judge(d, "dL_dA", "?").verdict
'blank'
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .core.equation import ELLIPSIS, INDEX_ORDER, parse, spell
from .core.evaluate import random_array
from .errors import EinsumError

__all__ = ["Expectation", "judge", "BLANK", "over"]

#: What a learner writes for an open exercise (``--expect A=?``).
BLANK = "?"
#: Values are compared only when the stand-in einsums stay below this many multiply-adds.
MAX_STAND_IN_WORK = 2_000_000
#: Every order of the operands is tried for the wrong-order diagnosis up to this many.
MAX_PERMUTED = 6


@dataclass(frozen=True)
class Expectation:
    """The verdict on one ``--expect TARGET=PROPOSAL``.

    ``verdict`` is ``'correct'``, ``'wrong'``, ``'invalid'`` (not an einsum: the
    message adds the caret lines) or ``'blank'`` (``A=?``: an open exercise).
    ``message`` says why in words; ``mistakes`` lists each mistake found, one line
    each. ``over`` names the operands the proposal is over, in order. ``einsum`` is
    the 1-based index of the einsum of the cell it was applied to (set by the magic).
    """

    target: str
    proposal: str
    verdict: str
    message: str
    wrt: str = ""
    over: tuple[str, ...] = ()
    mistakes: tuple[str, ...] = ()
    einsum: int | None = None

    @property
    def passed(self) -> bool:
        """The proposal is right."""
        return self.verdict == "correct"

    @property
    def answered(self) -> bool:
        """A proposal was given (not a blank)."""
        return self.verdict != "blank"

    @property
    def failed(self) -> bool:
        """A proposal was given and it is wrong: the cell fails."""
        return self.answered and not self.passed

    @property
    def question(self) -> str:
        """The exercise: what the proposal is the backward of, over which operands."""
        return f"the backward of {self.wrt} as one einsum over ({', '.join(self.over)})"


def over(derivation, grad) -> tuple[str, ...]:
    """The operands of ``grad``'s backward in the stated order, as the learner names them.

    >>> from einsum_magic import derive
    >>> d = derive("ij->i", names=("M",), output="s", shapes=((2, 3),))
    >>> over(d, d.grads[0])
    ('dL_ds', 'np.ones over j')
    """
    names = list(grad.arguments[:len(grad.arguments) - len(grad.aux)])
    return tuple(names + [f"np.{a.kind} over {a.letter}" for a in grad.aux])


@dataclass(frozen=True)
class _Item:
    """One part of the backward lined up with the proposal: an operand or the result."""

    kind: str                  # 'cotangent', 'operand', 'eye', 'ones', 'result'
    name: str                  # how the learner knows it (dL_dC, B, np.eye, the result)
    derived: str               # its letters in the derived answer (bound: one per axis)
    written: tuple | None      # the learner's tokens for it, one per axis (None: rank mismatch)
    spelled: str               # the learner's subscripts as written
    aux: object = None         # the Aux it stands for
    literal: bool = False      # written with exactly the letters the forward gives it


def judge(derivation, target: str, proposal: str, seed: int = 0) -> Expectation:
    """Grade a proposed backward einsum for gradient ``target`` of a shaped ``derivation``.

    The proposal is over (the cotangent, the other operands in order), followed by
    the derived ``np.eye``/``np.ones`` tensors when the generalized rule needs them.

    >>> from einsum_magic import derive
    >>> d = derive("ij,jk->ik", names=("A", "B"), output="C", shapes=((2, 3), (3, 4)))
    >>> judge(d, "dL_dA", "ik, jk -> ij").message
    "correct: dL_dA = einsum('ik, jk -> ij', dL_dC, B)"
    >>> print(judge(d, "dL_dA", "ik,jk->ji").message)
    the result must carry A's letters 'ij' (you wrote 'ji': a transpose)
    >>> print(judge(derive("ii->i", shapes=((3, 3),)), "dL_dA", "i->ii").message)
    'i' repeats in A, so an np.eye over 'i' is needed: the result may not repeat a letter
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EinsumError(f"the seed must be a non-negative integer, not {seed!r}")
    grad = next((g for g in derivation.grads if g.target == target), None)
    if grad is None:
        raise EinsumError(f"{target!r} is no gradient of {derivation.equation!r}: "
                          + ", ".join(g.target for g in derivation.grads))
    names = over(derivation, grad)

    def verdict(kind, message, mistakes=()):
        return Expectation(target, proposal, kind, message, grad.wrt, names, tuple(mistakes))

    text = proposal.strip()
    if text == BLANK:
        blank = verdict("blank", "")
        return verdict("blank", f"open exercise: propose {blank.question}")
    try:
        inputs, output = _read(text)
    except EinsumError as e:
        return verdict("invalid", f"not a valid einsum: {e}")
    if derivation.shapes is None:
        raise EinsumError("grading needs shapes: derive(..., shapes=...)", derivation.equation)

    core = len(derivation.names)
    n_aux = len(grad.aux)
    if len(inputs) not in (core, core + n_aux) or (n_aux and len(inputs) == core):
        mistakes = _count_mistakes(derivation, grad, inputs, output, names, core)
        return verdict("wrong", "; ".join(mistakes), mistakes)

    ranks = _ranks(derivation, grad)
    dotted = [t for t, subs in enumerate(inputs) if ELLIPSIS in subs
              and ranks[t] > len(subs) - 1]
    if dotted and ELLIPSIS not in output:
        name = names[dotted[0]]
        return verdict("invalid", f"not a valid einsum: the '...' of {name} stands for axes here, "
                                  "and numpy needs '...' in the output to keep them; to sum them, "
                                  "name them with letters (e.g. 'bik,bij->jk')")
    stated = _mistakes(derivation, grad, inputs, output, tuple(range(len(inputs))), ranks)
    if not stated:
        return verdict("correct", f"correct: {target} = einsum({proposal!r}, {', '.join(names)})")
    if _same_values(derivation, grad, inputs, output, seed):
        return verdict("correct", f"correct: {target} = einsum({proposal!r}, {', '.join(names)})")
    original = _original(derivation, grad)

    def literal(perm):                  # operands written with their forward letters as given
        return sum(inputs[t] == original[perm[t]] for t in range(len(inputs)))

    ident = tuple(range(len(inputs)))
    score, order, best = (len(stated), -literal(ident)), None, stated
    for perm in _orders(len(inputs), n_aux):
        found = _mistakes(derivation, grad, inputs, output, perm, ranks)
        if (1 + len(found), -literal(perm)) < score:
            score, order, best = (1 + len(found), -literal(perm)), perm, found
    if order is not None:
        fit = ", ".join(names[order[t]] for t in range(len(inputs)))
        rest = ", ".join(names[1:])
        head = (f"the operands are in the wrong order: the cotangent {names[0]} comes first"
                + (f", then {rest}" if rest else "") + f" (your letters fit ({fit}))")
        mistakes = [head] + best
    else:
        mistakes = stated
    return verdict("wrong", "; ".join(mistakes), mistakes)


# -- reading the proposal ----------------------------------------------------------------

def _read(text: str) -> tuple[tuple[str, ...], str]:
    """The proposal's input subscripts and output ('.' for '...'), leniently.

    An output letter that no input carries, or one that repeats, is no valid einsum, but it
    is what a learner writes who forgot an ``np.ones`` or an ``np.eye``: it is read, so that
    the mistake can be named. Anything else that is no einsum raises :class:`EinsumError`.
    """
    try:
        eq = parse(text)
        return eq.inputs, eq.output
    except EinsumError as e:
        if not e.reason.startswith("output subscript"):
            raise
    left, _, right = text.partition("->")
    inputs = parse(left).inputs
    out = parse(right.replace(",", "x"))        # a ',' in the output was reported above
    return inputs, out.inputs[0]


def _original(derivation, grad) -> tuple[str, ...]:
    """Each backward operand's letters as the forward equation spells them, in the stated order."""
    eq = parse(derivation.text)
    others = [eq.inputs[m] for m in range(len(eq.inputs)) if m != grad.position]
    return (eq.output, *others, *(a.subscripts for a in grad.aux))


def _ranks(derivation, grad) -> tuple[int, ...]:
    """The number of axes of each operand of the backward, in the stated order."""
    return tuple(len(s) for s in grad.inputs)


def _tokens(subs: str, rank: int):
    """One token per axis: letters, and ``('...', k)`` for the k-th '...' axis from the end."""
    if ELLIPSIS not in subs:
        return tuple(subs) if len(subs) == rank else None
    fill = rank - (len(subs) - 1)
    if fill < 0:
        return None
    at = subs.index(ELLIPSIS)
    return tuple(subs[:at]) + tuple(("...", fill - k) for k in range(fill)) + tuple(subs[at + 1:])


def _output_tokens(output: str, inputs, ranks, perm):
    if ELLIPSIS not in output:
        return tuple(output)
    fill = max((ranks[perm[t]] - (len(s) - 1) for t, s in enumerate(inputs) if ELLIPSIS in s),
               default=0)
    return _tokens(output, len(output) - 1 + max(fill, 0))


def _spelled(tokens) -> str:
    out, in_dots = [], False
    for t in tokens:
        if isinstance(t, tuple):
            if not in_dots:
                out.append("...")
            in_dots = True
        else:
            out.append(t)
            in_dots = False
    return "".join(out)


# -- lining the proposal up with the derived answer ----------------------------------------

def _items(derivation, grad, inputs, output, perm, ranks) -> list[_Item]:
    """The parts of the backward in the order they are lined up: cotangent, result, operands."""
    names = over(derivation, grad)
    where = {perm[t]: t for t in range(len(inputs))}
    original = _original(derivation, grad)

    def operand(a, kind, aux=None):
        t = where[a]
        return _Item(kind, names[a], grad.inputs[a], _tokens(inputs[t], ranks[a]),
                     spell(inputs[t]), aux, aux is None and inputs[t] == original[a])

    items = [operand(0, "cotangent")]
    out = _output_tokens(output, inputs, ranks, perm)
    if out is not None and len(out) != len(grad.output):
        out = None
    own = parse(derivation.text).inputs[grad.position]
    items.append(_Item("result", "the result", grad.output, out, spell(output), None,
                       output == own and len(set(own)) == len(own)))
    n_core = len(grad.inputs) - len(grad.aux)
    for a in range(1, n_core):
        items.append(operand(a, "operand"))
    for j, aux in enumerate(grad.aux):
        items.append(operand(n_core + j, aux.kind, aux))
    return items


def _mistakes(derivation, grad, inputs, output, perm, ranks) -> list[str]:
    """Each part of the proposal that does not line up with the derived answer, in words.

    The parts are lined up in one of two orders: the result right after the cotangent (a
    transposed operand is then the mistake), or last (a wrong result is). The order that
    finds fewer mistakes wins; on a tie, the one that does not blame a part written with
    exactly its forward letters, then the one that blames a part holding a letter no operand
    carries (certainly a mistake of that part); else the first.
    """
    items = _items(derivation, grad, inputs, output, perm, ranks)
    carried = {t for s in inputs for t in s}
    best = None
    for order in (items, items[:1] + items[2:] + items[1:2]):
        wrong, to_learner, to_derived = _line_up(order)
        dangling = sum(any(t not in carried for t in item.written or ()) for item in wrong)
        key = (len(wrong), sum(item.literal for item in wrong), -dangling)
        if best is None or key < best[0]:
            best = (key, wrong, to_learner, to_derived)
    _, wrong, to_learner, to_derived = best
    if not wrong:
        return []
    namer = _Namer(to_learner, set(to_derived))
    wrong = [item for item in items if item in wrong]            # said in the stated order
    return [_explain(derivation, grad, item, namer, carried, ranks) for item in wrong]


def _line_up(items):
    """(the parts that do not line up, learner → derived letters, derived → learner letters)."""
    to_derived: dict = {}
    to_learner: dict = {}
    wrong: list[_Item] = []
    for item in items:
        if item.written is None:
            wrong.append(item)
            continue
        new_d, new_l, ok = dict(to_derived), dict(to_learner), True
        for p, dl in zip(item.written, item.derived):
            if new_d.setdefault(p, dl) != dl or new_l.setdefault(dl, p) != p:
                ok = False
                break
        if ok:
            to_derived, to_learner = new_d, new_l
        else:
            wrong.append(item)
    return wrong, to_learner, to_derived


class _Namer:
    """Derived letters in the learner's names: their own where lined up, else a free letter."""

    def __init__(self, to_learner: dict, used: set):
        self.names = dict(to_learner)
        self.used = set(used)

    def __call__(self, letters: str) -> str:
        return _spelled(self.tokens(letters))

    def tokens(self, letters: str) -> list:
        out = []
        for dl in letters:
            if dl not in self.names:
                pick = dl if dl not in self.used else next(c for c in INDEX_ORDER
                                                          if c not in self.used)
                self.used.add(pick)
                self.names[dl] = pick
            out.append(self.names[dl])
        return out


def _explain(derivation, grad, item: _Item, namer: _Namer, carried: set, ranks) -> str:
    wrt = grad.wrt
    tokens = namer.tokens(item.derived)
    expected = _spelled(tokens)
    wrote = item.spelled
    if item.written is not None and sorted(map(str, item.written)) == sorted(map(str, tokens)) \
            and list(item.written) != tokens:
        how = f"you wrote {wrote!r}: a transpose"
    else:
        how = f"you wrote {wrote!r}"
    if item.kind == "cotangent":
        return (f"the cotangent {item.name} comes first and carries {derivation.output}'s letters "
                f"{expected!r} ({how})")
    if item.kind == "operand":
        head = f"{item.name} must keep its forward letters {expected!r} ({how})"
        written = set(map(str, item.written or ()))
        for c, dl in zip(expected, item.derived):
            if c == dl and c not in written and c not in carried:
                return (head + f": {c!r} is a letter the forward summed ({wrt} shares it with "
                        f"{item.name}), so the backward takes it from {item.name}; it is not "
                        "broadcast")
        return head
    if item.kind == "eye":
        c = namer(item.aux.letter)
        return (f"np.eye ties {c!r} (which repeats in {wrt}) to the repeat's own letter: its "
                f"letters are {expected!r} ({how})")
    if item.kind == "ones":
        c = namer(item.aux.letter)
        return f"np.ones runs over {c!r}, the letter summed inside {wrt} alone ({how})"
    # the result
    reasons = []
    written = item.written or ()
    roles = {x.letter: x for x in derivation.letters}
    for p in dict.fromkeys(written):
        if p not in carried and isinstance(p, str):
            dl = item.derived[written.index(p)]
            if namer(dl) != p:               # lined up elsewhere: no reason worth giving
                reasons.append(f"{p!r} comes from no operand")
                continue
            sharers = [n for n in grad.arguments[1:len(grad.arguments) - len(grad.aux)]
                       if any(dl in s for s in grad.inputs[1:len(grad.inputs) - len(grad.aux)])]
            if dl in derivation.result:
                reasons.append(f"{p!r} is a letter of {derivation.output}: it comes from "
                               f"{derivation.cotangent}, not from nowhere")
            elif sharers:
                reasons.append(f"{p!r} is a letter the forward summed ({wrt} shares it with "
                               f"{', '.join(sharers)}): the backward takes it from "
                               f"{sharers[0]}, it is not broadcast")
    if len(written) < len(item.derived) or item.written is None:
        mine = set(map(str, written))
        for dl in item.derived:
            name = namer(dl)
            if name in mine:
                continue
            role = roles.get(dl)
            aux = next((a for a in grad.aux if a.kind == "ones" and a.letter == dl), None)
            if aux is not None or (role is not None and role.role in ("summed-in-one", "broadcast")):
                reasons.append(f"{name!r} is summed inside {wrt} alone in the forward, so the "
                               f"backward broadcasts it back (np.ones over {name!r}) instead of "
                               "summing it")
    head = f"the result must carry {wrt}'s letters {expected!r} ({how})"
    return head + "".join(f": {r}" for r in reasons[:1]) + "".join(f"; {r}" for r in reasons[1:])


def _count_mistakes(derivation, grad, inputs, output, names, core) -> list[str]:
    """The proposal has the wrong number of operands: say which ones the backward takes."""
    n = len(inputs)
    if grad.aux and n == core:
        learner = {}
        out = tuple(output.replace(ELLIPSIS, ""))
        subs = derivation.inputs[grad.position]
        for a in grad.aux:
            at = [i for i, c in enumerate(subs) if c == a.letter]
            learner[a] = out[at[0]] if len(out) == len(subs) else a.letter
        mistakes = []
        for a in grad.aux:
            c = learner[a]
            if a.kind == "eye":
                mistakes.append(f"{c!r} repeats in {grad.wrt}, so an np.eye over {c!r} is needed: "
                                "the result may not repeat a letter")
            else:
                mistakes.append(f"{c!r} is summed inside {grad.wrt} alone, so an np.ones over {c!r} "
                                "is needed: no other operand carries it")
        return mistakes
    takes = f"{core} operand{'s' if core != 1 else ''} ({', '.join(names[:core])})"
    if grad.aux:
        takes += f", then {', '.join(names[core:])}"
    elif n > core:
        takes += ": no np.eye or np.ones is needed here"
    return [f"the backward of {grad.wrt} takes {takes}; you wrote {n} operand"
            f"{'s' if n != 1 else ''}"]


def _orders(n: int, n_aux: int):
    """Orders of the proposal's operands to try for the wrong-order diagnosis (not the stated)."""
    if n <= MAX_PERMUTED:
        perms = itertools.permutations(range(n))
    else:
        perms = (tuple(range(i)) + (j,) + tuple(range(i + 1, j)) + (i,) + tuple(range(j + 1, n))
                 for i, j in itertools.combinations(range(n), 2))
    ident = tuple(range(n))
    return [p for p in perms if p != ident]


# -- values on small stand-ins --------------------------------------------------------------

def _same_values(derivation, grad, inputs, output, seed) -> bool:
    """Whether the proposal equals the derived answer on small seeded random stand-ins.

    The stand-ins keep which letters have equal sizes and which have size 1, so a proposal
    that is a valid einsum for the real shapes is one for them; False when it is not one.
    """
    shapes = _arg_shapes(derivation, grad)
    ranks = tuple(len(s) for s in shapes)
    perm = tuple(range(len(inputs)))
    tokens = [_tokens(s, r) for s, r in zip(inputs, ranks)]
    out = _output_tokens(output, inputs, ranks, perm)
    if any(t is None for t in tokens) or out is None:
        return False
    size: dict = {}
    for toks, shape in zip(tokens, shapes):
        for t, n in zip(toks, shape):
            old = size.get(t)
            if old is not None and old != n and 1 not in (old, n):
                return False
            if old is None or old == 1:
                size[t] = n
    dots = {t for t in size if isinstance(t, tuple)}
    if any(t not in size for t in out) or len(set(out)) != len(out) or \
            (dots and not dots <= set(out)):
        return False
    small = {n: n if n < 2 else 2 + k
             for k, n in enumerate(sorted({n for s in shapes for n in s} - {0, 1}))}
    small.update({0: 0, 1: 1})
    if np.prod([small[n] for n in size.values()], dtype=float) > MAX_STAND_IN_WORK:
        return False
    rng = np.random.default_rng(seed)
    arrays, same = [], {}
    for k, shape in enumerate(shapes):
        stand_in = tuple(small[n] for n in shape)
        name = grad.arguments[k]
        if k >= len(shapes) - len(grad.aux):
            aux = grad.aux[k - (len(shapes) - len(grad.aux))]
            arrays.append(getattr(np, aux.kind)(stand_in[0]))
        elif name in same:
            arrays.append(same[name])
        else:
            same[name] = random_array(rng, stand_in)
            arrays.append(same[name])
    want = np.einsum(grad.equation, *arrays, optimize=True)
    letters = {}
    for toks in tokens + [out]:
        for t in toks:
            if t not in letters:
                letters[t] = next(c for c in INDEX_ORDER if c not in letters.values())
    spec = ",".join("".join(letters[t] for t in toks) for toks in tokens) + "->" + \
        "".join(letters[t] for t in out)
    try:
        got = np.einsum(spec, *arrays, optimize=True)
    except ValueError:
        return False
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-9, atol=1e-12))


def _arg_shapes(derivation, grad) -> list[tuple[int, ...]]:
    """Shapes of the backward's operands in the stated order, from the derivation alone."""
    sizes = dict(derivation.sizes)
    for a in grad.aux:
        for c in a.subscripts:
            sizes.setdefault(c, sizes[a.letter])
    return [tuple(sizes[c] for c in s) for s in grad.inputs]
