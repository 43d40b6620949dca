"""The command line: ``einsum-grad "ij,jk->ik"`` (or ``python -m einsum_magic``).

Prints each gradient's einsum, its runnable NumPy code and a short reading;
``--loops`` adds the for-loop form. A bad equation prints the caret message and
exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .derivation import Derivation, derive
from .errors import EinsumError
from .shapes import parse_sizes, shapes_for

__all__ = ["main", "format_derivation"]


def format_derivation(d: Derivation, loops: bool = False) -> str:
    """The plain-text report the CLI prints."""
    lines = [f"forward: {d.code}"]
    if d.shapes is not None:
        shapes = ", ".join(f"{n}{tuple(s)}" for n, s in zip(d.names, d.shapes))
        lines.append(f"shapes:  {shapes} -> {d.output}{tuple(d.output_shape)}")
    if loops:
        lines += ["", "forward loops:", _indent(d.loops)]
    for g in d.grads:
        lines += ["", f"{g.target}: {g.equation}   (relabelled {g.relabelled})", f"  {g.code}"]
        if g.interpretation:
            lines.append(f"  reads: {g.target} = {g.interpretation}")
        for step in g.steps[1:]:
            lines.append(f"  - {step}")
        if loops:
            lines += [_indent(g.loops)]
    for t in d.totals:
        lines += ["", f"product rule: {t.code}"]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="einsum-grad",
        description="Derive the backward einsum of every operand (the swap trick).",
        epilog='example: einsum-grad "ij,jk->ik" --sizes i=2,j=3,k=4 --loops')
    parser.add_argument("equation", help="an einsum equation, e.g. 'ij,jk->ik' or 'ii'")
    parser.add_argument("--names", help="operand names, comma-separated (default A,B,…)")
    parser.add_argument("--output", help="name of the result (default: the next letter)")
    parser.add_argument("--sizes", help="letter sizes, e.g. i=2,j=3: binds '...' and broadcasting")
    parser.add_argument("--loops", action="store_true", help="also print the for-loop form")
    args = parser.parse_args(argv)
    try:
        names = tuple(n.strip() for n in args.names.split(",")) if args.names else None
        shapes = shapes_for(args.equation, parse_sizes(args.sizes)) if args.sizes else None
        d = derive(args.equation, names=names, output=args.output, shapes=shapes)
    except EinsumError as e:
        print(f"einsum-grad: {e}", file=sys.stderr)
        return 2
    print(format_derivation(d, loops=args.loops))
    return 0
