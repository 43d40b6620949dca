"""The options of the ``%%einsum_grad`` magic (moved from magic.py)."""

from __future__ import annotations

import builtins
import keyword

from IPython.core.error import UsageError

from .cell.analysis import EinsumGradResult

__all__ = ["unquoted", "output_name", "is_result", "bound_by", "parse_expect"]


def _unquoted(value: str | None) -> str | None:
    """An option's value without the quotes around it (magic_arguments keeps them).

    >>> _unquoted("'i=2'"), _unquoted('"res"'), _unquoted("res"), _unquoted(None)
    ('i=2', 'res', 'res', None)
    """
    if value is not None and len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        return value[1:-1]
    return value


def _output_name(name: str | None, ns: dict) -> str | None:
    """The ``-o`` name, refused (``UsageError``) unless it is free or holds an earlier result.

    The magic never overwrites a user's variable, a module, a builtin or IPython's own names.
    """
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"-o takes a variable name, not {name!r}")
    if name in ns and not _is_result(ns[name]):
        kind = type(ns[name]).__name__
        raise UsageError(f"-o {name}: {name} already holds a value of type {kind}, which the "
                         "result would overwrite: choose a free name")
    if name not in ns and hasattr(builtins, name):
        raise UsageError(f"-o {name}: {name} is a Python builtin, which the result would shadow: "
                         "choose a free name")
    return name


def _is_result(value) -> bool:
    """Whether ``value`` is an earlier result of the magic (also from before a module reload)."""
    kind, result = type(value), EinsumGradResult
    return isinstance(value, result) or (kind.__name__, kind.__module__) == (result.__name__,
                                                                            result.__module__)


def _bound_by(source: str) -> set[str]:
    r"""The names a cell's code binds at its top level or anywhere (``=``, ``for``, ``def``,
    ``import``, …); empty when it does not parse (IPython reports that when it runs).

    >>> sorted(_bound_by("C = f(A)\nfor i in x: pass\nimport numpy as np\ndef g(): y = 1"))
    ['C', 'g', 'i', 'np', 'y']
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _parse_expect(text: str) -> tuple[int | None, str, str]:
    """``[N:]NAME=SPEC`` → (N or None, NAME, SPEC); quotes around the whole or SPEC are dropped.

    >>> _parse_expect("'2: A = ik, jk -> ij'")
    (2, 'A', 'ik, jk -> ij')
    """
    value = _unquoted(text.strip()).strip()
    head, eq, proposal = value.partition("=")
    number, colon, key = head.partition(":")
    if not colon:
        number, key = "", head
    number, key, proposal = number.strip(), key.strip(), _unquoted(proposal.strip()).strip()
    example = "e.g. A=ik,jk->ij, 2:A=ik,jk->ij for the second einsum, or A=? for an exercise"
    if not eq or not key.isidentifier() or keyword.iskeyword(key) or not proposal:
        raise UsageError(f"--expect is written [N:]NAME=EINSUM, {example} (got {text!r})")
    if colon and not (number.isdigit() and int(number) >= 1):
        raise UsageError(f"--expect {text!r}: before ':' comes the einsum's number, 1 for the "
                         f"first ({example})")
    return (int(number) if colon else None), key, proposal


unquoted = _unquoted
output_name = _output_name
is_result = _is_result
bound_by = _bound_by
parse_expect = _parse_expect
