"""Operand shapes for an einsum: from the user's arrays, from ``--sizes``, else distinct defaults.

This module owns where sizes come from when nobody passed shapes to
:func:`einsum_magic.derive`: the magic reads them off the user's arrays, then takes
``--sizes i=2,j=3`` for the letters no array fixes, and gives every other letter (and
``...``) a small default. Defaults are distinct (2, 3, 4, …) so that a transposed result
cannot pass a check by accident.

>>> shapes_for("ij,jk->ik")
((2, 3), (3, 4))
>>> shapes_from("...ij,jk->...ik", {0: (7, 2, 3)}, {"k": 5})
(((7, 2, 3), (3, 5)), 'sizes from your arrays and --sizes')
"""

from __future__ import annotations

import itertools

from .equation import ELLIPSIS, parse
from ..errors import EinsumError

__all__ = ["parse_sizes", "shapes_for", "shapes_from"]


def parse_sizes(text: str | None) -> dict[str, int]:
    """``'i=2,batch=8'`` → ``{'i': 2, 'batch': 8}``: letters, or einops axis names.

    Raises :class:`EinsumError` pointing at a bad item.

    >>> parse_sizes("i=2, j=3")
    {'i': 2, 'j': 3}
    >>> parse_sizes("i=2,i=3")
    Traceback (most recent call last):
      ...
    einsum_magic.errors.EinsumError: 'i' is given twice (i=2, then i=3): give each size once
        i=2,i=3
            ^^^
    """
    sizes: dict[str, int] = {}
    if not text:
        return sizes
    at = 0
    for item in text.split(","):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier() or not value.strip().isdigit():
            raise EinsumError("sizes are written letter=size, separated by commas (i=2,j=3; "
                              "einops axis names too: batch=8)", text, at, max(1, len(item)))
        if key in sizes:
            raise EinsumError(f"{key!r} is given twice ({key}={sizes[key]}, then "
                              f"{key}={int(value)}): give each size once", text,
                              at + len(item) - len(item.lstrip()), len(item.strip()))
        sizes[key] = int(value)
        at += len(item) + 1
    return sizes


def shapes_for(equation: str, sizes: dict[str, int] | None = None,
               ellipsis: tuple[int, ...] | None = None) -> tuple[tuple[int, ...], ...]:
    """Operand shapes for ``equation`` from ``sizes``, else small distinct defaults (2, 3, 4, …).

    Distinct sizes make a transposed result fail loudly rather than pass by accident.
    ``...`` stands for ``ellipsis``, by default one axis of a size no letter has.

    >>> shapes_for("...ij,jk->...ik", {"j": 2})
    ((5, 3, 2), (2, 4))
    """
    eq = parse(equation)
    sizes = dict(sizes or {})
    unknown = [c for c in sizes if c not in eq.letters]
    if unknown:
        raise EinsumError(f"--sizes names {unknown[0]!r}, which is not a letter of the equation",
                          eq.text)
    default = itertools.count(2)
    used = set(sizes.values())
    for c in eq.letters:
        if c not in sizes:
            n = next(default)
            while n in used:
                n = next(default)
            sizes[c] = n
            used.add(n)
    if ellipsis is None and ELLIPSIS in "".join(eq.inputs):
        ellipsis = (next(n for n in default if n not in used),)
    return tuple(
        tuple(s for c in subs for s in (ellipsis if c == "." else (sizes[c],)))
        for subs in eq.inputs)


def shapes_from(equation: str, arrays: dict[int, tuple[int, ...]],
                sizes: dict[str, int]) -> tuple[tuple[tuple[int, ...], ...], str]:
    """Shapes for every operand of ``equation``, and where their sizes came from, in words.

    ``arrays`` maps operand positions to the shapes of the user's arrays (they win);
    ``sizes`` gives letters no array fixes; the rest gets :func:`shapes_for`'s defaults.
    """
    eq = parse(equation)
    letters: dict[str, int] = {}
    ellipsis = None
    for k, shape in arrays.items():
        subs = eq.inputs[k]
        if ELLIPSIS in subs:
            e = subs.index(ELLIPSIS)
            after = len(subs) - e - 1
            if len(shape) < len(subs) - 1:
                continue
            pairs = list(zip(subs[:e], shape)) + list(zip(subs[e + 1:], shape[len(shape) - after:]))
            ellipsis = ellipsis or tuple(shape[e:len(shape) - after])
        elif len(shape) == len(subs):
            pairs = list(zip(subs, shape))
        else:
            continue                        # derive() says what is wrong with it
        for c, n in pairs:
            if n != 1 or c not in letters:  # a size-1 axis may broadcast: a larger size wins
                letters[c] = n
    from_sizes = {c: n for c, n in sizes.items() if c not in letters}
    missing = [c for c in eq.letters if c not in letters and c not in from_sizes]
    defaults = shapes_for(equation, {**letters, **from_sizes}, ellipsis=ellipsis)
    shapes = tuple(tuple(arrays[k]) if k in arrays else s for k, s in enumerate(defaults))
    ellipsis_default = ellipsis is None and any(
        ELLIPSIS in s for k, s in enumerate(eq.inputs) if k not in arrays)
    sources = [what for what, used in (
        ("your arrays", bool(arrays)), ("--sizes", bool(from_sizes)),
        ("defaults", bool(missing) or ellipsis_default)) if used]
    if not sources:
        return shapes, "no sizes needed (every operand is a scalar)"
    return shapes, "sizes from " + " and ".join(sources)
