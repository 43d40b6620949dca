"""From what ran to what is shown: each captured call site as a :class:`~einsum_magic.cell.calls.Call`.

:func:`site_call` joins the two readings of a cell. A site
(:class:`~einsum_magic.cell.capture.Site`) in the cell's own code takes the
:class:`~einsum_magic.cell.calls.Call` the source reader found at the same line and column
(its operand names, legend and assigned output); a site elsewhere (a function
defined in an earlier cell, a library) or one the reader skipped (an equation in a
variable) is named from the run: each operand by the name its frame binds to it (a
parameter first), else ``A, B, …``, and :attr:`Call.where` says where it is
(``density(), line 2``, ``flax/linen/attention.py:190``). Names follow identity:
one name never stands for two different arrays, so the product rule is only drawn
for positions that really hold the same array.

:func:`sizes_note` is the shapes line's "from the run" and what it adds for a site
that ran more than once.

>>> from einsum_magic.cell.capture import Site
>>> site = Site("numpy.einsum", "numpy", "pi,qi->pq", None, ((4, 3), (4, 3)), ("float64",) * 2,
...             (0, 0), ("C", "C"), (None, None), "<cell>", 2, 11, "density", count=3)
>>> call = site_call(site, (), "<cell>")
>>> call.names, call.where, call.source
(('C', 'C'), 'density(), line 2', "np.einsum('pi,qi->pq', C, C)")
>>> sizes_note(site)
'from the run; ran 3 times'
"""

from __future__ import annotations

import dataclasses
import os
import string
import sys

from ..core.einops import INTERLEAVED_LETTERS, read_einops
from ..core.equation import parse
from ..errors import EinsumError
from .calls import Call
from .modules import by_module, by_name

__all__ = ["site_call", "site_source", "site_equation", "sizes_note", "where", "merged",
           "unseen"]


def site_equation(site) -> tuple[str, tuple, str, tuple]:
    """(equation in letters, einops axes, quote, spans) of what the site received.

    >>> from einsum_magic.cell.capture import Site
    >>> s = Site("numpy.einsum", "interleaved", None, ((0, 1), (1, 2), (0, 2)), ((2, 3), (3, 4)),
    ...          (), (0, 1), (None, None), (None, None), "f.py", 1, 0, "f")
    >>> site_equation(s)[0]
    'AB,BC->AC'
    """
    if site.style == "einops":
        read = read_einops(site.equation, ())
        return read.equation, read.axes, read.quote, read.spans
    if site.style == "interleaved":
        *inputs, output = site.sublists
        text = ",".join(_letters(s) for s in inputs)
        if output is not None:
            text += "->" + _letters(output)
        return text, (), "", ()
    return site.equation.replace(" ", ""), (), "", ()


def _letters(sub) -> str:
    return "".join("..." if k is Ellipsis else INTERLEAVED_LETTERS[k] for k in sub)


def where(site, cell_file: str, cells: dict | None = None) -> str:
    """Where a site is, for a site outside the cell's top level ('' at the top level).

    ``cells`` maps IPython's file names of earlier cells to their numbers.

    >>> from einsum_magic.cell.capture import Site
    >>> s = Site("numpy.einsum", "numpy", "ij->", None, ((2, 2),), ("float64",), (0,), ("A",),
    ...          (None,), "<cell>", 4, 4, "Head.__call__")
    >>> where(s, "<cell>")
    'Head.__call__(), line 4'
    """
    scope = site.scope
    what = f"{scope}()" if not scope.startswith("<") else f"a {scope.strip('<>')}"
    if site.filename == cell_file:
        return "" if scope == "<module>" else f"{what}, line {site.line}"
    if cells and site.filename in cells:
        return f"{what} of cell [{cells[site.filename]}], line {site.line}"
    path = _short_path(site.filename)
    return f"{path}:{site.line}" if scope == "<module>" else f"{what} in {path}:{site.line}"


def _short_path(filename: str) -> str:
    """A file name relative to the longest ``sys.path`` entry (or the working directory)."""
    best = ""
    for entry in [*sys.path, os.getcwd()]:
        entry = os.path.abspath(entry or ".")
        if filename.startswith(entry + os.sep) and len(entry) > len(best):
            best = entry
    return filename[len(best) + 1:] if best else os.path.basename(filename)


def site_call(site, calls, cell_file: str, cells: dict | None = None) -> Call:
    """The :class:`Call` shown for ``site``; ``calls``: the source reader's calls of the cell."""
    equation, axes, quote, spans = site_equation(site)
    here = where(site, cell_file, cells)
    match = site_source(site, calls, cell_file)
    if match is not None:
        names = _by_identity(match.names, site.same)
        return dataclasses.replace(match, names=names, where=here)
    names = _fill(site.names, site.same, "op" if site.filename == cell_file else "")
    known = by_name(site.function)
    function = known.short if known is not None else site.function
    if site.style == "einops":
        source = f"{function}({', '.join(names)}, {site.equation!r})"
    elif site.style == "interleaved":
        parts = [f"{n}, {list(s)}" for n, s in zip(names, site.sublists)]
        if site.sublists[-1] is not None:
            parts.append(str(list(site.sublists[-1])))
        source = f"{function}({', '.join(parts)})".replace("Ellipsis", "...")
    else:
        source = f"{function}({site.equation!r}, {', '.join(names)})"
    style = site.style if site.style in ("einops", "interleaved") else "numpy"
    return Call(equation, names, names, None, function, style, site.line, source, axes,
                "cell" if not here else "function", quote=quote, spans=spans,
                column=site.column, where=here)


def site_source(site, calls, cell_file: str):
    """The source reader's call at the site's line and column (else at its line, same equation).

    ``None`` for a site outside the cell's file or one the reader skipped.
    """
    if site.filename != cell_file:
        return None
    equation = site_equation(site)[0]
    same_line = [c for c in calls if c.line == site.line]
    for c in same_line:
        if c.column == site.column:
            return c
    for c in same_line:
        if c.equation == equation:
            return c
    return None


def _by_identity(names, same) -> tuple[str, ...]:
    """Names where one name never stands for two different objects."""
    out = list(names)
    for k, n in enumerate(out):
        if same[k] == k and n in out[:k] and any(same[j] != k for j in range(k) if out[j] == n):
            m, suffix = n, 2
            while m in out:
                m, suffix = f"{n}_{suffix}", suffix + 1
            out[k] = m
        elif same[k] != k:
            out[k] = out[same[k]]
    return tuple(out)


def _fill(names, same, prefix: str = "") -> tuple[str, ...]:
    """Frame names; an operand no name is bound to gets ``A, B, …`` (free letters), or
    ``op1, op2, …`` by position with ``prefix='op'`` (the cell's code, as the source reader)."""
    taken = {n for n in names if n}
    letters = iter([*(c for c in string.ascii_uppercase if c not in taken),
                    *(f"X{k}" for k in range(1, len(names) + 1))])
    out = []
    for k, n in enumerate(names):
        if same[k] != k:
            out.append(out[same[k]])
        elif n is not None and n not in out:
            out.append(n)
        elif prefix:
            name = f"{prefix}{k + 1}"
            while name in taken:
                name += "_"
            out.append(name)
        else:
            out.append(next(letters))
    return tuple(out)


def sizes_note(site) -> str:
    """'from the run', and how often the site ran, whether its shapes varied, tracing, threads.

    >>> from einsum_magic.cell.capture import Site
    >>> sizes_note(Site("numpy.einsum", "numpy", "i->", None, ((3,),), ("float64",), (0,),
    ...                 (None,), (None,), "<cell>", 1, 0, "work", thread=True))
    'from the run, in another thread'
    """
    text = "from the run"
    if site.thread:
        text += ", in another thread"
    if site.count > 1:
        text += f"; ran {site.count} times"
        if site.variants > 1:
            more = "+" if site.variants >= 8 else ""
            text += f" with {site.variants}{more} different shapes, showing the first call's"
    if site.traced:
        known = by_name(site.function)
        tracer = site.tracer or ("torch.compile" if known and known.module == "torch" else "JAX")
        text += f"; traced by {tracer} (shapes only, the check uses random arrays)"
    return text



def merged(sites) -> tuple:
    """The sites, with those of one call place whose equations differ only in spelling as one.

    A call in a loop over ``f'i{sp}j,jk->ik'`` runs one einsum spelled several ways
    (whitespace, the implicit or explicit form): one site, its counts added, in the place
    of the first. Shapes that differ between the spellings count as variants.

    >>> from einsum_magic.cell.capture import Site
    >>> def site(eq):
    ...     return Site("numpy.einsum", "numpy", eq, None, ((2, 3), (3, 4)), ("float64",) * 2,
    ...                 (0, 1), ("A", "B"), (None, None), "<cell>", 2, 4, "<module>")
    >>> [(s.equation, s.count) for s in merged([site("ij,jk->ik"), site("i j, jk"),
    ...                                          site("ij,jk->ki")])]
    [('ij,jk->ik', 2), ('ij,jk->ki', 1)]
    """
    out: list = []
    first: dict = {}
    for s in sites:
        try:
            key = (s.filename, s.line, s.column, s.function, s.style,
                   parse(site_equation(s)[0]).explicit)
        except EinsumError:          # not read here: shown (or noted) on its own
            out.append(s)
            continue
        k = first.get(key)
        if k is None:
            first[key] = len(out)
            out.append(s)
            continue
        kept = out[k]
        variants = kept.variants + (s.variants if s.shapes != kept.shapes else s.variants - 1)
        out[k] = dataclasses.replace(kept, count=kept.count + s.count, variants=variants,
                                     traced=kept.traced or s.traced)
    return tuple(out)


def unseen(call, threads: bool = False) -> str:
    """What the note says of a call in the cell's source that the run never showed.

    Einsum calls are observed on every thread and in code that ``torch.compile`` or
    ``jax.jit`` traces, so such a call did not run (or raised), except a
    ``torch.einsum`` inside TorchScript (``torch.jit.script``), which runs no Python
    and is not observed: the note for ``torch.einsum`` says so. ``threads``: the cell
    starts threads, which may run the call after the cell ended, unobserved: said too.

    >>> from einsum_magic.cell.calls import find_calls
    >>> unseen(find_calls("np.einsum('ij->j', A)").calls[0])
    'did not run (or raised); not analysed'
    >>> print(unseen(find_calls("import torch\\ntorch.einsum('ij->j', A)").calls[0]))
    not seen running: it did not run (or raised), or ran inside TorchScript, where torch.einsum calls are not observed; not analysed
    """
    known = by_module(call.module)
    if known is not None and known.module == "torch":
        return ("not seen running: it did not run (or raised), or ran inside TorchScript, "
                "where torch.einsum calls are not observed; not analysed")
    if threads:
        return ("did not run while the cell ran (or raised); a thread the cell started may "
                "run it later, when calls are no longer observed; not analysed")
    return "did not run (or raised); not analysed"
