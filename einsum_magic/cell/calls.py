"""The cell: which einsum calls a ``%%einsum_grad`` cell holds, and what the magic made of each.

This module owns the first arrow of the magic's data flow. :func:`find_calls` reads
the cell's source with :mod:`ast` (it never runs it) and returns one :class:`Call`
per einsum call, in source order, plus a one-line note for each call it had to
skip. What the magic then makes of each call is an
:class:`~einsum_magic.cell.analysis.Analysis`.

Which calls are einsums
-----------------------
A call counts when the called function is

* a bare ``einsum(...)``;
* ``M.einsum(...)`` where ``M`` is an alias of numpy, jax.numpy, torch, einops,
  cupy or tensorflow, or ``M.contract(...)`` where ``M`` is an alias of opt_einsum;
* a bare name the cell imports from one of those modules
  (``from opt_einsum import contract``, ``from numpy import einsum as es``).

The modules and aliases come from the one table of :mod:`einsum_magic.cell.modules`:
the aliases known without looking are ``np``, ``numpy``, ``jnp``, ``jax.numpy``,
``torch``, ``oe``, ``opt_einsum`` and ``einops``; ``import numpy as xp`` in the cell,
and any name of ``namespace`` (the user's, read only) bound to one of those modules
or functions, add theirs.

How a call is read
------------------
* ``f('ij,jk->ik', A, B)``: the equation first (numpy, jax, torch, opt_einsum);
  ``torch.einsum('ij,jk->ik', [A, B])`` (operands in one list) too.
* ``f(A, [0, 1], B, [1, 2], [0, 2])``: the interleaved form; integers become
  letters as numpy maps them (0-25 → A-Z, 26-51 → a-z, so that an implicit output
  keeps numpy's order), ``Ellipsis`` → ``...``.
* ``einops.einsum(x, w, "batch d, d out -> batch out")``: the pattern last; each
  axis name gets a letter (a one-letter name keeps its own, a longer one its first
  letter when free, else the next free one) and :meth:`Call.spell` writes letters
  back as names.
* An equation that is not a string literal (a variable, an f-string) or operands
  unpacked with ``*`` cannot be read from the source: the call is skipped with a
  one-line note, never an error.

Operands: a plain name (``A``) is the operand's name; any other expression
(``A.T``, ``x[0]``, ``np.ones(3)``) is named ``op1``, ``op2``, … by its position
(1-based), and :attr:`Call.legend` says what each stands for. The name a
statement assigns the call to (``C = np.einsum(...)``) names the output; when it
is also an operand's name (``A = np.einsum('ij->ji', A)``) the output is called
``A_out`` (with ``_`` added while that is taken too).

Errors in the user's words: an einops pattern or interleaved call whose equation
is wrong raises an :class:`~einsum_magic.errors.EinsumError` that
:meth:`Call.restate` rewrites: it quotes the pattern (or the call, for the
interleaved form) as written, with the caret under the axis name (or integer),
and names axes as the user did.

A cell that is only an equation (:func:`cell_equation`): its one line is a string
literal, or holds ``,``, ``->`` or ``...`` and only letters besides, or is one run
of letters that is no Python keyword, builtin or name of the user's (``ii`` is an
equation; ``pass``, ``sum`` and a defined ``x`` are Python).

Which operands' arrays the magic may look up
--------------------------------------------
When the cell runs, the magic shows the arrays each call received (see
:mod:`einsum_magic.cell.capture`). Where nothing ran (``--no-run``) it reads sizes from
the user's namespace as it is. An operand's array is looked up (:meth:`Call.lookups`)
only when all of these hold:

* it is a plain name (``A``, not ``A.T``);
* the call sits at the cell's top level: not inside a function, lambda, class
  body or comprehension, where names are (or may be) locals;
* the cell does not bind that name at or after the top-level statement holding
  the call (assignment, augmented assignment, ``for`` target, ``with … as``,
  ``import … as``, walrus, ``del``, ``def``/``class``, ``except … as``, ``match``
  captures; a ``from … import *`` binds every name; a name a function declares
  ``global`` counts as bound everywhere): after the run, such a name may hold
  another array than the call saw;
* with ``--no-run`` (the cell did not run), the cell binds that name nowhere.

Any other operand's sizes come from ``--sizes`` or the defaults, and
:meth:`Call.unread` says which operands were not looked up, and why.

>>> found = find_calls("C = np.einsum('ij,jk->ik', A, B.T)")
>>> call = found.calls[0]
>>> call.equation, call.names, call.output, call.legend
('ij,jk->ik', ('A', 'op2'), 'C', (('op2', 'B.T'),))
>>> find_calls("Y = einops.einsum(x, w, 'batch d, d out -> batch out')").calls[0].equation
'bd,do->bo'
>>> find_calls("np.einsum(A, [0, 1], B, [1, 2], [0, 2])").calls[0].equation
'AB,BC->AC'
>>> print(find_calls("np.einsum(eq, A, B)").notes[0])
line 1: np.einsum(eq, A, B): the equation is a variable, not a string literal; skipped
>>> call = find_calls("A2 = np.ones((2, 3))\\nC = np.einsum('ij,jk->ik', A2, B)\\nA2 = 0").calls[0]
>>> call.lookups(), call.unread()
((False, True), 'A2 not looked up: the cell assigns it at or after this call')
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import functools
import keyword
import re
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..core.einops import INTERLEAVED_LETTERS, Read, read_einops, read_interleaved
from ..core.equation import ELLIPSIS, parse, spell_equation
from ..core.names import free_name
from ..errors import EinsumError
from .modules import ALIASES as DEFAULT_ALIASES
from .modules import EINSUM_MODULES
from .source import CACHED, of
from .source import tree as parsed

__all__ = ["Call", "Found", "find_calls", "cell_equation", "equation_call", "EINSUM_MODULES",
           "DEFAULT_ALIASES", "INTERLEAVED_LETTERS"]

_NOTE_WIDTH = 60
#: Scopes other than the cell's top level, by the node that opens them.
_SCOPES = {ast.FunctionDef: "function", ast.AsyncFunctionDef: "function", ast.Lambda: "lambda",
           ast.ClassDef: "class body", ast.ListComp: "comprehension",
           ast.SetComp: "comprehension", ast.DictComp: "comprehension",
           ast.GeneratorExp: "comprehension"}


@dataclass(frozen=True)
class Call:
    """One einsum call of the cell, read from its source."""

    equation: str                     # in letters, as :func:`einsum_magic.derive` takes it
    names: tuple[str, ...]            # one per operand: the name, or op1, op2, … for expressions
    operands: tuple[str, ...]         # each operand as written
    output: str | None                # the name the call is assigned to, if any
    function: str                     # the called function as written ('np.einsum')
    style: str                        # 'numpy', 'interleaved', 'einops' or 'equation'
    line: int                         # 1-based line in the cell
    source: str                       # the call as written
    axes: tuple[tuple[str, str], ...] = ()   # einops: (letter, axis name) pairs
    scope: str = "cell"               # 'cell' (top level), 'function', 'lambda', 'class body'
    #                                   or 'comprehension': where the call sits
    bound_after: tuple[str, ...] = ()  # operand names the cell binds at or after this call
    bound_before: tuple[str, ...] = ()  # operand names the cell binds only before it
    quote: str = field(default="", repr=False, compare=False)   # einops/interleaved: as written
    spans: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)
    #                                   per character of ``equation``: (start, end) in ``quote``
    column: int = 0                   # 0-based column of the call in its line
    guarded: bool = False             # inside a ``try`` block: a bad equation is left to the run
    where: str = ""                   # a call seen in the run outside the cell's top level:
    #                                   where it is ('density(), line 2', 'pkg/mod.py:12')
    certain: bool = True              # certain to run when the cell runs (a top-level straight-
    #                                   line statement): only then may a bad equation fail the
    #                                   cell before the run; any other call is left to the run
    module: str = field(default="", compare=False)   # the einsum's module ('torch'), '' if
    #                                   unknown (a bare ``einsum``)

    @property
    def legend(self) -> tuple[tuple[str, str], ...]:
        """``(name, expression)`` for each operand that is not a plain name."""
        return tuple((n, e) for n, e in zip(self.names, self.operands) if n != e)

    @property
    def plain(self) -> tuple[bool, ...]:
        """Whether each operand is written as a plain name.

        An equation-only cell has no arrays: its default names are never plain.
        """
        if self.style == "equation":
            return (False,) * len(self.names)
        return tuple(n == e for n, e in zip(self.names, self.operands))

    def lookups(self, ran: bool = True) -> tuple[bool, ...]:
        """Whether each operand's array may be looked up in the user's namespace.

        ``ran``: whether the cell's code ran (``--no-run``: it did not). See the
        module docstring for the rule.

        >>> find_calls("def f(A):\\n    return np.einsum('ij->j', A)").calls[0].lookups()
        (False,)
        >>> call = find_calls("A = 1\\nC = np.einsum('ij->j', A)").calls[0]
        >>> call.lookups(), call.lookups(ran=False)
        ((True,), (False,))
        """
        skip = set(self.bound_after) | (set() if ran else set(self.bound_before))
        return tuple(p and self.scope == "cell" and n not in skip
                     for n, p in zip(self.names, self.plain))

    def unread(self, ran: bool = True) -> str:
        """The plain-name operands that are not looked up, and why, in one phrase ('' if none).

        >>> find_calls("[np.einsum('ij->j', A) for _ in B]").calls[0].unread()
        'A not looked up: the call is inside a comprehension'
        """
        names = list(dict.fromkeys(
            n for n, p, ok in zip(self.names, self.plain, self.lookups(ran)) if p and not ok))
        if not names:
            return ""
        it = "it" if len(names) == 1 else "them"
        if self.scope != "cell":
            why = f"the call is inside a {self.scope}"
        elif ran:
            why = f"the cell assigns {it} at or after this call"
        else:
            why = f"the cell assigns {it}, and --no-run kept the cell from running"
        return f"{', '.join(names)} not looked up: {why}"

    def axis_name(self, letter: str) -> str:
        """The einops axis name a letter stands for (the letter itself otherwise)."""
        return dict(self.axes).get(letter, letter)

    def spell(self, inputs, output: str) -> str:
        """Subscripts written back in the call's style: an einops pattern, else an equation.

        >>> call = find_calls("einops.einsum(x, w, 'batch d, d out -> batch out')").calls[0]
        >>> call.spell(["bo", "do"], "bd")
        'batch out, d out -> batch d'
        """
        if self.style != "einops":
            return spell_equation(inputs, output)

        def words(subs: str) -> str:
            return " ".join("..." if c == ELLIPSIS else self.axis_name(c) for c in subs)

        return ", ".join(words(s) for s in inputs) + " -> " + words(output)

    def restate(self, error: EinsumError) -> EinsumError:
        """``error`` about this call's letter equation, said in the user's words.

        For an einops pattern or an interleaved call, the quote becomes the pattern
        (the call) as written, the caret moves under the axis name (the integer), and
        ``letter 'b'``/``subscript(s) '…'`` in the reason name the axes as written.
        Any other error is returned as it is.

        >>> call = find_calls("einops.einsum(x, w, 'batch d, d out -> batch zz')").calls[0]
        >>> print(call.restate(EinsumError("output subscript 'z' appears in no input",
        ...                                call.equation, 8)))
        output axis 'zz' appears in no input
            batch d, d out -> batch zz
                                    ^^
        """
        if not self.quote or error.equation != self.equation:
            return error
        reason = _QUOTED.sub(self._in_words, error.reason)
        if error.position is None or not self.spans:
            return EinsumError(reason, self.quote)
        width = max(1, str(error).splitlines()[-1].count("^"))
        last = len(self.spans) - 1
        covered = [self.spans[min(i, last)] for i in range(error.position, error.position + width)]
        start = min(s for s, _ in covered)
        return EinsumError(reason, self.quote, start, max(e for _, e in covered) - start)

    def _in_words(self, match: re.Match) -> str:
        word, subs = match.groups()
        labels = ["..." if part == "..." else part
                  for part in re.findall(r"\.\.\.|[A-Za-z]", subs)]
        letters = set(self.equation)
        if any(c != "..." and c not in letters for c in labels):
            return match.group(0)
        if self.style == "einops":
            noun = "axes" if word == "subscripts" else "axis"
            return f"{noun} {' '.join(self.axis_name(c) for c in labels)!r}"
        numbers = ["..." if c == "..." else str(INTERLEAVED_LETTERS.index(c)) for c in labels]
        if word == "subscripts":
            return f"subscripts [{', '.join(numbers)}]"
        return f"subscript {', '.join(numbers)}"


#: ``letter 'b'``, ``subscript 'b'``, ``subscripts 'ab'`` in an error's reason.
_QUOTED = re.compile(r"\b(subscripts|subscript|letter) '((?:[A-Za-z]|\.\.\.)*)'")


@dataclass(frozen=True)
class Found:
    """What :func:`find_calls` found: the calls in source order and one note per skipped call."""

    calls: tuple[Call, ...]
    notes: tuple[str, ...]
    note_lines: tuple[int, ...] = ()  # the line each note is about
    tree: ast.Module | None = field(default=None, repr=False, compare=False)   # the parse

    @property
    def bound(self) -> frozenset[str]:
        """The names the cell's code binds in the user's namespace (top level, ``global``
        declarations); read from the parse when asked (only ``-o NAME`` asks)."""
        if self.tree is None:
            return frozenset()
        scopes = _scopes(self.tree)
        return frozenset(set().union(*scopes.binds) | scopes.everywhere)


def cell_equation(source: str, namespace: Mapping[str, Any] | None = None) -> str | None:
    """The equation when the cell holds nothing else, else None (the cell is Python).

    Blank lines and ``#`` comment lines are ignored; the one remaining line is an
    equation when it is

    * a string literal (``'ij,jk->ik'``, ``"ii"``): its value, whatever it holds;
    * or made of letters, commas, spaces, ``...`` and ``->`` only, and either holds
      ``,``, ``->`` or ``...`` (``ij,jk``, ``ii->``, ``...ij``) or is one run of
      letters (``ii``) that is neither a Python keyword (soft ones too: ``match``)
      nor a name the cell could mean as Python: one of ``namespace`` (the user's)
      or a builtin. So ``pass``, ``x`` (when ``x`` is defined) and ``sum`` are
      Python; write ``'x'`` or ``x->x`` to mean the equation.

    >>> cell_equation("ij,jk->ik\\n"), cell_equation("'ii'"), cell_equation("C = A @ B")
    ('ij,jk->ik', 'ii', None)
    >>> cell_equation("ii"), cell_equation("pass"), cell_equation("x", {"x": 1})
    ('ii', None, None)
    >>> cell_equation("ij,jk->ik  # a matmul"), cell_equation("'ij->' # a sum")
    ('ij,jk->ik', 'ij->')

    A line near an equation that is not Python either (other letters, digits, a stray comma,
    ``=>``) is the equation too, so that its error is the equation's, with a caret:

    >>> cell_equation("Ωj,jk->Ωk"), cell_equation("ij,jk=>ik"), cell_equation("f(x, y)")
    ('Ωj,jk->Ωk', 'ij,jk=>ik', None)
    """
    lines = [ln.strip() for ln in source.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 1:
        return None
    text = lines[0]
    if text[:1] in "'\"":
        try:
            node = ast.parse(text, mode="eval").body      # a trailing '# comment' is fine
        except SyntaxError:
            return None
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value,
                                                                            str) else None
    text = text.partition("#")[0].strip()           # 'ij,jk->ik  # matmul'
    if not _EQUATION.fullmatch(text):
        # meant as an equation, not as Python: the equation's reader says what is wrong
        # ('Ωj,jk->Ωk', 'ij,jk->ik,', 'ij,jk=>ik'), not Python's "invalid syntax"
        return text if _NEAR.fullmatch(text) and _not_python(text) else None
    if "," in text or "->" in text or "..." in text:
        return text
    if (text.isascii() and text.isalpha() and not keyword.iskeyword(text)
            and not keyword.issoftkeyword(text) and text not in (namespace or {})
            and not hasattr(builtins, text)):
        return text
    return None


_EQUATION = re.compile(r"[A-Za-z.,\s]*(->[A-Za-z.\s]*)?")
#: Near an equation: any letters or digits, with a comma or an arrow (``->``, ``=>``).
_NEAR = re.compile(r"(?=.*(,|->|=>))[\w.,\s]*([-=]+>[\w.,\s]*)?")


def _not_python(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return True
    return False


def find_calls(source: str, namespace: Mapping[str, Any] | None = None) -> Found:
    """Every einsum call in ``source`` (Python), in source order; see the module docstring.

    ``namespace`` (read only) resolves aliases bound outside the cell. Raises
    :class:`SyntaxError` when ``source`` is not Python. The cell is parsed once, here:
    :attr:`Found.tree` holds the parse for whoever reads the cell next.

    >>> found = find_calls("C = np.einsum('ij->j', A)\\nif x:\\n    D = np.einsum('i->', C)")
    >>> [c.certain for c in found.calls], sorted(found.bound)
    ([True, False], ['C', 'D'])
    """
    tree = parsed(source)
    aliases = dict(DEFAULT_ALIASES)
    functions: dict[str, str] = {}          # bare name -> module of an einsum function
    if namespace:
        _aliases_from_namespace(tree, namespace, aliases, functions)
    _aliases_from_imports(tree, aliases, functions)
    unknown = _unknown_einsum(tree, namespace or {})
    targets = _assigned_names(tree)
    guarded = {id(n) for t in of(tree, *_TRY) for stmt in t.body for n in ast.walk(stmt)}
    certain = _certain(tree)
    calls, notes, lines = [], [], []
    nodes = sorted(of(tree, ast.Call), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        module = _einsum_module(node.func, aliases, functions)
        if module is None:
            continue
        text = ast.get_source_segment(source, node) or ast.unparse(node)
        function = ast.get_source_segment(source, node.func) or ast.unparse(node.func)
        if module == "" and unknown:
            read = f"einsum is {unknown}, which einsum_magic does not know; not analysed"
        else:
            read = _read_call(node, module, function)
        if isinstance(read, str):
            notes.append(f"line {node.lineno}: {_short(text)}: {read}"
                         + ("" if module == "" and unknown else "; skipped"))
            lines.append(node.lineno)
            continue
        call = _make_call(read, targets.get(id(node)), function, node.lineno, text,
                          _scopes(tree), node)
        calls.append(dataclasses.replace(call, column=node.col_offset,
                                         guarded=id(node) in guarded, module=module,
                                         certain=id(node) in certain))
    return Found(tuple(calls), tuple(notes), tuple(lines), tree)


def _certain(tree: ast.Module) -> set[int]:
    """``id`` of every call certain to run when the cell runs (unless an earlier one raises).

    Those of the cell's straight-line statements (``with`` bodies too, and the test of an
    ``if``/``while``, the iterable of a ``for``), outside a conditional expression's
    branches, an ``and``/``or`` past its first operand, a lambda or a comprehension (but
    its first iterable).
    """
    out: set[int] = set()

    def expression(node: ast.AST) -> None:
        if isinstance(node, ast.IfExp):
            return expression(node.test)
        if isinstance(node, ast.BoolOp):
            return expression(node.values[0])
        if isinstance(node, ast.Lambda):
            return None
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return expression(node.generators[0].iter)
        if isinstance(node, ast.Call):
            out.add(id(node))
        for child in ast.iter_child_nodes(node):
            expression(child)

    def statements(body) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign)):
                expression(stmt)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                for item in stmt.items:
                    expression(item.context_expr)
                statements(stmt.body)
            elif isinstance(stmt, (ast.If, ast.While)):
                expression(stmt.test)
            elif isinstance(stmt, (ast.For, ast.AsyncFor)):
                expression(stmt.iter)

    statements(tree.body)
    return out


_TRY = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)


def _unknown_einsum(tree: ast.AST, namespace: Mapping) -> str | None:
    """What a bare ``einsum`` is when the cell or namespace binds it to an unknown function.

    >>> _unknown_einsum(ast.parse("from fancy_einsum import einsum"), {})
    'fancy_einsum.einsum'
    >>> _unknown_einsum(ast.parse("from numpy import einsum"), {}) is None
    True
    >>> _unknown_einsum(ast.parse("def einsum(spec, *ops): return ops[0]"), {})
    "the cell's own function (line 1)"
    """
    found = None
    value = namespace.get("einsum")
    if value is not None:
        owner = getattr(value, "__module__", None) or type(value).__module__
        name = getattr(value, "__qualname__", None) or type(value).__name__
        roots = {m.split(".")[0] for m in EINSUM_MODULES}      # torch.functional, einops.einops
        if not any(owner == r or owner.startswith(r + ".") for r in roots):
            found = f"{owner}.{name}"
    for node in of(tree, ast.ImportFrom):
        if node.module and node.level == 0:
            for a in node.names:
                if (a.asname or a.name) == "einsum":
                    known = EINSUM_MODULES.get(node.module) == a.name
                    found = None if known else f"{node.module}.{a.name}"
    for node in of(tree, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign):
        if isinstance(node, ast.Assign):        # einsum = lambda …: the cell's own too
            if isinstance(node.value, ast.Lambda) and any(
                    isinstance(t, ast.Name) and t.id == "einsum" for t in node.targets):
                found = f"the cell's own function (line {node.lineno})"
        elif node.name == "einsum":
            found = f"the cell's own {'class' if isinstance(node, ast.ClassDef) else 'function'}" \
                    f" (line {node.lineno})"
    return found


# -- aliases ---------------------------------------------------------------------------

def dotted(node: ast.AST) -> str | None:
    """``np`` → 'np', ``jax.numpy`` → 'jax.numpy'; None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _aliases_from_imports(tree: ast.AST, aliases: dict, functions: dict) -> None:
    for node in of(tree, ast.Import, ast.ImportFrom):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in EINSUM_MODULES:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in EINSUM_MODULES:                      # from jax import numpy as jnp
                    aliases[a.asname or a.name] = full
                elif EINSUM_MODULES.get(node.module) == a.name:  # from opt_einsum import contract
                    functions[a.asname or a.name] = node.module


def _aliases_from_namespace(tree: ast.AST, namespace: Mapping, aliases: dict,
                            functions: dict) -> None:
    roots = {n.id for n in of(tree, ast.Name)}
    for name in roots:
        value = namespace.get(name)
        if value is None:
            continue
        module = value.__name__ if isinstance(value, types.ModuleType) else None
        if module in EINSUM_MODULES:
            aliases[name] = module
            continue
        owner = getattr(value, "__module__", None) or ""
        fname = getattr(value, "__name__", None)
        for mod, fn in EINSUM_MODULES.items():
            if fname == fn and (owner == mod or owner.startswith(mod + ".")):
                functions[name] = mod
                break


def _einsum_module(func: ast.AST, aliases: dict, functions: dict) -> str | None:
    """The module of the einsum ``func`` calls, '' for a bare ``einsum``, None if no einsum."""
    if isinstance(func, ast.Name):
        if func.id in functions:
            return functions[func.id]
        return "" if func.id == "einsum" else None
    if isinstance(func, ast.Attribute):
        module = aliases.get(dotted(func.value) or "")
        if module is not None and EINSUM_MODULES[module] == func.attr:
            return module
    return None


def _assigned_names(tree: ast.AST) -> dict[int, str]:
    """id(call node) → the plain name a statement assigns that call to."""
    out = {}
    for node in of(tree, ast.Assign, ast.AnnAssign):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target = node.target
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Call):
            out[id(node.value)] = target.id
    return out


# -- scopes and bindings ---------------------------------------------------------------

@functools.lru_cache(maxsize=CACHED)
def _scopes(tree: ast.Module) -> _Scopes:
    """The :class:`_Scopes` of a cell's tree, visited once (only a cell with einsums, or
    ``-o NAME``, needs them)."""
    return _Scopes(tree)


class _Scopes:
    """Where each call of a cell sits, and which names each top-level statement binds.

    ``where[id(call)]`` is ``(scope, index of the top-level statement holding it)``;
    ``binds[i]`` the names statement ``i`` binds in the cell's (the user's) namespace,
    ``star[i]`` whether it does ``from … import *``; ``everywhere`` the names some
    function declares ``global``.
    """

    def __init__(self, tree: ast.Module):
        self.where: dict[int, tuple[str, int]] = {}
        self.binds: list[set[str]] = [set() for _ in tree.body]
        self.star = [False] * len(tree.body)
        self.everywhere: set[str] = set()
        for i, stmt in enumerate(tree.body):
            self._visit(stmt, "cell", True, i)

    def bound(self, i: int, names) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Of ``names``: those bound at or after statement ``i``, and those bound only before."""
        after = set().union(*self.binds[i:]) | self.everywhere
        before = set().union(*self.binds[:i])
        star_after, star_before = any(self.star[i:]), any(self.star[:i])
        names = list(dict.fromkeys(names))
        late = tuple(n for n in names if star_after or n in after)
        early = tuple(n for n in names if n not in late and (star_before or n in before))
        return late, early

    def _visit(self, node: ast.AST, scope: str, home: bool, i: int) -> None:
        """``scope``: where ``node`` sits; ``home``: whether a walrus there binds a cell name."""
        if isinstance(node, ast.Call):
            self.where[id(node)] = (scope, i)
        if isinstance(node, ast.Global):
            self.everywhere.update(node.names)
        if isinstance(node, ast.NamedExpr) and home and isinstance(node.target, ast.Name):
            self.binds[i].add(node.target.id)
        if scope == "cell":
            self._bindings(node, i)
        inner = _SCOPES.get(type(node))
        if inner is None:
            for child in ast.iter_child_nodes(node):
                self._visit(child, scope, home, i)
            return
        outside, inside = _split_scope(node)
        for child in outside:
            self._visit(child, scope, home, i)
        for child in inside:
            self._visit(child, inner, home and inner == "comprehension", i)

    def _bindings(self, node: ast.AST, i: int) -> None:
        """Names ``node``, at the cell's top level, binds (or deletes) there."""
        names = self.binds[i]
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.name == "*":
                    self.star[i] = True
                else:
                    names.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)


def _split_scope(node: ast.AST) -> tuple[list, list]:
    """The parts of a scope-opening node evaluated outside its scope, and those inside."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        outside = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
        if not isinstance(node, ast.Lambda):
            arguments = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            outside += [*node.decorator_list, *(x.annotation for x in arguments
                                                if x is not None and x.annotation is not None)]
            if node.returns is not None:
                outside.append(node.returns)
            return outside, list(node.body)
        return outside, [node.body]
    if isinstance(node, ast.ClassDef):
        return [*node.decorator_list, *node.bases, *node.keywords], list(node.body)
    first, *rest = node.generators            # a comprehension: its first iterable is outside
    parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
    inside = [*parts, first.target, *first.ifs]
    for g in rest:
        inside += [g.target, g.iter, *g.ifs]
    return [first.iter], inside


# -- reading one call ------------------------------------------------------------------

def _what(node: ast.AST) -> str:
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.Name):
        return "a variable"
    return "an expression"


def _read_call(node: ast.Call, module: str, function: str) -> Read | str:
    """What the call says, or a string saying why the call is skipped."""
    args = node.args
    if any(isinstance(a, ast.Starred) for a in args):
        return "operands unpacked with '*' cannot be read from the source"
    if not args:
        return "no arguments"
    first, last = args[0], args[-1]
    if _is_str(first):
        operands = list(args[1:])
        if len(operands) == 1 and isinstance(operands[0], (ast.List, ast.Tuple)):
            operands = list(operands[0].elts)          # torch.einsum('ij,jk', [A, B])
        if any(isinstance(a, ast.Starred) for a in operands):
            return "operands unpacked with '*' cannot be read from the source"
        return Read(first.value, operands, "numpy")
    if module == "einops" or (module == "" and _is_str(last) and len(args) > 1):
        if _is_str(last):
            return read_einops(last.value, args[:-1])
        return f"the pattern is {_what(last)}, not a string literal"
    if len(args) > 1 and isinstance(args[1], (ast.List, ast.Tuple)):
        return read_interleaved(args, function)
    return f"the equation is {_what(first)}, not a string literal"


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _make_call(read: Read, assigned, function, line, text, scopes: _Scopes, node) -> Call:
    operands = tuple(ast.unparse(n) for n in read.operands)
    plain = [isinstance(n, ast.Name) and n.id != "np" for n in read.operands]
    taken = {e for e, p in zip(operands, plain) if p}
    names = []
    for k, (expr, p) in enumerate(zip(operands, plain)):
        if p:
            names.append(expr)
            continue
        names.append(free_name(f"op{k + 1}", taken))
    output = assigned
    if output is not None and output in names:      # A = np.einsum('ij->ji', A)
        output = free_name(output + "_out", set(names))
    scope, statement = scopes.where[id(node)]
    after, before = scopes.bound(statement, (n for n, p in zip(names, plain) if p))
    return Call(read.equation, tuple(names), operands, output, function, read.style, line, text,
                read.axes, scope, after, before, read.quote, read.spans)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _NOTE_WIDTH else text[:_NOTE_WIDTH - 1] + "…"


def equation_call(equation: str) -> Call:
    """The :class:`Call` of a cell (or ``%einsum_grad`` line) holding only ``equation``.

    Operands get :func:`einsum_magic.derive`'s default names (``A, B, …``).

    >>> equation_call("ij,jk").names
    ('A', 'B')

    An einops pattern (axis names of several letters, between spaces) is refused with
    where to write it instead:

    >>> try:
    ...     equation_call("batch d, d out -> batch out")
    ... except EinsumError as e:
    ...     print(e)
    'batch' is an axis name, but an equation takes one letter per axis: write bd,do->bo, or keep the names inside einops.einsum(..., 'batch d, d out -> batch out')
        batch d, d out -> batch out
        ^^^^^
    """
    from ..core.derivation import default_names

    _letters_only(equation)

    names, output = default_names(len(parse(equation).inputs))
    return Call(equation, names, names, output, "einsum", "equation", 1, equation)


def _derives(equation: str) -> bool:
    """Whether ``equation`` is a valid einsum equation (what an error may suggest)."""
    try:
        parse(equation)
    except EinsumError:
        return False
    return True


def _letters_only(equation: str) -> None:
    """Raise :class:`EinsumError` where ``equation`` holds an einops axis name (see above)."""
    at = 0
    for term in re.split(r"(,|->)", equation):
        words = list(re.finditer(r"\S+", term))
        long = [m for m in words if len(m.group()) > 1 and m.group() != "..."]
        if len(words) > 1 and long:
            word = long[0]
            inputs, arrow, output = equation.partition("->")
            commas = ",".join(w for term in inputs.split(",") for w in term.split()) + (
                arrow + "".join(output.split()))
            if "," not in inputs and _derives(commas):      # 'ij jk -> ik': commas left out
                raise EinsumError(f"operands are separated by commas: write {commas}",
                                  equation, at + word.end(), 1)
            try:
                letters = read_einops(equation, ()).equation
                letters = f"write {letters}, or " if _derives(letters) else ""
            except EinsumError:
                letters = ""
            raise EinsumError(f"{word.group()!r} is an axis name, but an equation takes one "
                              f"letter per axis: {letters}keep the names inside "
                              f"einops.einsum(..., {equation!r})", equation,
                              at + word.start(), len(word.group()))
        at += len(term)
