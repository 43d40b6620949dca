"""Ways to read a backward einsum: relabelled, and as a short NumPy expression.

``relabel`` renames letters in order of first appearance (``'ik,jk->ij'`` reads
``'ij,kj->ik'``, a matrix times a transpose). ``interpret`` finds a short NumPy
form (``dL_dC @ B.T``) where one exists and returns ``None`` otherwise: it builds
readings only from rules that are exact, and the test suite checks each one
numerically.

>>> relabel("ik,jk->ij")
'ij,kj->ik'
>>> interpret(("ik", "jk"), "ij", ("dL_dC", "B"), (), "A")
'dL_dC @ B.T'
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple, Sequence

from .equation import ELLIPSIS, INDEX_ORDER

__all__ = ["relabel", "interpret"]


def relabel(equation: str) -> str:
    """Rename the letters of a spelled equation in order of first appearance: i, j, k, …"""
    mapping: dict[str, str] = {}
    fresh = iter(INDEX_ORDER)
    out = []
    for c in equation:
        if c.isalpha():
            if c not in mapping:
                mapping[c] = next(fresh)
            out.append(mapping[c])
        else:
            out.append(c)
    return "".join(out)


#: A reading longer than this is no shorter way to read the einsum: none is given.
MAX_READING = 60


@functools.lru_cache(maxsize=4096)
def interpret(inputs: Sequence[str], output: str, arguments: Sequence[str], aux,
              wrt: str) -> str | None:
    """A short NumPy expression equal to ``np.einsum(inputs->output, *arguments)``, or ``None``.

    ``aux`` are the :class:`~einsum_magic.core.derivation.Aux` tensors at the end of
    ``inputs``/``arguments``; ``wrt`` names the operand whose shape the result has.
    Arguments must be hashable (tuples): readings are cached. A reading longer than
    :data:`MAX_READING` characters is not a short one: ``None``.
    """
    reading = _interpret(inputs, output, arguments, aux, wrt)
    return reading if reading is not None and len(reading) <= MAX_READING else None


def _interpret(inputs: Sequence[str], output: str, arguments: Sequence[str], aux, wrt: str) -> str | None:
    if any(ELLIPSIS in s for s in inputs) or ELLIPSIS in output:
        return None
    n = len(inputs) - len(aux)
    core = [(Expr(e), s) for e, s in zip(arguments[:n], inputs[:n])]
    kinds = {a.kind for a in aux}
    if not aux:
        r = _read(core, output)
        return None if r is None else r.text
    if kinds == {"ones"}:
        spread = {a.subscripts for a in aux}
        kept = "".join(c for c in output if c not in spread)
        r = _read(core, kept) if core else None
        if r is None:
            return None
        index = [":" if c in kept else "None" for c in output]
        while index and index[-1] == ":":
            index.pop()
        if index and all(x == "None" for x in index):
            index = []
        expr = f"{r.atom}[{', '.join(index)}]" if index else r.text
        return f"np.broadcast_to({expr}, {wrt}.shape)"
    if kinds == {"eye"} and len(aux) == 1 and len(output) == 2 and core:
        c, f = aux[0].subscripts
        if sorted(output) != sorted(c + f):
            return None
        if any(c in subs for _, subs in core):        # a vector on the diagonal
            r = _read(core, c)
            return None if r is None else f"np.diag({r.text})"
        r = _read(core, "")                           # a scalar times the identity
        return None if r is None else f"{r.factor} * {aux[0].code}"
    return None


# -- the reader: operands with unique letters, combined pairwise --------------------------

class Expr(NamedTuple):
    """A NumPy expression and how tightly it binds: ``atom``, ``matmul`` (a @ chain) or ``product``."""

    text: str
    kind: str = "atom"

    @property
    def atom(self) -> str:
        """Safe to follow with ``.T``, ``.sum()`` or ``[...]``."""
        return self.text if self.kind == "atom" else f"({self.text})"

    @property
    def left(self) -> str:
        """Safe on the left of ``@`` (which binds left to right)."""
        return self.text if self.kind in ("atom", "matmul") else f"({self.text})"

    @property
    def factor(self) -> str:
        """Safe as a factor of ``*``."""
        return self.text if self.kind in ("atom", "product") else f"({self.text})"


def _read(operands: list[tuple[Expr, str]], output: str) -> Expr | None:
    """The shortest expression found for einsum over ``operands`` (expr, subscripts) to ``output``."""
    candidates = [_permute(e, subs, output) for e, subs in _combine(operands, set(output))
                  if sorted(subs) == sorted(output)]
    return min(candidates, key=lambda e: len(e.text)) if candidates else None


def _combine(operands, keep: set) -> list[tuple[Expr, str]]:
    """Every way found to reduce ``operands`` to one (expr, subscripts) keeping ``keep``."""
    ops = []
    for k, (expr, subs) in enumerate(operands):
        if len(set(subs)) != len(subs):
            others = {c for m, (_, s) in enumerate(operands) if m != k for c in s}
            r = _diagonal(expr, subs, keep | others)
            if r is None:
                return []
            ops.append(r)
        else:
            ops.append((expr, subs))
    if len(ops) == 1:
        expr, subs = ops[0]
        return [_sum(expr, subs, keep)]
    if len(ops) > 3:
        return []
    results = []
    for i, j in itertools.combinations(range(len(ops)), 2):
        rest = [ops[m] for m in range(len(ops)) if m not in (i, j)]
        inner_keep = keep | {c for _, s in rest for c in s}
        for a, b in ((ops[i], ops[j]), (ops[j], ops[i])):
            pair = _pair(a, b, inner_keep)
            if pair is None:
                continue
            if rest:
                results.extend(_combine([pair] + rest, keep))
            else:
                results.append(pair)
    return results


def _diagonal(expr: Expr, subs: str, keep: set):
    if len(subs) == 2 and subs[0] == subs[1]:
        if subs[0] in keep:
            return Expr(f"np.diag({expr.text})"), subs[0]
        return Expr(f"np.trace({expr.text})"), ""
    return None


def _sum(expr: Expr, subs: str, keep: set) -> tuple[Expr, str]:
    axes = [i for i, c in enumerate(subs) if c not in keep]
    if not axes:
        return expr, subs
    rest = "".join(c for c in subs if c in keep)
    if not rest:
        return Expr(f"{expr.atom}.sum()"), ""
    ax = str(axes[0]) if len(axes) == 1 else "(" + ", ".join(map(str, axes)) + ")"
    return Expr(f"{expr.atom}.sum(axis={ax})"), rest


def _pair(a, b, keep: set):
    (ea, sa), (eb, sb) = a, b
    ea, sa = _sum(ea, sa, keep | set(sb))
    eb, sb = _sum(eb, sb, keep | set(sa))
    if not sa:
        return Expr(f"{ea.factor} * {eb.factor}", "product"), sb
    if not sb:
        return None                                   # read as scalar * tensor, the other order
    shared = [c for c in sa if c in sb]
    contracted = [c for c in shared if c not in keep]
    batch = [c for c in shared if c in keep]
    fa = [c for c in sa if c not in sb]
    fb = [c for c in sb if c not in sa]
    if not contracted:
        if not batch:
            if len(sa) == 1 and len(sb) == 1:
                return Expr(f"np.outer({ea.text}, {eb.text})"), sa + sb
            return Expr(f"np.multiply.outer({ea.text}, {eb.text})"), sa + sb
        if not fb:                                    # b's letters all in a: broadcast b onto a
            return Expr(f"{ea.factor} * {_expand(eb, sb, sa)}", "product"), sa
        return None
    if not batch:
        if len(contracted) == 1 and len(fa) <= 1 and len(fb) <= 1:
            c = contracted[0]
            left = _permute(ea, sa, "".join(fa) + c)
            right = _permute(eb, sb, c + "".join(fb))
            return Expr(f"{left.left} @ {right.atom}", "matmul"), "".join(fa + fb)
        if not fa and not fb:
            return Expr(f"np.sum({ea.factor} * {_permute(eb, sb, sa).factor})"), ""
        ax_a = [sa.index(c) for c in contracted]
        ax_b = [sb.index(c) for c in contracted]
        return (Expr(f"np.tensordot({ea.text}, {eb.text}, axes=({_list(ax_a)}, {_list(ax_b)}))"),
                "".join(fa + fb))
    if len(contracted) == 1 and len(fa) == 1 and len(fb) == 1:
        c = contracted[0]
        left = _permute(ea, sa, "".join(batch) + fa[0] + c)
        right = _permute(eb, sb, "".join(batch) + c + fb[0])
        return Expr(f"{left.left} @ {right.atom}", "matmul"), "".join(batch) + fa[0] + fb[0]
    return None


def _expand(expr: Expr, subs: str, target: str) -> str:
    """``expr`` over ``subs`` indexed with None so that it broadcasts against ``target``."""
    expr = _permute(expr, subs, "".join(c for c in target if c in subs))
    index = [":" if c in subs else "None" for c in target]
    while index and index[0] == "None":
        index.pop(0)                                  # leading axes broadcast by themselves
    if all(x == ":" for x in index):
        return expr.factor
    while index[-1] == ":":
        index.pop()                                   # so do trailing ones
    return f"{expr.atom}[{', '.join(index)}]"


def _permute(expr: Expr, subs: str, target: str) -> Expr:
    if subs == target:
        return expr
    if len(subs) == 2 and subs[::-1] == target:
        return Expr(f"{expr.atom}.T")
    if len(subs) > 2 and subs[:-2] == target[:-2] and subs[-2:] == target[-2:][::-1]:
        return Expr(f"np.swapaxes({expr.text}, -1, -2)")
    perm = tuple(subs.index(c) for c in target)
    return Expr(f"np.transpose({expr.text}, {perm})")


def _list(xs) -> str:
    return "[" + ", ".join(map(str, xs)) + "]"
