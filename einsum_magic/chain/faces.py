"""The record's second face: every product the cell ran, as the einsum call it equals.

This module owns the arrow *the record of the run → one einsum display per product place*.
The cell backward reads the :class:`~einsum_magic.chain.record.Recording` as a program;
:func:`products` reads the same nodes as call sites: each product node (``x @ W1``,
``torch.matmul``, ``h.mm(W)``, ``F.linear`` also inside ``nn.Linear``, NumPy's ``@``,
``np.dot``, ``A.dot(B)``, ``tensordot``, ``inner``, ``outer``) becomes the einsum it equals,
bound to the shapes that ran, as a :class:`~einsum_magic.cell.calls.Call` that the magic
derives, checks and shows like an einsum call it observed. It reads, never changes, the record.

* **Which einsum**: :data:`EQUATIONS` maps an op to its reading (one entry per op; a
  framework adds its products there): batched matmul with broadcasting gets explicit
  letters for the ranks that ran (:func:`matmul_equation`: ``'abij,abjk->abik'``; a size-1
  batch axis broadcast against a longer one gets a letter of its own, summed), 1-d operands
  their rules (``'j,jk->k'``), ``F.linear`` is ``x @ W.T`` (:func:`linear_equation`) plus its
  bias, NumPy's ``dot`` its own rule (:func:`dot_equation`), JAX's ``dot_general`` its
  dimension numbers (:func:`dot_general_equation`).
* **The user's spelling**: the cell's source is read (``ast``, once) only for how the user
  wrote the product at the line it ran on: ``embcat @ W1``, ``q @ k.transpose(-2, -1)``
  (an operand that is no plain name is ``op2``, with a legend, as for einsum calls), and
  the name a plain assignment binds (``h = x @ W1``). A product the source does not show
  there (``F.linear`` inside ``nn.Linear``, a function defined elsewhere) is spelled from
  the names the record's values have in the namespace (:func:`~einsum_magic.chain.names.names_for`):
  ``F.linear(x, model[0].weight, model[0].bias)``. Where several products of one kind share
  a line, they are taken in the order Python evaluates them; a plain name of the source
  that never held the node's operand rules a match out.
* **One display per place**: nodes of one product at one place (a loop) are one
  :class:`Product` with how often it ran and how many shape signatures it saw; the first
  run is the one shown. A product at a place where an einsum call ran that the capture
  observed (``oe.contract`` on tensors, whose pairwise products torch records; the
  ``dot_general`` of ``jnp.einsum``) is not shown again: the einsum's own display is the one.

:func:`order` interleaves the products with the observed einsum sites in the order the run
made them. Cheap: one pass over the nodes, one parse of the source, names only when a
product needs them; the magic shows at most ``max_displays`` of all sites.

>>> import numpy as np
>>> from einsum_magic.chain.recorders import recording
>>> ns = {"np": np, "A": np.ones((2, 3)), "B": np.ones((3, 4))}
>>> cell = "C = A @ B\\nD = np.tanh(C)"
>>> with recording(ns, source=cell) as rec:
...     exec(compile(cell, "<cell>", "exec"), ns)
>>> (p,) = products(rec, cell, ns)
>>> p.call.source, p.call.equation, p.call.names, p.call.output, p.call.line
('A @ B', 'ij,jk->ik', ('A', 'B'), 'C', 1)
>>> p.equals, p.shapes, p.sizes_from
("the einsum 'ij,jk->ik'", ((2, 3), (3, 4)), 'from the run')
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from typing import Callable

from ..cell.calls import Call
from ..cell.source import of
from ..cell.source import tree as parsed
from .record import Recording, Ref

__all__ = ["Product", "Reading", "EQUATIONS", "products", "order", "einsum_places",
           "matmul_equation",
           "linear_equation", "dot_equation", "inner_equation", "tensordot_equation",
           "dot_general_equation"]

#: Letters of broadcast batch axes, of size-1 axes broadcast against longer ones, and the
#: pools :func:`dot_general_equation` and :func:`tensordot_equation` draw from.
_BATCH = "abcdefgh"
_FRESH = "pqrstuvw"
_LHS, _CONTRACTED, _RHS = "ilmn", "jxyz", "kouv"

#: Distinct shape signatures counted per place.
_VARIANTS = 8


# -- which einsum a product is ------------------------------------------------------------------


def matmul_equation(sa, sb) -> str | None:
    """The einsum ``a @ b`` is for operands of shapes ``sa`` and ``sb`` (None for a 0-d one).

    >>> matmul_equation((2, 3), (3, 4)), matmul_equation((8, 4, 5, 6), (8, 4, 6, 5))
    ('ij,jk->ik', 'abij,abjk->abik')
    >>> matmul_equation((3,), (3,)), matmul_equation((3,), (2, 3, 4)), matmul_equation((5, 2, 3), (3,))
    ('j,j->', 'j,ajk->ak', 'aij,j->ai')
    >>> matmul_equation((2, 3), (7, 3, 4)), matmul_equation((1, 2, 3), (5, 3, 4))
    ('ij,ajk->aik', 'pij,ajk->aik')
    """
    na, nb = len(sa), len(sb)
    if not na or not nb:
        return None
    if na == 1 and nb == 1:
        return "j,j->"
    ba, bb = tuple(sa[:-2]), tuple(sb[:-2])
    n = max(len(ba), len(bb))
    if n > len(_BATCH):
        return None
    size = [max([b[k - (n - len(b))] for b in (ba, bb) if k >= n - len(b)]) for k in range(n)]
    fresh = iter(_FRESH)

    def spell(b) -> str:
        return "".join(_BATCH[n - len(b) + k] if s == size[n - len(b) + k] else next(fresh)
                       for k, s in enumerate(b))

    left = spell(ba) + ("ij" if na > 1 else "j")
    right = spell(bb) + ("jk" if nb > 1 else "j")
    return f"{left},{right}->{_BATCH[:n]}{'i' if na > 1 else ''}{'k' if nb > 1 else ''}"


def linear_equation(sx, sw) -> str | None:
    """The einsum of ``F.linear(x, W)`` without its bias: ``x @ W.T``.

    >>> linear_equation((32, 30), (64, 30)), linear_equation((4, 8, 30), (64, 30))
    ('ij,kj->ik', 'aij,kj->aik')
    >>> linear_equation((30,), (64, 30)), linear_equation((32, 30), (30,))
    ('j,kj->k', 'ij,j->i')
    """
    if not sx or len(sw) not in (1, 2) or len(sx) - 2 > len(_BATCH):
        return None
    left = _BATCH[:max(len(sx) - 2, 0)] + ("ij" if len(sx) > 1 else "j")
    right = "kj" if len(sw) == 2 else "j"
    return f"{left},{right}->{left[:-1]}{'k' if len(sw) == 2 else ''}"


def dot_equation(sa, sb) -> str | None:
    """NumPy's ``dot``: the last axis of ``a`` with the second-to-last of ``b`` (its last if 1-d).

    >>> dot_equation((2, 3), (3, 4)), dot_equation((3,), (3,)), dot_equation((5, 2, 3), (4, 3, 6))
    ('ij,jk->ik', 'j,j->', 'aij,ljk->ailk')
    """
    if not sa or not sb or len(sa) - 2 > len(_BATCH) or len(sb) - 2 > 3:
        return None
    left = _BATCH[:max(len(sa) - 2, 0)] + ("ij" if len(sa) > 1 else "j")
    if len(sb) == 1:
        return f"{left},j->{left[:-1]}"
    before = "lmn"[:max(len(sb) - 2, 0)]
    return f"{left},{before}jk->{left[:-1]}{before}k"


def inner_equation(sa, sb) -> str | None:
    """``inner``: the last axes of both, every other axis kept.

    >>> inner_equation((3,), (3,)), inner_equation((2, 3), (4, 3))
    ('j,j->', 'ij,kj->ik')
    """
    if not sa or not sb or len(sa) - 2 > len(_BATCH) or len(sb) - 2 > 3:
        return None
    left = _BATCH[:max(len(sa) - 2, 0)] + ("i" if len(sa) > 1 else "") + "j"
    right = "lmn"[:max(len(sb) - 2, 0)] + ("k" if len(sb) > 1 else "") + "j"
    return f"{left},{right}->{left[:-1]}{right[:-1]}"


def tensordot_equation(sa, sb, axes=2) -> str | None:
    """``tensordot(a, b, axes)``: ``axes`` an int (the last of ``a`` with the first of ``b``)
    or a pair of axis lists; the result has ``a``'s free axes, then ``b``'s.

    >>> tensordot_equation((2, 3), (3, 4), 1), tensordot_equation((2, 3, 4), (4, 3), ([1, 2], [1, 0]))
    ('ij,jk->ik', 'ijx,xj->i')
    """
    na, nb = len(sa), len(sb)
    if isinstance(axes, int):
        xa, xb = list(range(na - axes, na)), list(range(axes))
    else:
        xa, xb = axes
        xa = [xa] if isinstance(xa, int) else list(xa)
        xb = [xb] if isinstance(xb, int) else list(xb)
    return dot_general_equation(((xa, xb), ((), ())), na, nb)


def dot_general_equation(dimension_numbers, lhs_ndim: int, rhs_ndim: int) -> str | None:
    """The einsum of ``jax.lax.dot_general`` with ``dimension_numbers``
    ``((lhs_contracting, rhs_contracting), (lhs_batch, rhs_batch))``: its result holds the
    batch axes, then the free axes of the left operand, then those of the right, in order.

    >>> dot_general_equation((((1,), (0,)), ((), ())), 2, 2)         # a matrix product
    'ij,jk->ik'
    >>> dot_general_equation((((1,), (1,)), ((), ())), 2, 2)         # x @ W.T, F.linear
    'ij,kj->ik'
    >>> dot_general_equation((((3,), (2,)), ((0, 1), (0, 1))), 4, 4)  # batched attention scores
    'abij,abjk->abik'
    >>> dot_general_equation((((0,), (0,)), ((), ())), 1, 1), dot_general_equation((((), ()), ((), ())), 1, 1)
    ('j,j->', 'i,k->ik')
    """
    (lc, rc), (lb, rb) = dimension_numbers
    lc, rc, lb, rb = ([k % n for k in axes] for axes, n in ((lc, lhs_ndim), (rc, rhs_ndim),
                                                            (lb, lhs_ndim), (rb, rhs_ndim)))
    if len(lc) != len(rc) or len(lb) != len(rb):
        return None
    left, right = [""] * lhs_ndim, [""] * rhs_ndim
    pools = {"b": iter(_BATCH), "c": iter(_CONTRACTED), "l": iter(_LHS), "r": iter(_RHS)}
    spare = iter(c for c in "abcdefghijklmnopqrstuvwxyz"
                 if c not in _BATCH + _CONTRACTED + _LHS + _RHS + _FRESH)

    def take(pool: str) -> str:
        return next(pools[pool], None) or next(spare)

    try:
        for a, b in zip(lb, rb):
            left[a] = right[b] = take("b")
        for a, b in zip(lc, rc):
            left[a] = right[b] = take("c")
        free_l = [take("l") if not c else "" for c in left]
        free_r = [take("r") if not c else "" for c in right]
    except StopIteration:
        return None
    batch = "".join(left[a] for a in lb)
    out = batch + "".join(free_l) + "".join(free_r)
    left = [c or f for c, f in zip(left, free_l)]
    right = [c or f for c, f in zip(right, free_r)]
    return f"{''.join(left)},{''.join(right)}->{out}"


def _arg(node, i: int, *names: str, default=None):
    if len(node.args) > i:
        return node.args[i]
    kw = node.kw()
    return next((kw[n] for n in names if n in kw), default)


@dataclass(frozen=True)
class Reading:
    """How one op reads as an einsum: ``read(node, shape)`` → ``(equation, operands, bias)``
    or None (``shape(arg)``: the shape of a recorded operand); ``kinds``: the source
    spellings it may come from (``'@'``, ``'matmul'``, ``'linear'``, …); ``forms``:
    ``'binop'`` (``a @ b``), ``'method'`` (``a.mm(b)``), ``'function'`` (``torch.mm(a, b)``)."""

    read: Callable
    kinds: frozenset
    forms: frozenset


def _matmul(node, shape):                # also mm, bmm, mv and torch's dot: their shapes say
    a = _arg(node, 0, "input", "self")
    b = _arg(node, 1, "other", "mat2", "vec", "tensor")
    if node.op.endswith("__rmatmul__"):
        a, b = b, a
    eq = matmul_equation(shape(a), shape(b))
    return (eq, (a, b), None) if eq else None


def _linear(node, shape):
    x, w = _arg(node, 0, "input"), _arg(node, 1, "weight")
    bias = _arg(node, 2, "bias")
    eq = linear_equation(shape(x), shape(w))
    return (eq, (x, w), bias) if eq else None


def _dot(node, shape):                   # NumPy's dot
    a, b = _arg(node, 0, "a", "self"), _arg(node, 1, "b")
    eq = dot_equation(shape(a), shape(b))
    return (eq, (a, b), None) if eq else None


def _inner(node, shape):
    a, b = _arg(node, 0, "input", "a", "self"), _arg(node, 1, "other", "b")
    eq = inner_equation(shape(a), shape(b))
    return (eq, (a, b), None) if eq else None


def _outer(node, shape):
    a, b = _arg(node, 0, "input", "a", "self"), _arg(node, 1, "vec2", "b")
    if len(shape(a)) != 1 or len(shape(b)) != 1:
        return None                    # NumPy's outer flattens: no einsum of its operands
    return ("i,k->ik", (a, b), None)


def _tensordot(node, shape):
    a, b = _arg(node, 0, "a"), _arg(node, 1, "b")
    axes = _arg(node, 2, "axes", "dims", default=2)
    try:
        eq = tensordot_equation(shape(a), shape(b), axes)
    except (TypeError, ValueError, IndexError):
        return None
    return (eq, (a, b), None) if eq else None


def _dot_general(node, shape):
    a, b = _arg(node, 0, "lhs"), _arg(node, 1, "rhs")
    numbers = _arg(node, 2, "dimension_numbers")
    try:
        eq = dot_general_equation(numbers, len(shape(a)), len(shape(b)))
    except (TypeError, ValueError, IndexError):
        return None
    return (eq, (a, b), None) if eq else None


_MATMUL = frozenset({"@", "matmul"})
_ANY = frozenset({"binop", "method", "function"})
_BINOP_METHOD = frozenset({"binop", "method"})
_BINOP_FUNCTION = frozenset({"binop", "function"})
_METHOD, _FUNCTION = frozenset({"method"}), frozenset({"function"})


def _entries() -> dict[str, Reading]:
    table = {
        # torch: ``a @ b`` and ``a.matmul(b)`` record as torch.Tensor.matmul
        "torch.Tensor.matmul": Reading(_matmul, _MATMUL, _BINOP_METHOD),
        "torch.Tensor.__matmul__": Reading(_matmul, _MATMUL, _BINOP_METHOD),
        "torch.Tensor.__rmatmul__": Reading(_matmul, _MATMUL, frozenset({"binop"})),
        "torch.matmul": Reading(_matmul, _MATMUL, _FUNCTION),
        "torch.nn.functional.linear": Reading(_linear, frozenset({"linear"}), _FUNCTION),
        "torch.tensordot": Reading(_tensordot, frozenset({"tensordot"}), _FUNCTION),
        # NumPy: ``A @ B`` and ``np.matmul(A, B)`` are one ufunc
        "numpy.matmul": Reading(_matmul, _MATMUL, _BINOP_FUNCTION),
        "numpy.dot": Reading(_dot, frozenset({"dot"}), _FUNCTION),
        "numpy.ndarray.dot": Reading(_dot, frozenset({"dot"}), _METHOD),
        "numpy.inner": Reading(_inner, frozenset({"inner"}), _FUNCTION),
        "numpy.outer": Reading(_outer, frozenset({"outer"}), _FUNCTION),
        "numpy.tensordot": Reading(_tensordot, frozenset({"tensordot"}), _FUNCTION),
        # JAX: every product is a dot_general primitive (its params as keywords)
        "jax.lax.dot_general": Reading(_dot_general, frozenset(
            {"@", "matmul", "dot", "tensordot", "inner", "outer"}), _ANY),
    }
    for name in ("mm", "bmm", "mv", "dot"):
        table[f"torch.{name}"] = Reading(_matmul, frozenset({name}), _FUNCTION)
        table[f"torch.Tensor.{name}"] = Reading(_matmul, frozenset({name}), _METHOD)
    for name, read in (("inner", _inner), ("outer", _outer), ("ger", _outer)):
        table[f"torch.{name}"] = Reading(read, frozenset({name}), _FUNCTION)
        table[f"torch.Tensor.{name}"] = Reading(read, frozenset({name}), _METHOD)
    return table


#: op → how it reads as an einsum (see :class:`Reading`).
EQUATIONS: dict[str, Reading] = _entries()


# -- the user's spelling --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Written:
    """One product as the cell's source writes it at a line."""

    kind: str                 # '@' or the called name ('matmul', 'linear', …)
    form: str                 # 'binop', 'method' or 'function'
    text: str                 # the whole expression
    operands: tuple           # ast nodes of the operands, in the call's order
    texts: tuple              # the operands as written
    bias: str | None          # F.linear's bias as written, or None
    column: int
    target: str | None        # the name a plain assignment binds it to


_CALLED = frozenset({"matmul", "mm", "bmm", "mv", "dot", "inner", "outer", "ger", "tensordot",
                     "linear"})
_FIRST = ("input", "a", "x1", "lhs")
_SECOND = ("other", "b", "x2", "mat2", "vec", "vec2", "weight", "rhs", "tensor")


class _Source:
    """The cell's source, parsed once: the products it writes by line (read on demand), the
    functions it defines, the names it binds."""

    def __init__(self, source: str | None):
        self.text = source or ""
        self.lines = self.text.splitlines(keepends=True)
        self.index: dict[int, int] = {}          # id of a _Written → its place in its line
        self.defs: list[tuple[str, str, int, int]] = []   # (name, qualified name, lines)
        self.bound: set[str] = set()             # names the cell binds (its code's own)
        self._targets: dict[int, str] = {}
        self._candidates: dict[int, list] = {}   # line → product-like ast nodes, in order
        self._written: dict[int, list[_Written]] = {}
        try:
            tree = parsed(self.text)
        except SyntaxError:
            return
        for node in of(tree, ast.Assign, ast.Name):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
                if isinstance(target, ast.Name):
                    self._targets[id(value)] = target.id
                elif (isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                      and len(target.elts) == len(value.elts)):       # q, k = x @ Wq, x @ Wk
                    self._targets.update({id(v): t.id for t, v in zip(target.elts, value.elts)
                                          if isinstance(t, ast.Name)})
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.bound.add(node.id)
        self.defs = _definitions(tree)
        for node in _evaluation_order(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult)) or (
                    isinstance(node, ast.Call) and _called(node) in _CALLED):
                self._candidates.setdefault(node.lineno, []).append(node)

    def at(self, line: int) -> list[_Written]:
        """The products the source writes at ``line``, in the order Python evaluates them."""
        found = self._written.get(line)
        if found is None:
            found = [w for w in (self._read(n) for n in self._candidates.get(line, ()))
                     if w is not None]
            self._written[line] = found
            self.index.update({id(w): k for k, w in enumerate(found)})
        return found

    def _segment(self, node) -> str:
        """``node``'s source text on one line (ast's offsets count UTF-8 bytes)."""
        if node.lineno == node.end_lineno:
            text = self.lines[node.lineno - 1].encode()[node.col_offset:node.end_col_offset]
            return " ".join(text.decode().split())
        return " ".join((ast.get_source_segment(self.text, node) or "").split())

    def _read(self, node) -> _Written | None:
        target = self._targets.get(id(node))
        if isinstance(node, ast.BinOp):
            operands = (node.left, node.right)
            return _Written("@", "binop", self._segment(node), operands,
                            tuple(self._segment(o) for o in operands), None, node.col_offset,
                            target)
        func, name = node.func, _called(node)
        if any(isinstance(a, ast.Starred) for a in node.args):
            return None
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        count = len(node.args) + sum(1 for k in kw if k in _FIRST + _SECOND + ("bias",))
        if isinstance(func, ast.Attribute) and count == 1 and name != "linear":
            operands, form = (func.value, *node.args[:1]), "method"
        else:
            operands, form = list(node.args[:2]), "function"
            for names in (_FIRST, _SECOND)[len(operands):]:
                operands += [kw[n] for n in names if n in kw][:1]
            operands = tuple(operands)
        if len(operands) != 2:
            return None
        bias = None
        if name == "linear":
            bias = node.args[2] if len(node.args) > 2 else kw.get("bias")
        return _Written(name, form, self._segment(node), tuple(operands),
                        tuple(self._segment(o) for o in operands),
                        self._segment(bias) if bias is not None else None, node.col_offset,
                        target)

    def qualified(self, where: str, line: int) -> str | None:
        """The qualified name (``AttentionHead.scores``) of the function named ``where`` the
        cell defines around ``line``; None if the cell defines none there."""
        inner = [(b - a, q) for n, q, a, b in self.defs if n == where and a <= line <= b]
        return min(inner)[1] if inner else None


def _definitions(tree) -> list[tuple[str, str, int, int]]:
    """(name, qualified name, first line, last line) of every function the source defines.

    >>> _definitions(ast.parse("class A:\\n    def f(self):\\n        def g():\\n            pass"))
    [('f', 'A.f', 2, 4), ('g', 'A.f.<locals>.g', 3, 4)]
    """
    out = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = prefix + child.name
                out.append((child.name, qual, child.lineno, child.end_lineno or child.lineno))
                visit(child, qual + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def _called(node) -> str | None:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _evaluation_order(tree) -> list:
    """Expression nodes in the order Python evaluates them (operands before their operation)."""
    out: list = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            visit(child)
        out.append(node)

    visit(tree)
    return out


# -- places ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """One place of the run where a product ran, as the einsum call it equals.

    ``call``: what the display shows (the user's spelling, the einsum, operand names, the
    name the result is bound to or None); ``shapes``, ``arrays`` (references to the run's
    values as NumPy arrays, ``None`` where not readable) and ``node``: of its first run;
    ``count``: how often it ran there, ``variants``: how many shape signatures (up to 8);
    ``equals``: the words saying which einsum it is (``the einsum 'ij,jk->ik'``, with
    ``plus the bias b`` for ``F.linear``).
    """

    call: Call
    shapes: tuple
    arrays: tuple
    node: int
    equals: str
    count: int = 1
    variants: int = 1

    @property
    def line(self) -> int:
        return self.call.line

    @property
    def sizes_from(self) -> str:
        """What the shapes line says: 'from the run', and how often it ran.

        >>> p = Product(Call("ij,jk->ik", ("A", "B"), ("A", "B"), None, "@", "numpy", 1,
        ...                  "A @ B"), ((2, 3), (3, 4)), (None, None), 0, "", count=3, variants=2)
        >>> print(p.sizes_from)
        from the run; ran 3 times with 2 different shapes, showing the first call's
        """
        text = "from the run"
        if self.count > 1:
            text += f"; ran {self.count} times"
            if self.variants > 1:
                more = "+" if self.variants >= _VARIANTS else ""
                text += f" with {self.variants}{more} different shapes, showing the first call's"
        return text


def _place(node, source: _Source) -> tuple[bool, str]:
    """(whether the node's line is the cell's own code for its function, the display's
    ``where``: '' at the cell's top level, ``f(), line 3`` in a function the cell defines,
    ``f(), called at line 5`` in one defined elsewhere)."""
    if not node.where:
        return True, ""
    if node.where.startswith("<"):               # a comprehension or lambda of the cell
        return True, f"a {node.where.strip('<>')}, line {node.line}"
    qualified = source.qualified(node.where, node.line)
    if qualified is not None:
        return True, f"{qualified}(), line {node.line}"
    return False, f"{node.where}(), called at line {node.line}"


def products(rec: Recording, source: str | None, namespace: dict,
             einsums=frozenset()) -> tuple[Product, ...]:
    """Every place of the run where a product of :data:`EQUATIONS` ran, in the order of the run.

    ``source``: the cell as it ran (its lines are the record's); ``namespace``: the user's,
    after the run (read only); ``einsums``: ``(line, where)`` of the einsum calls the capture
    observed (``line`` None: anywhere in function ``where``): products there are not shown.
    """
    if rec.stopped or not rec.nodes:
        return ()
    src = _Source(source)
    places: dict = {}
    out: list = []
    current, seen = None, {}
    names = []                                  # names_for, computed once if needed
    signatures: dict[int, list] = {}            # place → the shape signatures it saw

    for node in rec.nodes:
        key = (node.line, node.where)
        if key != current:                       # a new pass over a line: count afresh
            current, seen = key, {}
        reading = EQUATIONS.get(node.op)
        if reading is None and node.framework == "jax" and node.line:
            from .recorders.jax import product_of     # x @ W: a jit of one dot_general

            product = product_of(node)
            if product is None:
                continue
            node, reading = product, EQUATIONS.get(product.op)
            near = True              # a jit shown only where the source writes a product
        else:
            near = None
        if reading is None or not node.line:
            continue
        # where an observed einsum ran, a product the source does not write there is the
        # einsum's own inner call (oe.contract's tensordot on tensors, jnp.einsum's dot_general)
        near = near or key in einsums or bool(node.where) and (None, node.where) in einsums
        try:
            read = reading.read(node, lambda a: _shape(rec, a))
        except Exception:  # noqa: BLE001 - an argument the reading does not cover: not shown
            read = None
        if read is None or read[0] is None:
            continue
        equation, operands, bias = read
        if not all(isinstance(o, Ref) for o in operands):
            continue
        own, where = _place(node, src)
        family = (reading.kinds, reading.forms)
        occurrence = seen.get(family, 0)
        seen[family] = occurrence + 1
        written = (_match(node, operands, reading, src, occurrence, namespace, rec, wrap=not near)
                   if own else None)
        if near and written is None:
            continue
        shapes = tuple(_shape(rec, o) for o in operands)
        place = (node.line, node.where, node.op,
                 src.index[id(written)] if written is not None else ("run", occurrence))
        k = places.get(place)
        if k is not None:
            seen_shapes = signatures[k]
            if shapes not in seen_shapes and len(seen_shapes) < _VARIANTS:
                seen_shapes.append(shapes)
            out[k] = dataclasses.replace(out[k], count=out[k].count + 1,
                                         variants=len(seen_shapes))
            continue
        if written is None and not names:
            from .names import names_for

            names.append(names_for(rec, namespace, source))
        call, equals = _call(node, equation, operands, bias, written, where,
                             names[0] if names else None)
        places[place] = len(out)
        signatures[len(out)] = [shapes]
        out.append(Product(call, shapes, _arrays(rec, operands), node.index, equals))
    return tuple(out)


def _shape(rec: Recording, arg) -> tuple:
    if isinstance(arg, Ref):
        return tuple(rec.info[arg.id].shape)
    shape = getattr(arg, "shape", None)
    return tuple(shape) if shape is not None else ()


def _arrays(rec: Recording, operands) -> tuple:
    """The run's values of the operands as NumPy arrays (references where possible)."""
    from .names import READERS

    out = []
    for o in operands:
        value = rec.values.get(o.id)
        if value is None:
            out.append(None)
            continue
        info = rec.info[o.id]
        reader = READERS.get(info.framework, (None, None))[1]
        try:
            if reader is None:
                import numpy as np

                reader = np.asarray
            out.append(reader(value))
        except Exception:  # noqa: BLE001 - a value NumPy cannot read: random stand-ins
            out.append(None)
    return tuple(out)


def _match(node, operands, reading: Reading, src: _Source, occurrence: int, namespace: dict,
           rec: Recording, wrap: bool = True) -> _Written | None:
    """The product at the node's line the source writes, in evaluation order; None if none.

    ``occurrence``: how many products of its kind ran before it in this pass over the line;
    ``wrap``: past the last one the line writes, start again (a comprehension's loop)."""
    found = [w for w in src.at(node.line) if w.kind in reading.kinds and w.form in reading.forms]
    if not found or (occurrence >= len(found) and not wrap):
        return None
    start = occurrence % len(found)
    tries = range(start, start + len(found)) if wrap else range(start, len(found))
    for k in tries:
        w = found[k % len(found)]
        if node.where or all(_may_hold(o, ref, namespace, rec, src.bound)
                             for o, ref in zip(w.operands, operands)):
            return w
    return None


def _may_hold(expr, ref: Ref, namespace: dict, rec: Recording, bound) -> bool:
    """False only when ``expr`` is a plain name of the namespace, never bound by the cell, that
    never held ``ref`` (a name the cell binds may have held it before its last binding)."""
    if not isinstance(expr, ast.Name) or expr.id not in namespace or expr.id in bound:
        return True
    obj = namespace[expr.id]
    if rec.current(obj) is None:
        return True              # not an array the record met under that object (rebound)
    return ref.id in rec.versions(obj)


def _short(op: str) -> str:
    return (op.replace("torch.nn.functional.", "F.").replace("numpy.ndarray.", "")
            .replace("torch.Tensor.", "").replace("numpy.", "np.").replace("jax.lax.", "lax."))


def _call(node, equation, operands, bias, written, where, names):
    """(the :class:`Call` shown, the words saying which einsum it is)."""
    n = len(operands)
    if written is not None:
        exprs = list(written.texts)
        plain = [isinstance(o, ast.Name) for o in written.operands]
        bias_text = written.bias
        taken = set(e for e, p in zip(exprs, plain) if p)
        call_names = []
        for k, (e, p) in enumerate(zip(exprs, plain)):
            if p:
                call_names.append(e)
                continue
            name = f"op{k + 1}"
            while name in taken:
                name += "_"
            taken.add(name)
            call_names.append(name)
        text, function, column = written.text, written.kind, written.column
        target = written.target if bias is None else None
    else:
        idents = [names.ident.get(o.id, f"op{k + 1}") for k, o in enumerate(operands)]
        exprs = [names.name.get(o.id, i) for o, i in zip(operands, idents)]
        call_names = idents
        bias_text = names.name.get(bias.id, "bias") if isinstance(bias, Ref) else None
        function = _short(node.op)
        args = exprs + ([bias_text] if bias_text else [])
        if node.op.endswith(("matmul", "__matmul__")) and not node.op.startswith("jax"):
            text = f"{exprs[0]} @ {exprs[1]}"
            function = "@"
        elif node.op.startswith(("torch.Tensor.", "numpy.ndarray.")):
            text = f"{exprs[0]}.{function}({', '.join(args[1:])})"
        else:
            text = f"{function}({', '.join(args)})"
        column = 0
        target = None
    call_names = _distinct(call_names, operands)
    output = target
    if output is not None and output in call_names:
        output += "_out"
    words = f"the einsum {equation!r}"
    if bias is not None and bias_text:
        words += f", plus the bias {bias_text}"
    call = Call(equation, tuple(call_names), tuple(exprs), output, function, "numpy", node.line,
                text, scope="cell" if not node.where else "function", column=column,
                where=where, certain=False)
    return call, words


def _distinct(names: list, operands) -> list:
    """One name per array: equal names only where the operands are the same value."""
    out = list(names)
    for k in range(len(out)):
        for j in range(k):
            if out[j] == out[k] and operands[j].id != operands[k].id:
                m, suffix = out[k], 2
                while m in out:
                    m, suffix = f"{out[k]}_{suffix}", suffix + 1
                out[k] = m
            elif operands[j].id == operands[k].id:
                out[k] = out[j]
    return out


def order(sites, found: tuple[Product, ...], rec: Recording, cell_file: str) -> list:
    """The observed einsum ``sites`` (in the order they first ran) and the products ``found``,
    interleaved in the order of the run.

    A site of the cell's own code is placed by the first node the record holds at its line
    and function; a site the record cannot place (another file, a call the record does not
    see) keeps its place after the site before it.
    """
    first: dict = {}
    for node in rec.nodes:
        first.setdefault((node.line, node.where), node.index)
    out: list = []
    k = 0
    last = -1
    for site in sites:
        at = first.get(_site_key(site)) if site.filename == cell_file else None
        at = last if at is None else at
        while k < len(found) and found[k].node <= at:
            out.append(found[k])
            k += 1
        out.append(site)
        last = at
    return out + list(found[k:])


def _site_key(site) -> tuple:
    scope = site.scope
    return site.line, "" if scope == "<module>" else scope.rsplit(".", 1)[-1]


def einsum_places(sites, cell_file: str) -> frozenset:
    """``(line, where)`` of the observed einsum ``sites``, as :func:`products` takes them:
    a site of the cell's code at its line; one elsewhere (an earlier cell's function) anywhere
    in its function (``(None, name)``)."""
    out = set()
    for site in sites:
        line, where = _site_key(site)
        out.add((line, where) if site.filename == cell_file else (None, where))
    return frozenset(out)
