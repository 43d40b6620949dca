"""For-loop source for an einsum: the forward pass and each gradient.

In loop form every gradient is the plain swap: the backward of ``C[i] += A[i, i]``
is ``dL_dA[i, i] += dL_dC[i]``, whatever the einsum. The functions here are pure:
they take names and subscripts and return Python source that
:meth:`einsum_magic.Derivation.loop_forward` and ``loop_vjp`` execute as shown.

>>> print(loop_source("C", "ik", [("A", "ij"), ("B", "jk")]))
n_i, n_j = A.shape
n_k = B.shape[1]
C = np.zeros((n_i, n_k), dtype=np.result_type(A, B))
for i in range(n_i):
    for j in range(n_j):
        for k in range(n_k):
            C[i, k] += A[i, j] * B[j, k]
"""

from __future__ import annotations

from typing import Sequence

from .equation import ELLIPSIS, axis_index
from .names import RESERVED, free_name

__all__ = ["loop_source"]

INDENT = "    "
#: More letters than this are looped over with one ``np.ndindex`` (Python nests 20 blocks).
MAX_NESTED = 16


def loop_source(target: str, target_subs: str, terms: Sequence[tuple[str, str]],
                shape_of: str | None = None, order: str = "") -> str:
    """Source that accumulates ``target[target_subs] += prod(name[subs] for terms)``.

    ``shape_of`` names an array whose shape the target takes (a gradient takes
    its operand's shape, and its sizes come from there first); without it the
    shape is built from the terms' sizes. Loops run over the letters of ``order``
    first (the forward equation's order reads best), then any others.
    A ``'.'`` in a subscript (``'...'``) becomes a literal ``...`` index, summed
    with ``np.sum`` where the target has none.
    """
    reserved = {target, *RESERVED} | {name for name, _ in terms}
    if shape_of:
        reserved.add(shape_of)
    sources = ([(shape_of, target_subs)] if shape_of else []) + list(terms)
    letters = dict.fromkeys(c for c in order + "".join(s for _, s in sources) if c != ELLIPSIS)
    index = {c: free_name(c, reserved) for c in letters}
    size = {c: free_name("n_" + c, reserved) for c in index}

    lines = _size_lines(sources, size)
    names = ", ".join(dict.fromkeys(name for name, _ in terms))
    if shape_of:
        shape = f"{shape_of}.shape"
    else:
        shape = _shape_expr(target_subs, terms, size)
    lines.append(f"{target} = np.zeros({shape}, dtype=np.result_type({names}))")

    depth = 0
    if len(index) > MAX_NESTED:          # Python allows 20 nested blocks: one loop over all
        lines.append(f"for {', '.join(index.values())} in np.ndindex("
                     f"{', '.join(size[c] for c in index)}):")
        depth = 1
    for c in index if depth == 0 else ():
        lines.append(INDENT * depth + f"for {index[c]} in range({size[c]}):")
        depth += 1
    product = " * ".join(_subscript(name, subs, index) for name, subs in terms)
    if ELLIPSIS not in target_subs and any(ELLIPSIS in subs for _, subs in terms):
        product = f"np.sum({product})"
    lines.append(INDENT * depth + f"{_subscript(target, target_subs, index)} += {product}")
    return "\n".join(lines)


def _subscript(name: str, subs: str, index: dict) -> str:
    if not subs:
        return f"{name}[()]"
    parts = ["..." if c == ELLIPSIS else index[c] for c in subs]
    return f"{name}[{', '.join(parts)}]"


def _size_lines(terms, size: dict) -> list[str]:
    lines, named = [], set()
    for name, subs in terms:
        new = [(i, c) for i, c in enumerate(subs)
               if c != ELLIPSIS and c not in named and subs.index(c) == i]
        if not new:
            continue
        named.update(c for _, c in new)
        letters = [c for _, c in new]
        if len(new) > 1 and ELLIPSIS not in subs and "".join(letters) == subs:
            lines.append(f"{', '.join(size[c] for c in letters)} = {name}.shape")
        else:
            lines.extend(f"{size[c]} = {name}.shape[{axis_index(subs, i)}]" for i, c in new)
    return lines


def _ellipsis_shape(name: str, subs: str) -> str:
    e = subs.index(ELLIPSIS)
    after = len(subs) - e - 1
    stop = f"-{after}" if after else ""
    return f"{name}.shape" if not e and not after else f"{name}.shape[{e or ''}:{stop}]"


def _shape_expr(subs: str, terms, size: dict) -> str:
    parts: list[str] = []
    letters: list[str] = []
    for c in subs:
        if c == ELLIPSIS:
            if letters:
                parts.append(_tuple(letters))
                letters = []
            dotted = list(dict.fromkeys(_ellipsis_shape(n, s) for n, s in terms if ELLIPSIS in s))
            parts.append(dotted[0] if len(dotted) == 1 else f"np.broadcast_shapes({', '.join(dotted)})")
        else:
            letters.append(size[c])
    if letters or not parts:
        parts.append(_tuple(letters))
    return " + ".join(parts)


def _tuple(items: list[str]) -> str:
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
