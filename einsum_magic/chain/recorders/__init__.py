"""One recorder per framework: each observes the run and writes a :class:`~einsum_magic.chain.record.Recording`.

* :mod:`~einsum_magic.chain.recorders.torch`: ``torch.overrides.TorchFunctionMode``.
* :mod:`~einsum_magic.chain.recorders.numpy`: boxed arrays (``__array_ufunc__``,
  ``__array_function__``, routed methods), unboxed after the run.
* :mod:`~einsum_magic.chain.recorders.jax`: the primitives bound on JAX's evaluation trace
  (``jit`` calls with their jaxpr, ``custom_jvp`` calls kept whole).

A recorder never changes what the user's code computes: it calls the function it
observed exactly as the code called it and returns its result; anything failing in the
recorder's own bookkeeping stops the record (one line saying why), never the cell.

:func:`recording` is the one context manager the magic enters around the run: it starts
the recorder of every framework that is imported.
"""

from __future__ import annotations

import contextlib
import sys

from ...cell.source import of
from ...cell.source import tree as parsed
from .. import record
from ..record import Recording

__all__ = ["recording", "long_loops", "feeds"]


@contextlib.contextmanager
def recording(namespace: dict | None = None, budget: int | None = None,
              source: str | None = None):
    """Record the run inside the block with every framework's recorder that is imported.

    Yields the :class:`Recording`. A framework that is not imported yet is not imported
    here (``torch`` only when ``sys.modules`` has it, or when ``source``, the cell, names
    ``torch``: then it is imported first, as the cell would; JAX only when ``sys.modules``
    has it). ``budget``: bytes, :data:`~einsum_magic.chain.record.BUDGET`
    (read when the block starts, so ``einsum_magic.chain.record.BUDGET = …`` sets it) by
    default. Whatever a recorder installs is
    removed when the block ends, also on an error or an interrupt.

    >>> with recording({}) as rec:
    ...     pass
    >>> rec.nodes, rec.stopped
    ([], '')
    """
    rec = Recording(record.BUDGET if budget is None else budget, namespace)
    if source:
        rec.loops = long_loops(source, rec.namespace)
        rec.feeds = feeds(source)
    with contextlib.ExitStack() as stack:
        if "torch" not in sys.modules and source and _names_torch(source):
            _import("torch")              # the cell imports it itself: record it from the start
        if "torch" in sys.modules:
            from .torch import TorchRecorder

            stack.enter_context(TorchRecorder(rec))
        if "numpy" in sys.modules:
            rec.unrecorded = _compiles(source, rec.namespace) if "torch" in sys.modules else ""
            if not rec.unrecorded:
                from .numpy import NumpyRecorder

                stack.enter_context(NumpyRecorder(rec))
        if sys.modules.get("jax") is not None:    # (None: its import blocked) entered last,
            from .jax import JaxRecorder  # left first: it says why it did not record before
                                          # NumPy's unboxing looks for JAX arrays

            stack.enter_context(JaxRecorder(rec))
        yield rec


def long_loops(source: str, namespace: dict) -> dict:
    r"""Cell line → ``steps()``, for each line inside a ``for`` loop of the cell over
    ``range(...)`` of whole numbers (literals, or names the namespace holds when the loop
    runs): ``(how many times the line runs, the loops' words)``, or None where a bound is
    not a whole number. The record asks at a line's second step, so that a 1,000-step
    training loop stops it there instead of after :data:`~einsum_magic.chain.record.MAX_REPEATS`
    recorded steps. Loops of the cell's own text only (not inside its functions).

    >>> loops = long_loops("n = 3\nfor i in range(2, n * 1000):\n    for j in range(4):\n"
    ...                    "        y = x @ W\n", {})
    >>> sorted(loops), loops[4]() is None                   # n * 1000: not read
    ([3, 4], True)
    >>> steps = long_loops("for i in range(1000):\n    y = x @ W\n", {})[2]()
    >>> steps
    (1000, 'the loop of line 1: for i in range(1000)')
    >>> long_loops("for i in range(n):\n    y = x @ W\n", {"n": 50})[2]()[0]
    50
    >>> sorted(long_loops("for i in range(9):\n    pass\nelse:\n    y = x @ W\n", {}))
    [2]
    """
    import ast

    try:
        tree = parsed(source)
    except SyntaxError:
        return {}
    lines = source.splitlines()
    out: dict = {}

    def bound(arg):
        if isinstance(arg, ast.Constant) and type(arg.value) is int:
            return arg.value
        if isinstance(arg, ast.UnaryOp) and isinstance(arg.op, ast.USub):
            inner = bound(arg.operand)
            return None if inner is None else -inner
        if isinstance(arg, ast.Name):
            value = namespace.get(arg.id)
            return value if type(value) is int else None
        return None

    def walk(body, outer):
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            loops = outer
            if (isinstance(stmt, ast.For) and isinstance(stmt.iter, ast.Call)
                    and isinstance(stmt.iter.func, ast.Name) and stmt.iter.func.id == "range"
                    and 1 <= len(stmt.iter.args) <= 3 and not stmt.iter.keywords):
                text = lines[stmt.lineno - 1].strip().rstrip(":")
                loops = outer + ((stmt.iter.args, f"line {stmt.lineno}: {text}"),)
                for line in range(stmt.body[0].lineno, stmt.body[-1].end_lineno + 1):
                    out[line] = _steps(loops, bound)
            for field in ("body", "orelse", "finalbody"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    walk(inner, loops if field == "body" else outer)   # a for's else: once
            for handler in getattr(stmt, "handlers", ()):
                walk(handler.body, loops)

    walk(tree.body, ())
    return out


def _steps(loops, bound):
    """``steps()`` of a line inside ``loops`` (each ``(range's arguments, words)``)."""
    def steps():
        total = 1
        for args, _ in loops:
            values = [bound(a) for a in args]
            if None in values:
                return None
            total *= len(range(*values))
        words = " in ".join(w for _, w in reversed(loops))
        return total, f"the loop{'s' if len(loops) > 1 else ''} of {words}"

    return steps


def feeds(source: str):
    r"""``line → bool``: whether the cell's statement at ``line`` binds a name that another line
    of the cell reads (a number computed there fed what came next, also in a loop's next
    step), as opposed to a statement that prints, logs or tests it. Unreadable source: True
    (the careful answer).

    >>> fed = feeds("scale = math.sqrt(s)\nlogged = float(L)\nprint(float(m))\ny = X / scale")
    >>> fed(1), fed(2), fed(3), fed(4)
    (True, False, False, False)
    >>> feeds("for _ in range(3):\n    x = x / s\n    s = float(x.sum())")(3)    # next step
    True
    """
    import ast

    try:
        tree = parsed(source)
    except SyntaxError:
        return lambda line: True
    reads: dict[str, set] = {}             # name → the lines reading it
    for node in of(tree, ast.Name):
        if isinstance(node.ctx, ast.Load):
            reads.setdefault(node.id, set()).add(node.lineno)
    bound: dict[int, list] = {}            # line → (names its statement binds, its lines)
    for node in of(tree, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.NamedExpr):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        lines = range(node.lineno, (node.end_lineno or node.lineno) + 1)
        for line in lines:
            bound.setdefault(line, []).append((names, lines))

    def fed(line: int) -> bool:
        return any(read not in lines for names, lines in bound.get(line, ())
                   for name in names for read in reads.get(name, ()))

    return fed


def _compiles(source: str | None, namespace: dict) -> str:
    """Why the NumPy recorder stays out of a cell that runs code under ``torch.compile``
    (``''``: it does not): Dynamo takes NumPy arrays, not the recorder's boxed ones (a
    ``fullgraph`` compile fails on them). The cell's code calls ``torch.compile`` (or
    ``compile`` imported from torch), or names a function of the namespace it compiled.

    >>> _compiles("f = torch.compile(g)", {}) != "", _compiles("y = x @ W", {"f": len}) != ""
    (True, False)
    >>> _compiles("import torch; pattern = re.compile('ij')  # torch.compile later", {})
    ''
    """
    import ast

    if not source or "compile" not in source and not any(map(_compiled, namespace.values())):
        return ""
    try:
        tree = parsed(source)
    except SyntaxError:
        return ""
    torch_compile = {a.asname or a.name for node in of(tree, ast.ImportFrom)
                     if node.module == "torch" for a in node.names if a.name == "compile"}
    for node in of(tree, ast.Attribute, ast.Name):
        if (isinstance(node, ast.Attribute) and node.attr == "compile"
                and isinstance(node.value, ast.Name) and node.value.id == "torch") or (
                isinstance(node, ast.Name) and (node.id in torch_compile or _compiled(
                    namespace.get(node.id)))):
            return ("the cell runs code compiled by torch.compile, which takes plain NumPy "
                    "arrays: its NumPy operations are not recorded")
    return ""


def _compiled(value) -> bool:
    """Whether ``value`` is a function ``torch.compile`` made."""
    return type(value) is _FUNCTION and "_torchdynamo_orig_callable" in value.__dict__


_FUNCTION = type(_compiles)


def _names_torch(source: str) -> bool:
    """Whether the cell's code names torch (``import torch``, ``from torch import nn``).

    >>> _names_torch("import torch.nn as nn"), _names_torch("x = np.ones(3)  # torch later")
    (True, False)
    """
    import ast

    try:
        tree = parsed(source)
    except SyntaxError:
        return False
    for node in of(tree, ast.Import, ast.ImportFrom):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch"
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def _import(name: str) -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)
