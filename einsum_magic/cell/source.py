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
"""

from __future__ import annotations

import ast
import functools

__all__ = ["tree", "CACHED"]

#: Parses kept: a magic run reads one cell (and its functions' sources) several times.
CACHED = 16


@functools.lru_cache(maxsize=CACHED)
def tree(source: str) -> ast.Module:
    """The syntax tree of ``source`` (a :class:`SyntaxError` as :func:`ast.parse` raises it).

    Shared between readers: do not change it.
    """
    return ast.parse(source)
