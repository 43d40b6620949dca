"""cell source → its syntax tree, parsed once per cell.

Every reader of a cell's text (:func:`~einsum_magic.cell.calls.find_calls`, the record's
names and faces, the text reading of ``--no-run``) asks :func:`tree` for the parse, so one
cell is parsed once however many steps read it. The tree is shared: readers never change
it (a rewrite works on a copy, as :class:`ast.NodeTransformer` users here do).

>>> tree("y = x @ W") is tree("y = x @ W")
True
>>> tree("y = x @").body
Traceback (most recent call last):
  ...
SyntaxError: invalid syntax

The readers look for a few kinds of node each: :func:`nodes` walks a tree once and
keeps its nodes, and :func:`of` picks one kind's from them, so a cell's tree is walked
once however many readers ask (a walk is most of what reading a cell costs).

>>> [type(n).__name__ for n in of(tree("y = f(x) @ g(x)"), ast.Call)]
['Call', 'Call']
"""

from __future__ import annotations

import ast
import functools

__all__ = ["tree", "nodes", "of", "CACHED"]

#: Parses kept: a magic run reads one cell (and its functions' sources) several times.
CACHED = 16


@functools.lru_cache(maxsize=CACHED)
def tree(source: str) -> ast.Module:
    """The syntax tree of ``source`` (a :class:`SyntaxError` as :func:`ast.parse` raises it).

    Shared between readers: do not change it.
    """
    return ast.parse(source)


@functools.lru_cache(maxsize=CACHED)
def nodes(tree: ast.AST) -> tuple[ast.AST, ...]:
    """Every node of ``tree`` in :func:`ast.walk`'s order (walked once per tree)."""
    return tuple(ast.walk(tree))


@functools.lru_cache(maxsize=4 * CACHED)
def of(tree: ast.AST, *kinds: type) -> tuple[ast.AST, ...]:
    """The nodes of ``tree`` that are instances of ``kinds``, in :func:`ast.walk`'s order."""
    return tuple(n for n in nodes(tree) if isinstance(n, kinds))
