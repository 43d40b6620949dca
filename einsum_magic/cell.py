"""The cell: which einsum calls a ``%%einsum_grad`` cell holds, and what the magic made of each.

This module owns the first arrow of the magic's data flow. :func:`find_calls` reads
the cell's source with :mod:`ast` (it never runs it) and returns one :class:`Call`
per einsum call, in source order, plus a one-line note for each call it had to
skip. The records the views are drawn from live here too: :class:`Analysis` (one
einsum: its call, derivation, check and ``--expect`` verdicts) and
:class:`EinsumGradResult` (what ``-o NAME`` stores).

Which calls are einsums
-----------------------
A call counts when the called function is

* a bare ``einsum(...)``;
* ``M.einsum(...)`` where ``M`` is an alias of numpy, jax.numpy, torch, einops,
  cupy or tensorflow, or ``M.contract(...)`` where ``M`` is an alias of opt_einsum;
* a bare name the cell imports from one of those modules
  (``from opt_einsum import contract``, ``from numpy import einsum as es``).

The aliases known without looking are ``np``, ``numpy``, ``jnp``, ``jax.numpy``,
``torch``, ``oe``, ``opt_einsum`` and ``einops``; ``import numpy as xp`` in the cell,
and any name of ``namespace`` (the user's, read only) bound to one of those modules
or functions, add theirs.

How a call is read
------------------
* ``f('ij,jk->ik', A, B)``: the equation first (numpy, jax, torch, opt_einsum);
  ``torch.einsum('ij,jk->ik', [A, B])`` (operands in one list) too.
* ``f(A, [0, 1], B, [1, 2], [0, 2])``: the interleaved form; integers become
  letters as numpy maps them (0-25 → a-z, 26-51 → A-Z), ``Ellipsis`` → ``...``.
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
statement assigns the call to (``C = np.einsum(...)``) names the output.

>>> found = find_calls("C = np.einsum('ij,jk->ik', A, B.T)")
>>> call = found.calls[0]
>>> call.equation, call.names, call.output, call.legend
('ij,jk->ik', ('A', 'op2'), 'C', (('op2', 'B.T'),))
>>> find_calls("Y = einops.einsum(x, w, 'batch d, d out -> batch out')").calls[0].equation
'bd,do->bo'
>>> find_calls("np.einsum(A, [0, 1], B, [1, 2], [0, 2])").calls[0].equation
'ab,bc->ac'
>>> print(find_calls("np.einsum(eq, A, B)").notes[0])
line 1: np.einsum(eq, A, B): the equation is a variable, not a string literal; skipped
"""

from __future__ import annotations

import ast
import re
import string
import types
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from .equation import ELLIPSIS, INDEX_ORDER, parse
from .errors import EinsumError

__all__ = ["Call", "Found", "find_calls", "cell_equation", "equation_call", "Analysis",
           "EinsumGradResult", "EINSUM_MODULES", "DEFAULT_ALIASES"]

#: Modules whose function of that name is an einsum: module → function name.
EINSUM_MODULES = {
    "numpy": "einsum", "jax.numpy": "einsum", "torch": "einsum", "einops": "einsum",
    "cupy": "einsum", "tensorflow": "einsum", "opt_einsum": "contract",
}
#: Aliases recognised without an import in the cell.
DEFAULT_ALIASES = {
    "np": "numpy", "numpy": "numpy", "jnp": "jax.numpy", "jax.numpy": "jax.numpy",
    "torch": "torch", "oe": "opt_einsum", "opt_einsum": "opt_einsum", "einops": "einops",
}

_NOTE_WIDTH = 60


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
    rebound: tuple[str, ...] = ()     # operand names the cell assigns at or after this call

    @property
    def legend(self) -> tuple[tuple[str, str], ...]:
        """``(name, expression)`` for each operand that is not a plain name."""
        return tuple((n, e) for n, e in zip(self.names, self.operands) if n != e)

    @property
    def plain(self) -> tuple[bool, ...]:
        """Whether each operand is a plain name of the cell (so the user's array can be looked up).

        An equation-only cell has no arrays: its default names are never looked up.
        """
        if self.style == "equation":
            return (False,) * len(self.names)
        return tuple(n == e for n, e in zip(self.names, self.operands))

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
            return ",".join(s.replace(ELLIPSIS, "...") for s in inputs) + "->" + \
                output.replace(ELLIPSIS, "...")

        def words(subs: str) -> str:
            return " ".join("..." if c == ELLIPSIS else self.axis_name(c) for c in subs)

        return ", ".join(words(s) for s in inputs) + " -> " + words(output)


@dataclass(frozen=True)
class Found:
    """What :func:`find_calls` found: the calls in source order and one note per skipped call."""

    calls: tuple[Call, ...]
    notes: tuple[str, ...]


def cell_equation(source: str) -> str | None:
    """The equation when the cell holds nothing else (``ij,jk->ik`` or ``'ij,jk->ik'``), else None.

    Blank lines and ``#`` comment lines are ignored; the one remaining line must be
    an einsum equation (letters, commas, spaces, ``...`` and one ``->``) or a string
    literal holding one.

    >>> cell_equation("ij,jk->ik\\n"), cell_equation("'ii'"), cell_equation("C = A @ B")
    ('ij,jk->ik', 'ii', None)
    """
    lines = [ln.strip() for ln in source.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(lines) != 1:
        return None
    text = lines[0]
    if text[:1] in "'\"":
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, str) else None
    if _EQUATION.fullmatch(text) and any(c.isalpha() or c == "," for c in text):
        return text
    return None


_EQUATION = re.compile(r"[A-Za-z.,\s]*(->[A-Za-z.\s]*)?")


def find_calls(source: str, namespace: Mapping[str, Any] | None = None) -> Found:
    """Every einsum call in ``source`` (Python), in source order; see the module docstring.

    ``namespace`` (read only) resolves aliases bound outside the cell. Raises
    :class:`SyntaxError` when ``source`` is not Python.
    """
    tree = ast.parse(source)
    aliases = dict(DEFAULT_ALIASES)
    functions: dict[str, str] = {}          # bare name -> module of an einsum function
    if namespace:
        _aliases_from_namespace(tree, namespace, aliases, functions)
    _aliases_from_imports(tree, aliases, functions)
    targets = _assigned_names(tree)
    stores = [(n.lineno, n.id) for n in ast.walk(tree)
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    calls, notes = [], []
    nodes = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                   key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        module = _einsum_module(node.func, aliases, functions)
        if module is None:
            continue
        text = ast.get_source_segment(source, node) or ast.unparse(node)
        function = ast.get_source_segment(source, node.func) or ast.unparse(node.func)
        read = _read_call(node, module)
        if isinstance(read, str):
            notes.append(f"line {node.lineno}: {_short(text)}: {read}; skipped")
            continue
        equation, operands, style, axes = read
        call = _make_call(equation, operands, targets.get(id(node)), function, style,
                          node.lineno, text, axes)
        rebound = {name for line, name in stores if line >= _statement_line(tree, node)}
        calls.append(replace(call, rebound=tuple(n for n in dict.fromkeys(call.names)
                                                 if n in rebound)))
    return Found(tuple(calls), tuple(notes))


# -- aliases ---------------------------------------------------------------------------

def _dotted(node: ast.AST) -> str | None:
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
    for node in ast.walk(tree):
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
    roots = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
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
        module = aliases.get(_dotted(func.value) or "")
        if module is not None and EINSUM_MODULES[module] == func.attr:
            return module
    return None


def _assigned_names(tree: ast.AST) -> dict[int, str]:
    """id(call node) → the plain name a statement assigns that call to."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target = node.target
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(node.value, ast.Call):
            out[id(node.value)] = target.id
    return out


# -- reading one call ------------------------------------------------------------------

def _what(node: ast.AST) -> str:
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.Name):
        return "a variable"
    return "an expression"


def _read_call(node: ast.Call, module: str):
    """(equation, operand nodes, style, axes) or a string saying why the call is skipped."""
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
        return first.value, operands, "numpy", ()
    if module == "einops" or (module == "" and _is_str(last) and len(args) > 1):
        if _is_str(last):
            return _read_einops(last.value, args[:-1])
        return f"the pattern is {_what(last)}, not a string literal"
    if len(args) > 1 and isinstance(args[1], (ast.List, ast.Tuple)):
        return _read_interleaved(args)
    return f"the equation is {_what(first)}, not a string literal"


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _read_interleaved(args):
    pairs = list(zip(args[0::2], args[1::2]))
    out_list = args[-1] if len(args) % 2 else None
    subs = []
    for _, sub in pairs:
        s = _sublist(sub)
        if s is None:
            return "the interleaved subscripts are not lists of integer literals"
        subs.append(s)
    equation = ",".join(subs)
    if out_list is not None:
        s = _sublist(out_list)
        if s is None:
            return "the interleaved output is not a list of integer literals"
        equation += "->" + s
    return equation, [op for op, _ in pairs], "interleaved", ()


def _sublist(node: ast.AST) -> str | None:
    """``[0, 1, Ellipsis]`` → 'ab...' (numpy's mapping of integers to letters)."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return None
    out = []
    for e in node.elts:
        value = e.value if isinstance(e, ast.Constant) else (
            Ellipsis if isinstance(e, ast.Name) and e.id == "Ellipsis" else None)
        if value is Ellipsis:
            out.append("...")
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 52:
            out.append(string.ascii_letters[value])
        else:
            return None
    return "".join(out)


def _read_einops(pattern: str, operands):
    """An einops pattern → (equation in letters, operands, 'einops', axes)."""
    left, arrow, right = pattern.partition("->")
    if not arrow:
        raise EinsumError("an einops pattern needs '->' (einops.einsum has no implicit mode)",
                          pattern)
    terms = [t.split() for t in left.split(",")] + [right.split()]
    names = []
    for term in terms:
        for word in term:
            if word != "..." and not word.isidentifier():
                raise EinsumError(f"{word!r} is not an axis name (use identifiers or '...')",
                                  pattern, pattern.find(word), len(word))
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

    def subs(term):
        return "".join("..." if w == "..." else letter[w] for w in term)

    equation = ",".join(subs(t) for t in terms[:-1]) + "->" + subs(terms[-1])
    axes = tuple((letter[n], n) for n in names)
    return equation, list(operands), "einops", axes


def _statement_line(tree: ast.AST, node: ast.AST) -> int:
    """First line of the top-level statement holding ``node``."""
    for stmt in getattr(tree, "body", ()):
        if stmt.lineno <= node.lineno <= (stmt.end_lineno or stmt.lineno):
            return stmt.lineno
    return node.lineno


def _make_call(equation, operand_nodes, assigned, function, style, line, text, axes) -> Call:
    operands = tuple(ast.unparse(n) for n in operand_nodes)
    plain = [isinstance(n, ast.Name) and n.id != "np" for n in operand_nodes]
    taken = {e for e, p in zip(operands, plain) if p}
    names = []
    for k, (expr, p) in enumerate(zip(operands, plain)):
        if p:
            names.append(expr)
            continue
        name = f"op{k + 1}"
        while name in taken:
            name += "_"
        taken.add(name)
        names.append(name)
    output = assigned if assigned is not None and assigned not in names else None
    return Call(equation, tuple(names), operands, output, function, style, line, text, axes)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _NOTE_WIDTH else text[:_NOTE_WIDTH - 1] + "…"


# -- the records the views are drawn from ----------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """One einsum of the cell, everything the views show: a pure record.

    ``check`` is the :class:`~einsum_magic.check.CheckReport`, or ``None`` with
    ``check_note`` saying why (skipped, JAX not installed, the check's error).
    ``sizes_from`` says where the shapes came from.
    """

    call: Call
    derivation: Any                   # einsum_magic.derivation.Derivation, bound to shapes
    sizes_from: str
    check: Any = None
    check_note: str = ""
    expectations: tuple = ()          # einsum_magic.expect.Expectation, one per --expect


@dataclass(frozen=True)
class EinsumGradResult:
    """What ``-o NAME`` stores: every einsum's derivation and check report, in order."""

    analyses: tuple[Analysis, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def derivations(self) -> tuple:
        return tuple(a.derivation for a in self.analyses)

    @property
    def reports(self) -> tuple:
        """The check reports (``None`` where the check did not run)."""
        return tuple(a.check for a in self.analyses)

    @property
    def derivation(self):
        """The derivation of the first einsum (the usual one-einsum cell)."""
        return self.analyses[0].derivation if self.analyses else None

    @property
    def report(self):
        """The check report of the first einsum."""
        return self.analyses[0].check if self.analyses else None


def equation_call(equation: str) -> Call:
    """The :class:`Call` of a cell (or ``%einsum_grad`` line) holding only ``equation``.

    Operands get :func:`einsum_magic.derive`'s default names (``A, B, …``).

    >>> equation_call("ij,jk").names
    ('A', 'B')
    """
    from .derivation import default_names

    names, output = default_names(len(parse(equation).inputs))
    return Call(equation, names, names, output, "einsum", "equation", 1, equation)
