"""The outcome of one analysed einsum, said first: the verdict line, its badge, the tab to open.

This module owns what every view puts at the top of a display, as pure functions of an
:class:`~einsum_magic.cell.analysis.Analysis`:

* :func:`verdict` — a :class:`Verdict`: the one line (``expect dL_dA wrong · check PASS``),
  its state for a badge (``pass``, ``fail``, ``open`` for an unanswered exercise,
  ``none`` when nothing was judged) and the tab that explains it (``Exercise`` for a
  ``--expect``, ``Check`` for a failed check);
* :func:`expect_line` — one ``--expect`` proposal and what was found, in one line (the
  text view and the magic's failure message);
* :func:`answer_hidden` — whether the derived answer must stay out of sight: an exercise
  (``--expect A=?``) or a proposal that is not right yet hides the backward until the
  learner gets it right or presses Reveal.

>>> from einsum_magic.cell.analysis import example
>>> a = example("skipped (--no-check)")     # 'ij,jk->ik' with --expect dL_dA=?
>>> verdict(a).line
'expect dL_dA unanswered · check skipped'
>>> verdict(a).state, verdict(a).tab, answer_hidden(a)
('open', 'Exercise', True)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Verdict", "verdict", "expect_line", "answer_hidden", "EXPECT_WORDS"]

#: How each grade of a proposal reads in the verdict line.
EXPECT_WORDS = {"correct": "right", "wrong": "wrong", "invalid": "wrong", "blank": "unanswered"}


@dataclass(frozen=True)
class Verdict:
    """The outcome of one einsum: ``line`` (text), ``state`` (badge) and ``tab`` (to open)."""

    line: str
    state: str          # 'pass', 'fail', 'open' (an unanswered exercise) or 'none'
    tab: str | None     # the tab that explains it, or None: the first tab


def _check_word(a) -> str:
    if a.check is not None:
        return a.check.status          # the report's one verdict word
    note = a.check_note or ""
    return "skipped" if note.startswith("skipped") else "not run"


def verdict(a) -> Verdict:
    """The verdict of analysis ``a``: every ``--expect`` first, then the check."""
    parts = [f"expect {e.target} {EXPECT_WORDS.get(e.verdict, e.verdict)}" for e in a.expectations]
    check = _check_word(a)
    parts.append(f"check {check}")
    failed_expect = any(e.failed for e in a.expectations)
    if failed_expect or check == "FAIL":
        state = "fail"
    elif any(not e.answered for e in a.expectations):
        state = "open"
    elif check == "PASS" or a.expectations:
        state = "pass"
    else:
        state = "none"
    if a.expectations and (failed_expect or state == "open"):
        tab = "Exercise"
    elif check == "FAIL":
        tab = "Check"
    elif a.expectations:
        tab = "Exercise"
    else:
        tab = None
    return Verdict(" · ".join(parts), state, tab)


def expect_line(e, count: int = 1) -> str:
    """One ``--expect`` and its grade in one line; ``(einsum k)`` when the cell has several.

    >>> from einsum_magic import derive
    >>> from einsum_magic.expect import judge
    >>> d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    >>> expect_line(judge(d, "dL_dA", "ik,kj->ij"))
    "expect dL_dA = 'ik,kj->ij': wrong: B must keep its forward letters 'jk' (you wrote 'kj': a transpose)"
    """
    where = f" (einsum {e.einsum})" if count > 1 and e.einsum is not None else ""
    message = " ".join(e.message.splitlines()[0].split())
    if e.verdict == "wrong":
        message = f"wrong: {message}"
    proposal = "?" if not e.answered else repr(e.proposal)
    return f"expect {e.target} = {proposal}{where}: {message}"


def answer_hidden(a) -> bool:
    """Whether the derived answer stays hidden: an exercise that is blank or not right yet,
    here or in another einsum of the cell whose answer this one would give away."""
    return bool(a.hidden_by) or any(not e.passed for e in a.expectations)
