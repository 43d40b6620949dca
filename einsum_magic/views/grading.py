"""The "grade" display of ``%%einsum_grad --grade NAME``: a graded backward cell, text and HTML.

This module owns how a :class:`~einsum_magic.grade.Grading` is shown, as pure functions of
it (no import of the grading itself: the record is read by its fields):

* :func:`text` — the ``text/plain``: the verdict line first, then one line per gradient in
  execution order (its grade, its cell lines, the reason), the first wrong line marked
  ``>``. Deterministic: round-off figures, which vary between machines, stay in the HTML.
* :func:`html` — self-contained HTML (CSS-only folds, no script, no network): one fold per
  gradient, the first wrong one open; inside a wrong or missing one, a *Hint* fold (the
  rule's name and shape, never the answer) and a *Reveal* fold (the answer). The page
  carries its meaning line (:func:`meaning`) for the nbval sanitize file.

>>> from einsum_magic.grade import Grading, LineGrade
>>> g = Grading((LineGrade("b1", "db1", "wrong", "`db1` has shape (32, 64); …", "broadcast",
...                        (3,), hint="sum", answer="dL_db1 = …"),
...              LineGrade("W1", "dW1", "missing", "`dW1` is not written yet")), of="fwd")
>>> print(text(g))
grade: WRONG, 0 of 2 right, 1 wrong, 1 not written yet (first wrong: db1, line 3)
> wrong   db1 line 3       `db1` has shape (32, 64); …
  missing dW1 not written  `dW1` is not written yet
>>> '<details class="eg-line eg-line-wrong" open>' in html(g)
True
"""

from __future__ import annotations

import hashlib
from html import escape

from .html import highlight, meaning_comment, wrap

__all__ = ["text", "html", "meaning", "GradingDisplay", "WORDS"]

#: How each verdict reads in the text and the HTML.
WORDS = {"right": "right", "roundoff": "right", "size1": "right", "wrong": "wrong",
         "upstream": "wrong", "missing": "missing"}

CSS = """
.einsum-grad details.eg-line { margin: 2px 0; padding: 0 4px;
  border-left: 3px solid var(--jp-border-color2, #e0e0e0); }
.einsum-grad details.eg-line.eg-line-wrong { border-left-color: var(--jp-error-color1, #d32f2f); }
.einsum-grad details.eg-line.eg-line-right { border-left-color: var(--jp-success-color1, #388e3c); }
.einsum-grad details.eg-line.eg-line-missing { border-left-color: var(--jp-warn-color1, #f57c00); }
.einsum-grad details.eg-line > summary { cursor: pointer; }
.einsum-grad .eg-first { font-weight: bold; color: var(--jp-error-color1, #d32f2f); }
"""


def _plain(message: str) -> str:
    """The message without what varies by machine (the round-off figure)."""
    head, sep, rest = message.partition(" (largest difference ")
    if sep and head.startswith("right up to "):
        return head + rest.split(")", 1)[1]
    return message


def text(g) -> str:
    """The ``text/plain`` of grading ``g``: verdict first, one line per gradient."""
    first = g.first_wrong
    rows = [(">" if line is first else " ", WORDS[line.verdict], line.target, line.where,
             _plain(line.message)) for line in g.lines]
    widths = [max((len(r[k]) for r in rows), default=0) for k in range(4)]
    out = [g.summary]
    for r in rows:
        out.append(" ".join(r[k].ljust(widths[k]) for k in range(4)) + "  " + r[4])
    return "\n".join(s.rstrip() for s in out)


def meaning(g) -> str:
    """One deterministic line: the verdict and each gradient's grade and reason."""
    parts = [g.summary] + [f"{line.target}: {WORDS[line.verdict]}"
                           + (f" ({line.reason})" if line.reason else "") for line in g.lines]
    return " | ".join(parts)


def _coded(message: str) -> str:
    """``message`` escaped, each `quoted` part as <code>."""
    parts = escape(message).split("`")
    if len(parts) % 2 == 0:              # an odd number of backticks: leave them be
        return escape(message)
    return "".join(f"<code>{p}</code>" if k % 2 else p for k, p in enumerate(parts))


def _fold(summary: str, body: str, cls: str) -> str:
    return f'<details class="{cls}"><summary>{summary}</summary>{body}</details>'


def _line(line, first: bool) -> str:
    word = WORDS[line.verdict]
    state = {"right": "right", "wrong": "wrong", "missing": "missing"}[word]
    badge = {"right": "eg-pass", "wrong": "eg-fail", "missing": "eg-warn"}[word]
    mark = ' <span class="eg-first">first wrong line</span>' if first else ""
    if line.verdict == "upstream":
        mark += f' <span class="eg-muted">from <code>{escape(line.upstream)}</code></span>'
    summary = (f'<span class="{badge}">{escape(word)}</span> <code>{escape(line.target)}</code> '
               f'<span class="eg-muted">{escape(line.where)}</span>{mark}')
    body = [f"<div>{_coded(line.message)}</div>"]
    if not line.passed:
        if line.hint:
            body.append(_fold("Hint: the rule and the shape", f"<div>{_coded(line.hint)}</div>",
                              "eg-fold"))
        if line.answer:
            body.append(_fold(f"Reveal the answer for <code>{escape(line.target)}</code>",
                              highlight(line.answer), "eg-reveal"))
    opened = " open" if first else ""
    return (f'<details class="eg-line eg-line-{state}"{opened}><summary>{summary}</summary>'
            + "".join(body) + "</details>")


def html(g) -> str:
    """Self-contained HTML of grading ``g`` (the first wrong line open)."""
    first = g.first_wrong
    state = "fail" if g.failed else "pass" if g.counts["missing"] == 0 else "open"
    of = f' <span class="eg-muted">against {escape(g.of)}.backward</span>' if g.of else ""
    parts = [meaning_comment(meaning(g)), f"<style>{CSS}</style>",
             f'<div class="eg-title">einsum_grad --grade{of} '
             f'<span class="eg-badge eg-badge-{state}">{escape(g.summary)}</span></div>']
    parts += [_line(line, line is first) for line in g.lines]
    anchor = hashlib.sha256(meaning(g).encode()).hexdigest()[:12]
    return wrap(f'<div id="eg-grade-{anchor}">' + "".join(parts) + "</div>", style=True)


class GradingDisplay:
    """What ``--grade`` displays: ``text/plain`` and ``text/html`` (``view="text"``: text only)."""

    def __init__(self, grading, view: str = "html"):
        self.grading = grading
        self.view = view

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.view == "text":
            return {"text/plain": text(self.grading)}
        return {"text/plain": text(self.grading), "text/html": html(self.grading)}

    def __repr__(self) -> str:
        return text(self.grading)
