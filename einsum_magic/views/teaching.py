"""HTML views that teach: the verdict badge, the exercise, the reveal, the swap in loop form, the cost.

Pure functions of an :class:`~einsum_magic.cell.analysis.Analysis` returning HTML fragments
that :mod:`einsum_magic.views.html` places in the display (each is wired in with a line or two):

* :func:`badge` — the verdict (:mod:`einsum_magic.views.verdict`) as a coloured badge for the
  header: ``expect dL_dA wrong · check PASS``;
* :func:`exercise` — the Exercise tab: for each ``--expect``, the question (the backward of
  ``A`` over ``(dL_dC, B)``), the proposal's grade and every mistake found, in words;
* :func:`reveal` — the derived answer behind a closed ``<details>`` while an exercise is
  open or wrong (static HTML has no buttons; the live widget adds one);
* :func:`swaps` — the forward loop body beside each gradient's, the two swapped terms
  marked: ``C[i, k] += A[i, j] * B[j, k]`` and ``dL_dA[i, j] += dL_dC[i, k] * B[j, k]``;
* :func:`cost` — the Cost tab a learner can read: one FLOP count per einsum by one rule
  (:func:`einsum_magic.compute.cost.tally`), the rule in plain words, data movement by its name,
  and opt_einsum's path details folded away.

Styles are :data:`CSS`, scoped under ``.einsum-grad`` like the rest of the stylesheet and
written with JupyterLab's CSS variables, so they read in light and dark themes.

>>> from einsum_magic.cell.analysis import example
>>> a = example()                  # 'ij,jk->ik' with the exercise --expect dL_dA=?
>>> "eg-badge-open" in badge(a) and "<details" in reveal(a, "<p>answer</p>")
True
"""

from __future__ import annotations

import re
from html import escape

from .verdict import answer_hidden, verdict

__all__ = ["CSS", "badge", "exercise", "reveal", "swaps", "cost"]

CSS = """
.einsum-grad .eg-badge { display: inline-block; padding: 1px 8px; margin: 2px 0 4px 0;
  border-radius: 10px; font-weight: bold; white-space: nowrap;
  border: 1px solid var(--jp-border-color1, #bdbdbd); }
.einsum-grad .eg-badge-pass { color: var(--jp-success-color1, #388e3c);
  border-color: var(--jp-success-color1, #388e3c); }
.einsum-grad .eg-badge-fail { color: var(--jp-error-color1, #d32f2f);
  border-color: var(--jp-error-color1, #d32f2f); }
.einsum-grad .eg-badge-open { color: var(--jp-warn-color1, #f57c00);
  border-color: var(--jp-warn-color1, #f57c00); }
.einsum-grad .eg-badge-none { color: var(--jp-ui-font-color2, #616161); }
.einsum-grad details.eg-reveal > summary, .einsum-grad details.eg-fold > summary {
  cursor: pointer; color: var(--jp-brand-color1, #1976d2); margin: 4px 0; }
.einsum-grad .eg-swap-a { background: rgba(33, 150, 243, 0.28); border-radius: 2px;
  box-shadow: inset 0 -2px 0 rgba(33, 150, 243, 0.9); }
.einsum-grad .eg-swap-b { background: rgba(255, 152, 0, 0.28); border-radius: 2px;
  box-shadow: inset 0 -2px 0 rgba(255, 152, 0, 0.9); }
.einsum-grad table.eg-table code, .einsum-grad .eg-eq { white-space: nowrap; }
.einsum-grad .eg-rule { margin: 4px 0 6px 0; }
"""


def badge(a) -> str:
    """The verdict of ``a`` as a badge (``eg-badge-pass``, ``-fail``, ``-open`` or ``-none``)."""
    v = verdict(a)
    return f'<span class="eg-badge eg-badge-{v.state}">{escape(v.line)}</span>'


def reveal(a, body: str, what: str = "the derived backward") -> str:
    """``body`` as is, or behind a closed ``<details>`` while ``a``'s exercise is not solved."""
    if not answer_hidden(a):
        return body
    return (f'<details class="eg-reveal"><summary>Reveal {escape(what)} (hidden until your '
            f"proposal is right)</summary>{body}</details>")


def exercise(a) -> str:
    """The Exercise tab: each ``--expect`` as a question, its grade and the mistakes found."""
    parts = []
    for e in a.expectations:
        parts.append(f"<h4>{escape(e.target)}</h4>")
        parts.append(f"<div>Propose {escape(e.question)}: the cotangent first, then the other "
                     "operands in their forward order; any letters.</div>")
        if not e.answered:
            parts.append('<div class="eg-warn">unanswered</div>'
                         f"<div>Write it as <code>--expect {escape(_key(e))}=…</code> and run "
                         "the cell again.</div>")
            continue
        if e.passed:
            parts.append(f'<div><span class="eg-pass">right</span> '
                         f'<code class="eg-eq">{escape(e.proposal)}</code>: the Backward tab '
                         "shows the derived answer and how it is built.</div>")
            continue
        parts.append(f'<div><span class="eg-fail">wrong</span> '
                     f'<code class="eg-eq">{escape(e.proposal)}</code></div>')
        if e.verdict == "invalid":
            parts.append(f'<pre class="eg-code">{escape(e.message)}</pre>')
        else:
            parts.append("<ul>" + "".join(f"<li>{escape(m)}</li>" for m in e.mistakes) + "</ul>")
    return "".join(parts)


def _key(e) -> str:
    number = f"{e.einsum}:" if e.einsum not in (None, 1) else ""
    return f"{number}{e.wrt or e.target}"


# -- the swap in loop form ------------------------------------------------------------------

_TERM = re.compile(r"[A-Za-z_]\w*\[[^\]]*\]")


def _body(source: str) -> str:
    """The innermost line of loop source: ``C[i, k] += A[i, j] * B[j, k]``."""
    return next(line.strip() for line in reversed(source.splitlines()) if " += " in line)


def _marked(line: str, marks: dict) -> str:
    """``line`` escaped, the n-th occurrence of each term named in ``marks`` wrapped in a span."""
    out, at, seen = [], 0, {}
    for m in _TERM.finditer(line):
        term = m.group(0)
        name = term.split("[", 1)[0]
        seen[name] = seen.get(name, 0) + 1
        cls = marks.get((name, seen[name]))
        out.append(escape(line[at:m.start()]))
        out.append(f'<span class="{cls}">{escape(term)}</span>' if cls else escape(term))
        at = m.end()
    out.append(escape(line[at:]))
    return "".join(out)


def swaps(a) -> str:
    """The forward loop body beside each gradient's, the two terms that trade places marked.

    The result of the forward and the cotangent of the gradient share one mark, the operand
    and its gradient the other: the backward body is the forward body with them swapped.
    """
    d = a.derivation
    forward = _body(d.loops)
    rows = []
    for g in d.grads:
        body = _body(g.loops)
        # the forward term of this operand: the (k+1)-th occurrence of its name among factors
        nth = d.names[:g.position + 1].count(g.wrt)
        left = _marked(forward, {(d.output, 1): "eg-swap-a", (g.wrt, nth): "eg-swap-b"})
        right = _marked(body, {(g.target, 1): "eg-swap-b", (d.cotangent, 1): "eg-swap-a"})
        rows.append(f"<tr><td>{escape(g.target)}</td><td><code>{left}</code></td>"
                    f"<td><code>{right}</code></td></tr>")
    return ('<div class="eg-rule">In loop form every gradient is the plain swap: the loops are '
            "the same, and in the body the result and the operand trade places "
            '(<span class="eg-swap-a">result ↔ cotangent</span>, '
            '<span class="eg-swap-b">operand ↔ its gradient</span>); every other factor stays.'
            '</div><table class="eg-table"><tr><th>gradient</th><th>forward body</th>'
            "<th>backward body</th></tr>" + "".join(rows) + "</table>")


# -- the cost a learner can read ------------------------------------------------------------

_MOVES = {"transpose": "a transpose: the same numbers in another order",
          "copy": "a copy",
          "diagonal read": "a diagonal read: picks entries, no arithmetic",
          "diagonal write": "a diagonal write: places the entries on a diagonal of zeros "
                            "(what np.eye does), no arithmetic",
          "broadcast": "a broadcast: repeats the entries along a letter (what np.ones does), "
                       "no arithmetic",
          "reshape": "a reshape: a size-1 axis added or removed"}
_WORK = {"contraction": "multiply, then sum", "product": "multiply, nothing summed",
         "sum": "sum inside one operand", "add": "product rule: add the positions' gradients"}


def cost(a, details: str = "") -> str:
    """The Cost tab: FLOPs of the forward, each gradient and the backward by one rule.

    ``details`` (opt_einsum's figures and the joint plan's steps) is folded in a closed
    ``<details>`` at the end.
    """
    from ..compute.cost import MOVEMENT, tally

    d = a.derivation
    if d.shapes is None:
        return '<div class="eg-muted">the cost needs shapes</div>'
    forward, *grads, backward = tally(d)
    hidden = answer_hidden(a)
    parts = ['<div class="eg-rule">The rule: an einsum of two operands costs <strong>2 × the '
             "product of its letters' sizes</strong> when a letter is summed (one multiply and one "
             "add for each combination of the letters), 1 × when none is; a sum inside one "
             "operand costs one add per element; a transpose, a diagonal or a broadcast only "
             "moves data: 0 FLOPs. An einsum of three or more operands is done two at a time. Each gradient "
             "is an einsum over the same letters, so it costs about what the forward costs, and "
             "the backward about as many times the forward as there are operands.</div>"]
    rows = []
    for t in [forward, *grads, backward]:
        label = {"forward": f"forward {d.output}", "backward": "backward, all gradients "
                 "(shared steps)"}.get(t.label, t.label)
        steps = []
        for p in t.parts:
            eq = "" if (hidden and t is not forward) else f'<code>{escape(p.equation)}</code> '
            if p.kind in MOVEMENT:
                steps.append(f"{eq}{escape(_MOVES[p.kind])}: 0")
            else:
                steps.append(f"{eq}{escape(_WORK[p.kind])}: "
                             f'<span class="eg-eq">{escape(p.formula)}</span>')
        rows.append(f"<tr><td>{escape(label)}</td><td>" + "<br>".join(steps)
                    + f"</td><td>{t.flops:,}</td></tr>")
    parts.append('<table class="eg-table"><tr><th>einsum</th><th>steps, counted</th>'
                 "<th>FLOPs</th></tr>" + "".join(rows) + "</table>")
    if forward.flops:
        ratio = backward.flops / forward.flops
        parts.append(f"<div>Here the backward costs {ratio:.2g} × the forward "
                     f"({backward.flops:,} against {forward.flops:,} FLOPs).</div>")
    else:
        parts.append("<div>The forward only moves data, and so does its backward.</div>")
    if details and hidden:
        parts.append(reveal(a, details, "opt_einsum's figures and the joint plan"))
    elif details:
        parts.append('<details class="eg-fold"><summary>opt_einsum\'s figures and the joint '
                     f"plan, step by step</summary>{details}</details>")
    return "".join(parts)
