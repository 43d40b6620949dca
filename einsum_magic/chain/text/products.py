"""A cell that is one product written without einsum (``C = A @ B``) as the einsum call it is.

This module owns the "alone" case of products: a cell whose only step is ``@``, ``matmul``,
``dot``, ``inner``, ``outer``, ``tensordot``, ``trace``, ``diagonal``, a transpose or a sum
over axes gets the same per-einsum display as its einsum. :func:`single_product` reads the
cell (:mod:`~einsum_magic.chain.text.reading`), binds the product to the shapes of the arrays the
user's namespace holds (:mod:`~einsum_magic.chain.text.forward`, where ``A @ B`` becomes
``'ij,jk->ik'`` for matrices and ``'...ij,...jk->...ik'`` for stacks) and returns a
:class:`~einsum_magic.cell.calls.Call` for the magic to derive, check and display like any other.

>>> import numpy as np
>>> call = single_product("C = A @ B", {"A": np.ones((2, 3)), "B": np.ones((3, 4))})
>>> call.equation, call.names, call.output, call.function
('ij,jk->ik', ('A', 'B'), 'C', '@')
"""

from __future__ import annotations

import ast
from typing import Any, Mapping

from ...cell.calls import Call
from ...cell.source import tree
from .forward import bind
from .reading import read

__all__ = ["single_product", "KINDS"]

#: Read kinds that are one einsum once bound (a sum keeps no dimensions).
KINDS = frozenset({"matmul", "dot", "inner", "outer", "tensordot", "trace", "diagonal",
                   "transpose", "swapaxes", "sum"})
_FUNCTION = {"matmul": "@"}
#: Top-level statements a cell of one product may hold; any other ends the reading with a
#: note (a loop, a ``def``), so the cell is not one product and is not read at all.
_STRAIGHT = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Pass, ast.Import,
             ast.ImportFrom)


def single_product(source: str, namespace: Mapping[str, Any]) -> Call | None:
    """The cell's one product as an einsum :class:`Call`, or None when the cell is not that."""
    try:
        if not all(isinstance(stmt, _STRAIGHT) for stmt in tree(source).body):
            return None
        program = read(source, namespace)
    except SyntaxError:
        return None
    steps = [s for s in program.steps if s.kind != "const"]
    if len(steps) != 1 or steps[0].kind not in KINDS or program.notes:
        return None
    s = steps[0]
    if s.kind == "sum" and s.param[1]:
        return None
    if not all(hasattr(namespace.get(a), "shape") for a in s.args):
        return None
    try:
        bound, _ = bind(program, {a: namespace[a] for a in program.inputs}, namespace)
    except Exception:  # noqa: BLE001 - the arrays do not fit: the run will say so
        return None
    einsums = [b for b in bound.steps if b.kind == "einsum"]
    if len(einsums) != 1:
        return None
    rebound = set(dict(program.renamed).values())
    what = s.what or s.text
    return Call(equation=einsums[0].param, names=s.args, operands=s.args, output=s.target,
                function=_FUNCTION.get(s.kind, what.split("(")[0]), style="numpy", line=s.line,
                source=what, bound_after=tuple(a for a in s.args if a in rebound))
