"""The plain-text view of one analysed einsum: what terminals, nbconvert, GitHub and nbval see.

:func:`render` is a pure function of an :class:`~einsum_magic.cell.analysis.Analysis`. Its
output is deterministic: it opens with the verdict line (:mod:`einsum_magic.views.verdict`),
then holds the call, the forward einsum, the shapes, every
gradient's einsum, code and reading, the ``--expect`` verdicts, the cost line
(:func:`einsum_magic.compute.cost.lesson`: FLOP counts, which depend on
the shapes only) and the check's PASS/FAIL line
(:attr:`CheckReport.summary <einsum_magic.check.report.CheckReport>`), and never an id, a
timing, an error figure or a device name, so nbval can compare it. The exported code
(:mod:`einsum_magic.compute.export`) is left to the HTML page's Export tab: it is too long for a
summary.

The code helpers :func:`forward_code` and :func:`grad_code` write the einsums in the
style of the user's call (an einops pattern for ``einops.einsum``, else NumPy); the
HTML and widget views use them too.

>>> from einsum_magic.cell.analysis import Analysis
>>> from einsum_magic.cell.calls import find_calls
>>> from einsum_magic import derive
>>> call = find_calls("C = np.einsum('ij,jk->ik', A, B)").calls[0]
>>> d = derive(call.equation, call.names, call.output, shapes=((2, 3), (3, 4)))
>>> print(render(Analysis(call, d, "sizes from your arrays", check_note="skipped (--no-check)")))
check skipped
einsum_grad: np.einsum('ij,jk->ik', A, B)  (line 1)
forward: C = np.einsum('ij,jk->ik', A, B)
shapes:  A (2, 3), B (3, 4) -> C (2, 4)  (sizes from your arrays)
letters: i=2 free, j=3 contracted, k=4 free
<BLANKLINE>
dL_dA = np.einsum('ik,jk->ij', dL_dC, B)
  reads dL_dA = dL_dC @ B.T; relabelled 'ij,kj->ik'; shape (2, 3), as A
dL_dB = np.einsum('ik,ij->jk', dL_dC, A)
  reads dL_dB = A.T @ dL_dC; relabelled 'ij,ik->kj'; shape (3, 4), as B
<BLANKLINE>
cost: forward 48 FLOPs; each gradient alone 48, 48; backward 96 FLOPs, 2 × the forward
check: skipped (--no-check)
"""

from __future__ import annotations

from ..compute.cost import lesson
from .verdict import answer_hidden, expect_line, verdict

__all__ = ["render", "render_notes", "forward_code", "grad_code", "cost_line", "check_line",
           "shape_text"]


def shape_text(shape) -> str:
    """``(2, 3)`` → ``'(2, 3)'``; ``None`` → ``'?'``."""
    return "?" if shape is None else str(tuple(shape))


def forward_code(a) -> str:
    """The forward call as code, in the style of the user's call."""
    d, call = a.derivation, a.call
    if call.style == "einops":
        pattern = call.spell(d.inputs, d.result)
        return f'{d.output} = {call.function}({", ".join(d.names)}, "{pattern}")'
    return d.code


def grad_code(a, g) -> str:
    """One gradient as runnable code, in the style of the user's call.

    For ``einops.einsum`` calls the pattern is written back with the user's axis
    names (``einops.einsum(dL_dY, w, "batch out, d out -> batch d")``); other calls
    get the NumPy code of :attr:`Grad.code <einsum_magic.core.derivation.Grad>`.
    """
    call = a.call
    if call.style != "einops":
        return g.code
    pattern = call.spell(g.inputs, g.output)
    return f'{g.target} = {call.function}({", ".join(g.arguments)}, "{pattern}")'


def cost_line(a) -> str | None:
    """The cost's one deterministic line (:func:`einsum_magic.compute.cost.lesson`), or ``None`` without
    shapes.

    The magic always binds its derivations to shapes; a shapeless one has no FLOP count.
    """
    if a.derivation.shapes is None:
        return None
    return lesson(a.derivation)


def check_line(a) -> str:
    """The check's one deterministic line: the report's summary, or why it did not run."""
    if a.check is not None:
        return a.check.summary
    return f"check: {a.check_note}"


def render(a, index: int | None = None, count: int = 1) -> str:
    """The plain-text summary of analysis ``a`` (einsum ``index`` of ``count`` in the cell)."""
    d, call = a.derivation, a.call
    where = call.where or (f"line {call.line}" if call.style != "equation" else "equation")
    if count > 1 and index is not None:
        where = f"einsum {index + 1} of {count}, {where}"
    title = call.source if call.style != "equation" else repr(call.equation)
    equals = f" is {a.equals}" if a.equals else ""
    lines = [verdict(a).line,
             f"einsum_grad: {_one_line(title)}  ({where}){equals}",
             f"forward: {forward_code(a)}"]
    for name, expr in call.legend:
        lines.append(f"  {name} = {expr}")
    if call.axes and any(letter != name for letter, name in call.axes):
        lines.append("  letters for the axes: " + ", ".join(
            f"{letter}={name}" for letter, name in call.axes))
    shapes = ", ".join(f"{n} {shape_text(s)}"
                       for n, s in zip(d.names, d.shapes or (None,) * len(d.names)))
    lines.append(f"shapes:  {shapes} -> {d.output} {shape_text(d.output_shape)}  ({a.sizes_from})")
    lines.append("letters: " + ", ".join(_letter(x) for x in d.letters) if d.letters
                 else "letters: none (every operand is a scalar)")
    lines.append("")
    hidden = answer_hidden(a)
    for e in a.expectations:
        if not e.answered:
            lines.append(f"exercise: propose {e.question}")
    if hidden:
        lines.append("the derived backward is hidden until your proposal is right "
                     "(or press Reveal in the display)")
    for g in () if hidden else d.grads:
        lines.append(grad_code(a, g))
        reading = f"reads {g.target} = {g.interpretation}; " if g.interpretation else ""
        lines.append(f"  {reading}relabelled {g.relabelled!r}; shape {shape_text(g.shape)}, "
                     f"as {g.wrt}")
        if a.check is not None and g.wrt in a.check.real:
            lines.append(f"  {g.wrt} is real: its gradient is np.real({g.target}), as jax.vjp "
                         "and torch give it")
        for step in g.steps[1:]:
            lines.append(f"  - {step}")
    for t in () if hidden else d.totals:
        lines.append(f"product rule: {t.code}")
    lines.append("")
    for e in a.expectations:
        if e.answered:
            lines.append(expect_line(e, count))
    summary = cost_line(a)
    if summary is not None:
        lines.append(summary)
    lines.append(check_line(a))
    return "\n".join(lines)


def render_notes(notes) -> str:
    """The notes on skipped calls, one line each."""
    return "\n".join(f"einsum_grad: {n}" for n in notes)


def _letter(x) -> str:
    size = "" if x.size is None else f"={x.size}"
    origin = " (from ...)" if x.origin == "..." else ""
    return f"{x.letter}{size} {x.role}{origin}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
