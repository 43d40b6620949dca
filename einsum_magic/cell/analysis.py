"""What the magic found for each einsum of a cell: the records every view is drawn from.

:class:`Analysis` holds one einsum's call (:class:`~einsum_magic.cell.calls.Call`), its
derivation bound to shapes, the check's report and the ``--expect`` verdicts; the
text, HTML and widget views are pure functions of it. :class:`EinsumGradResult` is
what ``%%einsum_grad -o NAME`` stores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .calls import Call

__all__ = ["Analysis", "EinsumGradResult", "is_result", "example"]


@dataclass(frozen=True)
class Analysis:
    """One einsum of the cell, everything the views show: a pure record.

    ``check`` is the :class:`~einsum_magic.check.report.CheckReport`, or ``None`` with
    ``check_note`` saying why (skipped, JAX not installed, the check's error).
    ``sizes_from`` says where the shapes came from; ``fixed`` holds the letters whose
    size the user's arrays fix (the others get a size slider in a live kernel).
    ``hidden_by`` names an exercise of the same cell (``--expect 1:A=?``) whose answer this
    display would give away: it stays hidden behind Reveal too. ``equals`` is set for a call
    that is no einsum (a product, ``embcat @ W1``, ``F.linear(h, W2, b)``): the words saying
    which einsum it is (``the einsum 'ij,jk->ik'``, ``…, plus the bias b``).
    """

    call: Call
    derivation: Any                   # einsum_magic.core.derivation.Derivation, bound to shapes
    sizes_from: str
    check: Any = None
    check_note: str = ""
    expectations: tuple = ()          # einsum_magic.expect.Expectation, one per --expect
    fixed: tuple[str, ...] = ()       # letters the user's arrays fix
    hidden_by: str = ""               # an open exercise of the cell this display would answer
    equals: str = ""                  # a product: which einsum it is ('' for an einsum call)


@dataclass(frozen=True)
class EinsumGradResult:
    """What ``-o NAME`` stores: every einsum's derivation and check report, in order.

    ``backward`` is the :class:`~einsum_magic.chain.CellBackward` of the whole cell (``None``
    for a cell of one einsum, or where it could not be derived).
    """

    analyses: tuple[Analysis, ...]
    notes: tuple[str, ...] = field(default=())
    backward: Any = None

    @property
    def derivations(self) -> tuple:
        return tuple(a.derivation for a in self.analyses)

    @property
    def reports(self) -> tuple:
        """The check reports (``None`` where the check did not run)."""
        return tuple(a.check for a in self.analyses)

    @property
    def derivation(self):
        """The derivation of the first einsum (the usual one-einsum cell)."""
        return self.analyses[0].derivation if self.analyses else None

    @property
    def report(self):
        """The check report of the first einsum."""
        return self.analyses[0].check if self.analyses else None


def is_result(value) -> bool:
    """Whether ``value`` is an earlier :class:`EinsumGradResult` (also from before a module reload).

    >>> is_result(EinsumGradResult(())), is_result(1)
    (True, False)
    """
    kind, result = type(value), EinsumGradResult
    return isinstance(value, result) or (kind.__name__, kind.__module__) == (result.__name__,
                                                                            result.__module__)


def example(check_note: str = "skipped", expect: str | None = "?") -> Analysis:
    """A small analysis for examples: ``'ij,jk->ik'`` over (2, 3) and (3, 4), checked as
    ``check_note`` says, with ``--expect dL_dA=<expect>`` (an open exercise by default; None:
    no expectation).

    >>> a = example()
    >>> a.call.equation, a.expectations[0].target, a.expectations[0].verdict
    ('ij,jk->ik', 'dL_dA', 'blank')
    """
    from ..core.derivation import derive
    from ..expect import judge
    from .calls import equation_call

    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    return Analysis(equation_call("ij,jk->ik"), d, "defaults", check_note=check_note,
                    expectations=() if expect is None else (judge(d, "dL_dA", expect),))
