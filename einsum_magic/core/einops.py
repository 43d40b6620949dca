"""The einops and interleaved (sublist) forms of an einsum, read into one equation in letters.

This module owns the arrow ``einops pattern / integer sublists → equation in letters``, shared
by the reader of the cell's source (:mod:`einsum_magic.cell.calls`) and the calls observed while
it runs (:mod:`einsum_magic.cell.sites`): :func:`read_einops` gives each axis name a letter
(its own where it is one letter, else its first letter or the next free one) and keeps where
each letter came from, so that an error's caret points into the pattern as written;
:func:`read_interleaved` and :func:`sublist` read ``np.einsum(A, [0, 1], B, [1, 2], [0, 2])``
as numpy does (0-25 → A-Z, 26-51 → a-z: :data:`INTERLEAVED_LETTERS`).

>>> r = read_einops("batch d, d out -> batch out", ())
>>> r.equation, r.axes
('bd,do->bo', (('b', 'batch'), ('d', 'd'), ('o', 'out')))
>>> import ast
>>> read_interleaved(ast.parse("f(A, [0, 1], B, [1, 2], [0, 2])").body[0].value.args, "f").equation
'AB,BC->AC'
"""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass

from ..errors import EinsumError
from .equation import INDEX_ORDER

__all__ = ["Read", "read_einops", "read_interleaved", "sublist", "INTERLEAVED_LETTERS"]

#: The letter numpy gives integer ``k`` of the interleaved form: ``INTERLEAVED_LETTERS[k]``
#: (numpy's ``einsum_symbols``: 0-25 → A-Z, 26-51 → a-z).
INTERLEAVED_LETTERS = string.ascii_uppercase + string.ascii_lowercase


@dataclass(frozen=True)
class Read:
    """What one call's arguments say: its equation in letters and how to quote it."""

    equation: str
    operands: list
    style: str
    axes: tuple = ()
    quote: str = ""
    spans: tuple = ()


def read_interleaved(args, function: str) -> Read | str:
    """``f(A, [0, 1], B, [1, 2], [0, 2])`` → equation 'AB,BC->AC', quoted as the call."""
    pairs = list(zip(args[0::2], args[1::2]))
    out_list = args[-1] if len(args) % 2 else None
    quote = f"{function}("
    whole = f"{quote}{', '.join(ast.unparse(a) for a in args)})"     # for an error's caret
    equation, spans, last = "", [], (0, 0)
    for k, (operand, sub) in enumerate(pairs):
        quote += (", " if k else "") + ast.unparse(operand) + ", "
        read = sublist(sub, len(quote), whole)
        if read is None:
            return "the interleaved subscripts are not lists of integer literals"
        text, subs, places = read
        if k:
            equation += ","                      # a separator points at the list before it
            spans.append(last)
        last = (len(quote), len(quote) + len(text))
        quote += text
        equation += subs
        spans += places
    if out_list is not None:
        quote += ", "
        read = sublist(out_list, len(quote), whole)
        if read is None:
            return "the interleaved output is not a list of integer literals"
        text, subs, places = read
        whole = (len(quote), len(quote) + len(text))
        quote += text
        equation += "->" + subs
        spans += [whole, whole, *places]
    return Read(equation, [op for op, _ in pairs], "interleaved", (), quote + ")", tuple(spans))


def sublist(node: ast.AST, at: int, call: str = ""):
    """``[0, 1, Ellipsis]`` → (its text, 'AB...', the span of each letter in the text + ``at``).

    Integers become letters as numpy maps them (0-25 → A-Z, 26-51 → a-z); None when
    ``node`` is not a list (or tuple) of integers and ``Ellipsis``. An integer outside
    0..51 raises :class:`EinsumError` with a caret under it in ``call`` (numpy would
    refuse it when the call runs):

    >>> try:
    ...     sublist(ast.parse("[0, 52]").body[0].value, 13, "np.einsum(A, [0, 52])")
    ... except EinsumError as e:
    ...     print(e)
    the interleaved subscript 52 is out of numpy's range 0..51 (0-25 stand for A-Z, 26-51 for a-z)
        np.einsum(A, [0, 52])
                         ^^
    """
    if not isinstance(node, (ast.List, ast.Tuple)):
        return None
    bracket = "[]" if isinstance(node, ast.List) else "()"
    text, subs, places = bracket[0], "", []
    for j, e in enumerate(node.elts):
        value = e.value if isinstance(e, ast.Constant) else (
            Ellipsis if isinstance(e, ast.Name) and e.id == "Ellipsis" else None)
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub) \
                and isinstance(e.operand, ast.Constant) and type(e.operand.value) is int:
            value = -e.operand.value                    # -1 is a unary minus in the AST
        written = ast.unparse(e)
        text += ", " if j else ""
        span = (at + len(text), at + len(text) + len(written))
        text += written
        integer = isinstance(value, int) and not isinstance(value, bool)
        if value is Ellipsis:
            subs += "..."
            places += [span] * 3
        elif integer and 0 <= value < 52:
            subs += INTERLEAVED_LETTERS[value]
            places.append(span)
        elif integer and call:
            raise EinsumError(f"the interleaved subscript {value} is out of numpy's range 0..51 "
                              "(0-25 stand for A-Z, 26-51 for a-z)", call, span[0], len(written))
        else:
            return None
    if isinstance(node, ast.Tuple) and len(node.elts) == 1:
        text += ","
    return text + bracket[1], subs, places


def read_einops(pattern: str, operands) -> Read:
    """An einops pattern → its equation in letters, axes, and the pattern as the quote."""
    left, arrow, right = pattern.partition("->")
    if not arrow:
        raise EinsumError("an einops pattern needs '->' (einops.einsum has no implicit mode)",
                          pattern)
    terms, commas, at = [], [], 0          # terms: [(word, where in the pattern), …]
    for piece in left.split(","):
        terms.append([(m.group(), at + m.start()) for m in re.finditer(r"\S+", piece)])
        at += len(piece)
        commas.append(at)
        at += 1
    arrow_at = len(left)
    terms.append([(m.group(), arrow_at + 2 + m.start()) for m in re.finditer(r"\S+", right)])
    names = []
    for term in terms:
        for word, where in term:
            if word != "..." and not word.isidentifier():
                raise EinsumError(f"{word!r} is not an axis name (use identifiers or '...')",
                                  pattern, where, len(word))
            if word != "..." and word not in names:
                names.append(word)
    letter: dict[str, str] = {n: n for n in names if len(n) == 1 and n in string.ascii_letters}
    used = set(letter.values())
    for n in names:
        if n in letter:
            continue
        c = n[0] if n[0] in string.ascii_letters and n[0] not in used else next(
            (x for x in INDEX_ORDER + string.ascii_letters if x not in used), None)
        if c is None:
            raise EinsumError("the pattern has more axis names than einsum has letters", pattern)
        letter[n] = c
        used.add(c)

    equation, spans = "", []
    for k, term in enumerate(terms):
        if k == len(terms) - 1:
            equation += "->"
            spans += [(arrow_at, arrow_at + 2)] * 2
        elif k:
            equation += ","
            spans.append((commas[k - 1], commas[k - 1] + 1))
        for word, where in term:
            subs = "..." if word == "..." else letter[word]
            equation += subs
            spans += [(where, where + len(word))] * len(subs)
    axes = tuple((letter[n], n) for n in names)
    return Read(equation, list(operands), "einops", axes, pattern, tuple(spans))
