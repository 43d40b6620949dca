"""The command line: ``einsum-grad "ij,jk->ik"`` (or ``python -m einsum_magic``).

Prints what the magic's text view shows for an equation: each gradient's einsum as
runnable NumPy code, its reading and shape; ``--loops`` adds the for-loop form and
``--check`` checks the gradients against ``jax.vjp``. Sizes come from ``--sizes``,
else small distinct defaults. A bad equation prints the caret message and exits
with status 2; a failed check exits with status 1. ``--nbval-sanitize-path`` prints
the path of the nbval sanitize file shipped with the package (:mod:`einsum_magic.sanitize`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .cell.analysis import Analysis
from .cell.calls import equation_call
from .core.derivation import derive
from .errors import EinsumError
from .core.shapes import parse_sizes, shapes_from
from .views.text import render

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="einsum-grad",
        description="Derive the backward einsum of every operand (the swap trick).",
        epilog='example: einsum-grad "ij,jk->ik" --sizes i=2,j=3,k=4 --loops --check')
    parser.add_argument("equation", nargs="?",
                        help="an einsum equation, e.g. 'ij,jk->ik' or 'ii'")
    parser.add_argument("--names", help="operand names, comma-separated (default A,B,…)")
    parser.add_argument("--output", help="name of the result (default: the next letter)")
    parser.add_argument("--sizes", help="letter sizes, e.g. i=2,j=3 (default: 2, 3, 4, …)")
    parser.add_argument("--loops", action="store_true", help="also print the for-loop form")
    parser.add_argument("--check", action="store_true",
                        help="check the gradients against jax.vjp on JAX's default device")
    parser.add_argument("--dtype", default="float32", help="dtype of the check (default float32)")
    parser.add_argument("--nbval-sanitize-path", action="store_true",
                        help="print the path of the nbval sanitize file shipped with the "
                             "package, and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.nbval_sanitize_path:
        from .sanitize import path

        print(path())
        return 0
    if args.equation is None:
        parser.error("the following arguments are required: equation")
    try:
        call = equation_call(args.equation)
        if args.names:
            names = tuple(n.strip() for n in args.names.split(","))
            call = replace(call, names=names, operands=names)
        if args.output:
            call = replace(call, output=args.output)
        shapes, sizes_from = shapes_from(call.equation, {}, parse_sizes(args.sizes))
        d = derive(call.equation, call.names, call.output, shapes)
    except EinsumError as e:
        print(f"einsum-grad: {e}", file=sys.stderr)
        return 2
    analysis = Analysis(call, d, sizes_from, check_note="not run (--check runs it)")
    if args.check:
        from .check.report import check

        try:        # without JAX, check() falls back to NumPy's adjoint test
            analysis = replace(analysis, check=check(d, dtype=args.dtype))
        except EinsumError as e:
            print(f"einsum-grad: {e}", file=sys.stderr)
            return 2
    print(render(analysis))
    if args.loops:
        for title, source in ((f"forward {d.output}", d.loops),
                              *((g.target, g.loops) for g in d.grads)):
            print(f"\nloops, {title}:\n" + "\n".join("    " + line for line in source.splitlines()))
    return 1 if analysis.check is not None and not analysis.check.passed else 0
