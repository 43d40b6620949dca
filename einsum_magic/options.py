"""The magic's options, validated once: the arrow ``%%einsum_grad`` line → :class:`Options`.

This module owns what the magic's line and its session configuration
(``%config EinsumGradMagics.…``) say, checked before anything runs and held in one
frozen :class:`Options`: the seed, the check's dtype, ``--sizes``, each ``--expect``,
the ``-o`` name and the limits. Every mistake raises an
:class:`~einsum_magic.errors.EinsumError` whose message is the one line the user sees
(the magic turns it into IPython's ``UsageError``), in the user's words: an
equation with spaces given unquoted to the line magic is told to be quoted, an option
given twice is refused rather than silently the last one.

>>> from types import SimpleNamespace as NS
>>> config = NS(check=True, dtype="float32", seed=0, max_elements=None, max_displays=20,
...             view="auto")
>>> line = NS(equation=[], sizes="'i=2'", no_run=False, no_check=False, dtype=None, seed=3,
...           expect=["2:A=?"], output="res")
>>> o = options(line, config, {})
>>> o.sizes, o.seed, o.expects, o.output, o.check
({'i': 2}, 3, ((2, 'A', '?'),), 'res', True)
>>> options(NS(**{**vars(line), "output": "len"}), config, {})
Traceback (most recent call last):
  ...
einsum_magic.errors.EinsumError: -o len: len is a Python builtin, which the result would shadow: choose a free name
"""

from __future__ import annotations

import argparse
import builtins
import keyword
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .cell.analysis import is_result
from .core.shapes import parse_sizes
from .errors import EinsumError

__all__ = ["Options", "options", "read", "Once", "unquoted", "output_name", "parse_expect",
           "OPTIONS"]

#: The magic's options as written on its line (an equation's tokens are anything else).
OPTIONS = ("--sizes", "--no-run", "--no-check", "--dtype", "--seed", "--expect", "-o",
           "--output")


@dataclass(frozen=True)
class Options:
    """One use of the magic's options, validated (see the module docstring)."""

    equation: str = ""                      # the line magic's equation, unquoted ('' if none)
    sizes: Mapping[str, int] = field(default_factory=dict)
    run: bool = True                        # False: --no-run
    check: bool = True                      # whether the check runs
    skipped: str = ""                       # why it does not: '--no-check' or the config
    dtype: str = "float32"
    seed: int = 0
    expects: tuple[tuple[int | None, str, str], ...] = ()    # ([N], NAME, SPEC) per --expect
    output: str | None = None               # -o NAME
    max_elements: int | None = None         # the check's element budget per array
    max_displays: int = 20
    view: str = "auto"
    grade: str | None = None                # --grade NAME: the forward result to grade against
    exercise: bool = False                  # --exercise: the cell's backward is not shown


def read(parse: Callable, line: str, config, namespace: Mapping, cell_magic: bool) -> Options:
    """``parse(line)`` (IPython's ``parse_argstring``) validated into :class:`Options`.

    ``config``: the magic's traits (``check``, ``dtype``, ``seed``, ``max_elements``,
    ``max_displays``, ``view``); ``namespace``: the user's, read only.
    """
    try:
        args = parse(line)
    except Exception as e:  # noqa: BLE001 - IPython's UsageError: said again, in the user's words
        raise EinsumError(_arguments(str(e), line, cell_magic)) from None
    return options(args, config, namespace)


def options(args, config, namespace: Mapping) -> Options:
    """The parsed line ``args`` and the session's ``config`` as :class:`Options`."""
    seed = config.seed if args.seed is None else args.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        where = "--seed" if args.seed is not None else "EinsumGradMagics.seed ="
        raise EinsumError(f"{where} {seed!r} is not a seed: give a non-negative integer")
    for trait in ("max_elements", "max_displays"):
        value = getattr(config, trait)
        if value is not None and value < 1:
            raise EinsumError(f"EinsumGradMagics.{trait} = {value} is not a limit: give a "
                              "positive integer")
    sizes = _said("--sizes", parse_sizes, unquoted(args.sizes))
    expects = tuple(parse_expect(e) for e in args.expect)
    output = output_name(unquoted(args.output), namespace)
    dtype = unquoted(args.dtype) or config.dtype
    from .check.report import TOLERANCES

    if dtype not in TOLERANCES:
        where = "--dtype" if args.dtype else "EinsumGradMagics.dtype ="
        raise EinsumError(f"{where} {dtype!r} is not one the check supports: "
                          + ", ".join(TOLERANCES))
    equation = unquoted(" ".join(args.equation)) or ""
    skipped = "--no-check" if args.no_check else "EinsumGradMagics.check = False"
    return Options(equation, sizes, not args.no_run, config.check and not args.no_check,
                   skipped, dtype, seed, expects, output, config.max_elements,
                   config.max_displays, config.view, unquoted(getattr(args, "grade", None)),
                   bool(getattr(args, "exercise", False)))


def _said(option: str, fn, text):
    """``fn(text)``, its error prefixed as the magic says it (``einsum_grad: …``)."""
    try:
        return fn(text)
    except EinsumError as e:
        raise EinsumError(f"einsum_grad: {e}") from None


def _arguments(message: str, line: str, cell_magic: bool) -> str:
    """argparse's ``message`` about ``line``, plus what to do where it reads an equation.

    >>> print(_arguments("unrecognized arguments: -> i k", "i j, j k -> i k", False))
    unrecognized arguments: -> i k: quote an equation that has spaces or starts with '-': %einsum_grad 'i j, j k -> i k'
    >>> print(_arguments("unrecognized arguments: ->", "->", True))
    unrecognized arguments: ->: %%einsum_grad takes no equation on its line: put it in the cell
    >>> print(_arguments("unrecognized arguments: k, j k -> i j", "--expect 1:A=i k, j k -> i j", True))
    unrecognized arguments: k, j k -> i j: quote an --expect value that has spaces: --expect '1:A=i k, j k -> i j'
    """
    if not message.startswith("unrecognized arguments") or "->" not in line:
        return message
    words = line.split()
    at = next((k for k, w in enumerate(words) if w == "--expect"), None)
    if at is not None:                      # its value runs on to the next option
        end = next((k for k in range(at + 1, len(words))
                    if words[k].split("=")[0] in OPTIONS), len(words))
        value = " ".join(words[at + 1:end])
        if " " in value:
            quoted = "'" + value + "'" if "'" not in value else '"' + value + '"'
            return f"{message}: quote an --expect value that has spaces: --expect {quoted}"
    if cell_magic:
        return f"{message}: %%einsum_grad takes no equation on its line: put it in the cell"
    cut = next((k for k, w in enumerate(words) if w.split("=")[0] in OPTIONS), len(words))
    equation, rest = " ".join(words[:cut]), " ".join(words[cut:])
    quoted = "'" + equation + "'" if "'" not in equation else '"' + equation + '"'
    return (f"{message}: quote an equation that has spaces or starts with '-': "
            f"%einsum_grad {quoted}{' ' + rest if rest else ''}")


class Once(argparse.Action):
    """An option that may be given once: ``-o r1 -o r2`` is refused, not the last one kept.

    >>> parser = argparse.ArgumentParser(exit_on_error=False)
    >>> _ = parser.add_argument("-o", action=Once)
    >>> parser.parse_args(["-o", "r1", "-o", "r2"])
    Traceback (most recent call last):
      ...
    argparse.ArgumentError: argument -o: given twice ('r1', then 'r2'): give it once
    """

    def __call__(self, parser, namespace, values, option_string=None):
        before = getattr(namespace, self.dest, None)
        if before is not None:
            raise argparse.ArgumentError(self, f"given twice ({before!r}, then {values!r}): "
                                               "give it once")
        setattr(namespace, self.dest, values)


def unquoted(value: str | None) -> str | None:
    """An option's value without the quotes around it (magic_arguments keeps them).

    >>> unquoted("'i=2'"), unquoted('"res"'), unquoted("res"), unquoted(None)
    ('i=2', 'res', 'res', None)
    """
    if value is not None and len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        return value[1:-1]
    return value


def output_name(name: str | None, namespace: Mapping) -> str | None:
    """The ``-o`` name, refused (:class:`EinsumError`) unless free or holding an earlier result.

    The magic never overwrites a user's variable, a module, a builtin or IPython's own
    names. (A name the cell's code binds is refused once the cell is read, and again,
    should the run have bound it where the source does not say, before storing.)
    """
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise EinsumError(f"-o takes a variable name, not {name!r}")
    if name in namespace and not is_result(namespace[name]):
        kind = type(namespace[name]).__name__
        raise EinsumError(f"-o {name}: {name} already holds a value of type {kind}, which the "
                          "result would overwrite: choose a free name")
    if name not in namespace and hasattr(builtins, name):
        raise EinsumError(f"-o {name}: {name} is a Python builtin, which the result would "
                          "shadow: choose a free name")
    return name


def parse_expect(text: str) -> tuple[int | None, str, str]:
    """``[N:]NAME=SPEC`` → (N or None, NAME, SPEC); quotes around the whole or SPEC are dropped.

    >>> parse_expect("'2: A = ik, jk -> ij'")
    (2, 'A', 'ik, jk -> ij')
    """
    value = unquoted(text.strip()).strip()
    head, eq, proposal = value.partition("=")
    number, colon, key = head.partition(":")
    if not colon:
        number, key = "", head
    number, key, proposal = number.strip(), key.strip(), unquoted(proposal.strip()).strip()
    example = "e.g. A=ik,jk->ij, 2:A=ik,jk->ij for the second einsum, or A=? for an exercise"
    if not eq or not key.isidentifier() or keyword.iskeyword(key) or not proposal:
        raise EinsumError(f"--expect is written [N:]NAME=EINSUM, {example} (got {text!r})")
    if colon and not (number.isdigit() and int(number) >= 1):
        raise EinsumError(f"--expect {text!r}: before ':' comes the einsum's number, 1 for the "
                          f"first ({example})")
    return (int(number) if colon else None), key, proposal
