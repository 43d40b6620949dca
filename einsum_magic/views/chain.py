"""The "Cell backward" display: a cell's backward program as text and as HTML.

This module owns how a cell's backward is shown: a
:class:`~einsum_magic.chain.result.CellBackward` (from the record of the run: verdict
first, PARTIAL with every input that is not derived and the operation it crosses, the
backward lines with the cell line each comes from) and, until the NumPy recorder lands, the
retiring :class:`~einsum_magic.chain.text.result.CellBackward` read from a NumPy cell's
text. Both views
are pure functions of it and deterministic (no ids from memory, timings, devices or error
figures), so nbval can compare them: :func:`text` is the ``text/plain`` (verdict first, the
inputs and sinks with their shapes, the forward program as read, the backward program with
the cell line each gradient comes from and its shape, the notes); :func:`html` the
``text/html``: the same, with code highlighted, each backward line linked to the forward
line it comes from, and a table of the check. Anchors are named from a hash of the
program, so they are the same on every run.
"""

from __future__ import annotations

import hashlib
from html import escape

from ..chain.text.forward import line

__all__ = ["text", "html", "meaning", "CellBackwardDisplay", "verdict"]


def _recorded(b) -> bool:
    return hasattr(b, "recording")


def verdict(b) -> str:
    """The check's one line, or why it did not run."""
    if _recorded(b) and b.check is None and b.not_derived:
        first = next(iter(b.not_derived.values()))
        return f"cell check: PARTIAL, not derived across {first}; {b.check_note or 'not run'}"
    if b.check is not None:
        return b.check.summary
    return f"cell check: {b.check_note or 'not run'}"


def _shape(shape) -> str:
    return "?" if shape is None else str(tuple(shape))


def _io(b) -> tuple[str, str]:
    shapes = b.program.shapes
    inputs = ", ".join(f"{v} {_shape(shapes.get(v))}" for v in b.inputs) or "none"
    sinks = ", ".join(f"{v} {_shape(shapes.get(v))}" for v in b.sinks) or "none"
    return inputs, sinks


def _written(b, s) -> str:
    """What the step stands for, where the forward line alone does not say it."""
    if s.kind == "stop":
        return "not differentiated: the backward stops here"
    if s.kind == "einsum" and s.what:
        return s.what
    if s.target in dict(b.program.renamed):
        return f"{s.target} is {b.program.cell_name(s.target)} as line {s.line} binds it"
    return s.what


def text(b) -> str:
    """The deterministic ``text/plain`` of the display.

    >>> import numpy as np
    >>> from einsum_magic.chain import cell_backward
    >>> b = cell_backward("H = X @ W\\nZ = np.maximum(H, 0)",
    ...                   {"X": np.ones((2, 3)), "W": np.ones((3, 4))}, check=False)
    >>> print(text(b))
    cell backward: cell check: not run
    inputs: X (2, 3), W (3, 4); sinks: Z (2, 4), given dL_dZ
    forward, as read:
      line 1  H = np.einsum('ij,jk->ik', X, W)  # X @ W
      line 2  Z = np.maximum(H, 0)
    backward (runnable NumPy, reads the forward values and dL_dZ):
      line 2  dL_dH = dL_dZ * (H > 0)  # (2, 4)
      line 1  dL_dX = np.einsum('ik,jk->ij', dL_dH, W)  # (2, 3)
      line 1  dL_dW = np.einsum('ik,ij->jk', dL_dH, X)  # (3, 4)
    """
    if _recorded(b):
        return _recorded_text(b)
    inputs, sinks = _io(b)
    given = ", ".join(b.cotangent(s) for s in b.sinks)
    out = [f"cell backward: {verdict(b)}", f"inputs: {inputs}; sinks: {sinks}, given {given}",
           "forward, as read:"]
    for s in b.program.steps:
        what = _written(b, s)
        out.append(f"  {_where(s.line)}  {line(s)}" + (f"  # {what}" if what else ""))
    out.append(f"backward (runnable NumPy, reads the forward values and {given}):")
    for bl in b.lines:
        out.append(f"  {_where(bl.line)}  {bl.code}  # {_shape(bl.shape)}")
    out += [f"note: {n}" for n in b.notes]
    return "\n".join(out)


def meaning(b) -> str:
    r"""The display in one deterministic line (the text view's lines joined with " | ").

    The HTML carries it as ``<!-- einsum_grad meaning: … -->``, to which the nbval sanitize
    file shipped with the package reduces the whole page, as it does the per-einsum page.

    >>> import numpy as np
    >>> from einsum_magic.chain import cell_backward
    >>> b = cell_backward("Z = X * 2", {"X": np.ones(3)}, check=False)
    >>> print(meaning(b).replace(" | ", "\n"))
    cell backward: cell check: not run
    inputs: X (3,); sinks: Z (3,), given dL_dZ
    forward, as read:
    line 1 Z = X * 2
    backward (runnable NumPy, reads the forward values and dL_dZ):
    line 1 dL_dX = dL_dZ * 2 # (3,)
    """
    return " | ".join(" ".join(s.split()) for s in text(b).splitlines() if s.strip())


def _where(n: int) -> str:
    return f"line {n}" if n else "      "


def _anchor(b) -> str:
    digest = hashlib.sha1(b.forward_code.encode() + b.code.encode()).hexdigest()[:10]
    return f"eg-chain-{digest}"


def html(b) -> str:
    """The deterministic ``text/html`` of the display (styled like the per-einsum ones)."""
    from .html import highlight, meaning_comment, stylesheet

    if _recorded(b):
        return _recorded_html(b)
    key = _anchor(b)
    inputs, sinks = _io(b)
    given = ", ".join(b.cotangent(s) for s in b.sinks)
    # the forward as read, nothing ran: agreeing with jax.vjp of it is no PASS (muted)
    badge = "eg-fail" if b.check is not None and not b.check.passed else "eg-muted"
    parts = ['<div class="eg-title">Cell backward '
             f'<span class="{badge}">{escape(verdict(b))}</span></div>',
             f"<div>inputs: {escape(inputs)}; sinks: {escape(sinks)}, given "
             f"<code>{escape(given)}</code></div>"]
    parts.append("<h3>Forward, as read</h3>")
    rows = []
    for i, s in enumerate(b.program.steps):
        rows.append(f'<tr id="{key}-s{i}"><td class="eg-num">line {s.line}</td><td>{highlight(line(s))}</td>'
                    f'<td>{escape(_written(b, s))}</td></tr>')
    parts.append(_table(("cell", "step (NumPy)", "stands for"), rows))
    parts.append(f"<h3>Backward</h3><div class=\"eg-muted\">runnable NumPy: reads the forward "
                 f"values and {escape(given)}, assigns "
                 f"{escape(', '.join(b.gradient(v) for v in b.program.leaves))}</div>")
    rows = []
    for bl in b.lines:
        link = (f'<a href="#{key}-s{bl.step}" title="{escape(line(b.program.steps[bl.step]))}">'
                f"line {bl.line}</a>" if bl.step is not None else
                (f"line {bl.line}" if bl.line else ""))
        rows.append(f'<tr><td class="eg-num">{link}</td><td>{highlight(bl.code)}</td>'
                    f'<td class="eg-num">{escape(_shape(bl.shape))}</td><td>{escape(bl.rule)}</td></tr>')
    parts.append(_table(("from", "gradient", "shape", "rule"), rows))
    if b.notes:
        parts.append("<h3>Notes</h3>" + "".join(f"<div>{escape(n)}</div>" for n in b.notes))
    parts.append("<h3>Check</h3>")
    if b.check is None:
        parts.append(f"<div>{escape(b.check_note or 'not run')}</div>")
    else:
        parts.append('<div class="eg-muted">every input gradient of the backward program '
                     "against <code>jax.vjp</code> of the same forward program in jax.numpy, at "
                     f"the cell's arrays, float64, seeded random cotangents (seed "
                     f"{b.check.seed})</div>")
        rows = [f"<tr><td><code>{escape(g.target)}</code></td><td>{escape(_shape(g.shape))}</td>"
                f"<td>{_PASS if g.passed else _FAIL}</td></tr>" for g in b.check.gradients]
        parts.append(_table(("gradient", "shape", "vs jax.vjp"), rows))
    body = f'<div class="einsum-grad">{"".join(parts)}</div>'
    return meaning_comment(meaning(b)) + stylesheet(body) + body


_PASS = '<span class="eg-pass">pass</span>'
_FAIL = '<span class="eg-fail">fail</span>'


def _table(head, rows) -> str:
    return ('<table class="eg-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


# -- the cell backward from the record of the run ---------------------------------------------


def _rshape(b, v) -> str:
    return _shape(b.recording.info[v].shape)


def _recorded_io(b) -> tuple[str, str, str]:
    p = b.program
    inputs = ", ".join(f"{b.names.name[v]} {_rshape(b, v)}" for v in p.inputs) or "none"
    sinks = ", ".join(f"{b.names.name[v]} {_rshape(b, v)}" for v in p.sinks) or "none"
    given = ", ".join(p.grad_names[v] for v in p.sinks)
    return inputs, sinks, given


def _recorded_text(b) -> str:
    p = b.program
    inputs, sinks, given = _recorded_io(b)
    out = [f"cell backward: {verdict(b)}", f"inputs: {inputs}; sinks: {sinks}, given {given}"]
    for name, crosses in b.not_derived.items():
        out.append(f"not derived: {name} (crosses {crosses})")
    reads = len(p.preamble)
    out.append(f"backward (runnable NumPy; b.code adds {reads} preamble line"
               f"{'s' if reads != 1 else ''} binding the forward values and {given}):")
    for bl in p.lines:
        shape = f"  # {_rshape(b, bl.target)}" if bl.target is not None else ""
        out.append(f"  {_where(bl.line)}  {bl.code}{shape}")
    out += [f"note: {n}" for n in b.notes]
    return "\n".join(out)


def _recorded_html(b) -> str:
    from .html import highlight, meaning_comment, stylesheet

    p = b.program
    inputs, sinks, given = _recorded_io(b)
    ok = b.check is not None and b.check.passed
    badge = "eg-pass" if ok else ("eg-fail" if b.check is not None and b.check.failed
                                  else "eg-muted")
    parts = ['<div class="eg-title">Cell backward '
             f'<span class="{badge}">{escape(verdict(b))}</span></div>',
             f"<div>inputs: {escape(inputs)}; sinks: {escape(sinks)}, given "
             f"<code>{escape(given)}</code></div>"]
    if b.not_derived:
        parts.append("<h3>Not derived</h3>" + "".join(
            f"<div><code>{escape(n)}</code>: crosses {escape(c)}</div>"
            for n, c in b.not_derived.items()))
    parts.append('<h3>Backward</h3><div class="eg-muted">runnable NumPy, from the record of '
                 "the run; pasted after the cell it runs as is</div>")
    parts.append(f"<details><summary>preamble: {len(p.preamble)} lines binding the forward "
                 f"values</summary><pre>{escape(chr(10).join(p.preamble))}</pre></details>")
    rows = [f'<tr><td class="eg-num">{_where(bl.line).strip()}</td><td>{highlight(bl.code)}'
            f'</td><td class="eg-num">'
            f'{escape(_rshape(b, bl.target)) if bl.target is not None else ""}</td>'
            f"<td>{escape(bl.rule)}</td></tr>" for bl in p.lines]
    parts.append(_table(("from", "gradient", "shape", "rule"), rows))
    if b.notes:
        parts.append("<h3>Notes</h3>" + "".join(f"<div>{escape(n)}</div>" for n in b.notes))
    parts.append("<h3>Check</h3>")
    if b.check is None or not b.check.rows:
        parts.append(f"<div>{escape(b.check_note or verdict(b))}</div>")
    else:
        parts.append(f'<div class="eg-muted">{escape(_reference(b.check), quote=False)}</div>')
        marks = {"pass": _PASS, "fail": _FAIL}
        rows = [f"<tr><td><code>{escape(r.gradient)}</code></td><td>{escape(_shape(r.shape))}"
                f"</td><td>{escape(r.against)}</td><td>"
                f"{marks.get(r.status, escape(r.status))}</td></tr>" for r in b.check.rows]
        parts.append(_table(("gradient", "shape", "against", "verdict"), rows))
    body = f'<div class="einsum-grad">{"".join(parts)}</div>'
    return meaning_comment(meaning(b)) + stylesheet(body) + body     # only the rules it uses


def _reference(r) -> str:
    """What a cell's check compared against, in words: the report's reference.

    >>> from einsum_magic.chain.report import CellCheck
    >>> _reference(CellCheck("PASS", framework="numpy"))[:60]
    "every derived gradient by NumPy's adjoint test <u, J d> = <g"
    """
    after = f"after the replay reproduced every value of the run (seed {r.seed})"
    if r.reference == "adjoint":
        why = f"; {r.fallback}" if r.fallback else ""
        return ("every derived gradient by NumPy's adjoint test <u, J d> = <g, d>, J d by "
                "central finite differences of a NumPy replay of the recorded calls, float64, "
                f"{after}{why}")
    against = ("jax.vjp of the recorded calls' jax.numpy namesakes" if r.framework == "jax"
               else f"{r.framework} autograd of a replay of the recorded operations")
    return f"every derived gradient against {against}, float64, {after}"


class CellBackwardDisplay:
    """What the magic displays after the per-einsum displays: ``text/plain`` and ``text/html``.

    ``view="text"`` leaves the HTML out, as it does for
    :class:`~einsum_magic.views.widget.GradDisplay` (any other view keeps it).
    """

    def __init__(self, backward, view: str = "html"):
        self.backward = backward
        self.view = view

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.view == "text":
            return {"text/plain": text(self.backward)}
        return {"text/plain": text(self.backward), "text/html": html(self.backward)}

    def __repr__(self) -> str:
        return text(self.backward)
