"""The ``--grade NAME`` flow of the magic: run the learner's backward cell, grade it, show it.

This module only wires, in one direction: the forward result ``NAME`` (an earlier
``%%einsum_grad -o NAME``) → its cell backward → :func:`einsum_magic.grade.reference_from`
(taken before the learner's code runs, so the cell cannot change it) → the learner's cell,
run once as written (:func:`einsum_magic.cell.run.run_code`) → :func:`einsum_magic.grade.grade`
→ :class:`~einsum_magic.views.grading.GradingDisplay`. A wrong line fails the cell with
:class:`GradeFailed` (an ``AssertionError``, as a wrong ``--expect`` does), one line:
``GradeFailed: grade: WRONG, … — line 3: the factor 1/probs is missing: …``. A gradient
not written yet fails nothing. Nothing is added to the user's namespace.
"""

from __future__ import annotations

from .errors import EinsumError

__all__ = ["grade_cell", "GradeFailed", "GradedCodeFailed"]


class GradeFailed(AssertionError):
    """A graded line is wrong: the cell fails, showing this one line (no traceback)."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


class GradedCodeFailed(RuntimeError):
    """The learner's cell did not compile (IPython showed why): the cell fails, nothing is
    graded. A learner's code that raises fails the cell with its own exception instead."""

    def _render_traceback_(self):
        return [f"einsum_grad: {self}"]


def _backward(ns: dict, name: str):
    if not name.isidentifier():
        raise EinsumError(f"--grade takes the name of an earlier result, not {name!r}")
    if name not in ns:
        raise EinsumError(f"--grade {name}: there is no {name}: run the forward cell under "
                         f"%%einsum_grad -o {name} first")
    if not hasattr(ns[name], "backward"):
        kind = type(ns[name]).__name__
        raise EinsumError(f"--grade {name}: {name} ({kind}) holds no cell backward to grade "
                         f"against: run the forward cell under %%einsum_grad -o {name}")
    backward = ns[name].backward
    if backward is None:
        raise EinsumError(f"--grade {name}: {name} has no cell backward: the magic derived none "
                         "for its cell (see the notes under that cell)")
    if not callable(getattr(backward, "gradients", None)):
        raise EinsumError(f"--grade {name}: {name}.backward cannot give its gradients (it has no "
                         "gradients())")
    return backward


async def grade_cell(shell, name: str, cell: str | None, budget: int | None = None,
                     view: str = "html") -> None:
    """Run ``cell`` in ``shell``, grade its gradients against ``name``'s backward, display."""
    from IPython.display import display

    from .cell.run import fail_with, run_code
    from .check.report import MAX_ELEMENTS
    from .grade import grade, reference_from
    from .views.grading import GradingDisplay, text

    if cell is None:
        raise EinsumError("--grade grades a cell: use %%einsum_grad --grade NAME on top of the "
                         "cell that computes the gradients")
    try:
        reference = reference_from(_backward(shell.user_ns, name))
    except EinsumError:
        raise
    except Exception as e:             # noqa: BLE001 (the backward could not give gradients)
        raise EinsumError(f"--grade {name}: {name}.backward gives no gradients "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
                         ) from None
    source = shell.transform_cell(cell)
    try:
        compile(source, "<cell>", "exec")
    except SyntaxError:
        source = None                  # the run reports it as IPython would
    ran = await run_code(shell, cell, budget or MAX_ELEMENTS)
    if ran.error is not None or source is None:   # IPython has shown the user's error
        kind = type(ran.error).__name__ if ran.error is not None else "SyntaxError"
        print(f"einsum_grad: the cell's code raised {kind}, so its gradients were not graded")
        if ran.error is not None:
            fail_with(shell, ran.error)
            return None
        raise GradedCodeFailed(f"the cell's code raised {kind}, so its gradients were not graded")
    grading = grade(source, shell.user_ns, reference, of=name)
    display(GradingDisplay(grading, view="text" if view == "text" else "html"))
    if grading.failed:
        first = grading.first_wrong
        raise GradeFailed(f"{grading.summary} — {first.target}, {first.where}: {first.message}")
    return None
