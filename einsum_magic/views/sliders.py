"""Sizes you can drag: one slider per letter no array fixes, and what the display shows at those sizes.

The magic's shapes come from the user's arrays where the cell ran; the other letters get
``--sizes`` or small defaults. In a live kernel those letters are free to try: this module
gives each an ``IntSlider`` and, when one moves, rebinds the derivation to the new sizes
(:meth:`Derivation.bound_to <einsum_magic.core.derivation.Derivation.bound_to>`: no re-run of
the cell, no check) and rewrites the shapes, the FLOPs and the diagram's size labels.

* :func:`free` lists the letters that get a slider: every letter of the bound equation
  except those the user's arrays fix (:attr:`Analysis.fixed
  <einsum_magic.cell.analysis.Analysis.fixed>`) and size-1 broadcast axes;
* :func:`resized` is the analysis at new sizes (pure);
* :func:`view` its HTML: the Shapes table, the cost line and the forward diagram (pure);
* :func:`widget` the sliders over that HTML, or ``None`` when no letter is free.
  ipywidgets is imported there only.

>>> from einsum_magic import derive
>>> from einsum_magic.cell.analysis import Analysis
>>> from einsum_magic.cell.calls import equation_call
>>> a = Analysis(equation_call("ij,jk->ik"), derive("ij,jk->ik", shapes=((2, 3), (3, 4))),
...              "defaults")
>>> [x.letter for x in free(a)]
['i', 'j', 'k']
>>> resized(a, {"j": 7}).derivation.shapes
((2, 7), (7, 4))
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

__all__ = ["free", "fixed_letters", "resized", "view", "widget", "MAX_SIZE"]

#: The largest size a slider offers (or twice the letter's size, if that is more).
MAX_SIZE = 64


def fixed_letters(d, positions) -> tuple[str, ...]:
    """The letters of ``d``'s bound equation carried by the operands at ``positions``.

    >>> from einsum_magic import derive
    >>> fixed_letters(derive("ij,jk->ik", shapes=((2, 3), (3, 4))), [1])
    ('j', 'k')
    """
    return tuple(dict.fromkeys(c for k in positions for c in d.inputs[k] if c.isalpha()))


def free(a) -> tuple:
    """The :class:`~einsum_magic.core.derivation.Letter` records that get a slider, in order."""
    d = a.derivation
    if d.shapes is None:
        return ()
    fixed = set(getattr(a, "fixed", ()))
    return tuple(x for x in d.letters if x.letter not in fixed and x.role != "broadcast")


def resized(a, sizes: Mapping[str, int]):
    """Analysis ``a`` with its derivation rebound so that each letter of ``sizes`` has that size.

    Only shapes change: the check's report stays the one of the sizes that were checked.

    >>> from einsum_magic import derive
    >>> from einsum_magic.cell.analysis import Analysis
    >>> from einsum_magic.cell.calls import equation_call
    >>> a = Analysis(equation_call("ii->i"), derive("ii->i", shapes=((2, 2),)), "defaults")
    >>> resized(a, {"i": 5}).derivation.output_shape
    (5,)
    """
    d = a.derivation
    sizes = {c: int(n) for c, n in sizes.items()}
    bad = [c for c, n in sizes.items() if n < 1]
    if bad:
        raise ValueError(f"the size of {bad[0]!r} must be at least 1, not {sizes[bad[0]]}")
    shapes = tuple(tuple(sizes.get(c, n) for c, n in zip(subs, shape))
                   for subs, shape in zip(d.inputs, d.shapes))
    if shapes == d.shapes:
        return a
    note = "sizes from the sliders (the check ran at the sizes above)"
    return dataclasses.replace(a, derivation=d.bound_to(shapes), sizes_from=note)


def view(a) -> str:
    """The HTML the sliders rewrite: the Shapes table, the cost line, the forward diagram."""
    from html import escape

    from . import colours, diagram, html, text

    d = a.derivation
    cost = text.cost_line(a)
    body = [f'<div class="eg-muted">{escape(a.sizes_from)}</div>', html.shapes(a),
            f"<div>{escape(cost or '')}</div>",
            diagram.svg(diagram.forward(d), colours.of(d))]
    return colours.paint_html("".join(body), colours.of(d), d.names + (d.output,))


def widget(a):
    """Sliders for :func:`free` letters over :func:`view`, or ``None`` when no letter is free.

    Moving a slider calls :func:`resized` with every slider's value and writes
    :func:`view` of the result into the HTML below: one round-trip, no re-run.
    """
    letters = free(a)
    if not letters:
        return None
    import ipywidgets

    from . import html

    out = ipywidgets.HTML(value=html.wrap(view(a)))
    sliders = {x.letter: ipywidgets.IntSlider(
        value=x.size, min=1, max=max(MAX_SIZE, 2 * x.size), description=x.letter,
        continuous_update=True, layout=ipywidgets.Layout(width="320px"))
        for x in letters}

    def update(change=None):
        out.value = html.wrap(view(resized(a, {c: s.value for c, s in sliders.items()})))

    for s in sliders.values():
        s.observe(update, names="value")
    box = ipywidgets.VBox([ipywidgets.HTML(value=html.wrap(
        '<div class="eg-muted">sizes of the letters your arrays do not fix: drag to see the '
        "shapes, FLOPs and diagram at other sizes (nothing re-runs)</div>")),
        *sliders.values(), out])
    box._einsum_sliders = sliders          # for tests and callers: letter -> IntSlider
    box._einsum_view = out
    return box
