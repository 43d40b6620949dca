"""Running a magic cell's code once, as IPython runs a cell, while observing its einsums.

This module owns how the cell's own code runs under ``%%einsum_grad``.
:func:`run_code` does what IPython's ``run_cell_async`` does between its events:
transform the code, cache it (for tracebacks), compile it with the shell's compiler
(``__future__`` flags, top-level ``await``), apply the AST transformers and run the
nodes with the shell's interactivity, so that the last expression is displayed and
stored in ``Out`` under the cell's own number. It does not call ``run_cell``: the
``pre_run_cell``/``post_run_cell`` hooks fire once, for the cell itself, and the
history holds the cell once. The run happens inside a
:class:`~einsum_magic.cell.capture.Capture`, restored when it ends, also on an error or
an interrupt.

Top-level ``await``: a cell magic is an ordinary call inside the cell, so it cannot
await. :func:`await_transform`, an input transformer the extension registers,
rewrites a ``%%einsum_grad`` cell whose body has a top-level ``await`` into
``await <the magic's async entry>(line, body)``: IPython (and ipykernel) then run
the whole cell on their event loop, as they would the body alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .capture import Capture

__all__ = ["Ran", "run_code", "transformed", "await_transform", "fail_with", "CellCodeFailed",
           "MAGIC"]

MAGIC = "einsum_grad"


@dataclass(frozen=True)
class Ran:
    """The outcome of :func:`run_code`: whether the code raised, what ran, and the cell's file."""

    error: BaseException | None
    sites: tuple
    filename: str


async def run_code(shell, body: str, budget: int, source: str | None = None) -> Ran:
    """Run ``body`` in ``shell``'s namespace once, observing its einsum calls.

    ``source``: ``body`` as ``shell.transform_cell`` gives it, when the caller has it.
    """
    from IPython.core.interactiveshell import ExecutionInfo, ExecutionResult

    cell = shell.transform_cell(body) if source is None else source
    result = ExecutionResult(ExecutionInfo(body, False, False, True, None,
                                           transformed_cell=cell))
    outer = getattr(shell.displayhook, "exec_result", None)
    number = getattr(outer, "execution_count", None) or shell.execution_count
    compiler = shell.compile
    capture = Capture(shell.user_ns, budget)
    with shell.builtin_trap:
        filename = compiler.cache(cell, number, raw_code=body)
        with shell.display_trap:
            try:
                tree = compiler.ast_parse(cell, filename=filename)
            except IndentationError as e:
                shell.showindentationerror()
                return Ran(e, (), filename)
            except (OverflowError, SyntaxError, ValueError, TypeError, MemoryError) as e:
                shell.showsyntaxerror()
                return Ran(e, (), filename)
            try:
                tree = shell.transform_ast(tree)
            except Exception as e:        # noqa: BLE001 (InputRejected and the like)
                shell.showtraceback()
                return Ran(e, (), filename)
            interactivity = shell.ast_node_interactivity
            with capture as recorder:
                await shell.run_ast_nodes(tree.body, filename, interactivity=interactivity,
                                          compiler=compiler, result=result)
    return Ran(result.error_in_exec, recorder.sites(), filename)


#: The body :func:`await_transform` last transformed, and the result: the magic reads the
#: same body next, and transforming it again costs as much as reading it (IPython's token
#: transforms, a few hundred microseconds on a 10-line cell).
_last: list = [None, None, None]        # shell, body, transformed


def transformed(shell, body: str) -> str:
    """``shell.transform_cell(body)``, reusing what :func:`await_transform` just computed.

    >>> from IPython.testing.globalipapp import get_ipython
    >>> transformed(get_ipython(), "x = 1") == get_ipython().transform_cell("x = 1")
    True
    """
    s, b, cell = _last
    _last[:] = None, None, None
    if s is shell and b == body:
        return cell
    return shell.transform_cell(body)


def await_transform(shell):
    """The input transformer for top-level ``await`` in a ``%%einsum_grad`` cell (see above)."""

    def transform(lines: list[str]) -> list[str]:
        if not lines or not lines[0].startswith(f"%%{MAGIC}"):
            return lines
        name, _, line = lines[0][2:].rstrip().partition(" ")
        if name != MAGIC:
            return lines
        body = "".join(lines[1:])
        if "await" not in body and "async" not in body:   # no top-level await possible
            return lines
        try:
            cell = shell.transform_cell(body)
            _last[:] = shell, body, cell
            if not shell.should_run_async(body, transformed_cell=cell):
                return lines
        except Exception:                 # noqa: BLE001 (incomplete input: leave it to IPython)
            return lines
        return [f"await get_ipython().find_cell_magic({MAGIC!r}).__self__.run_async("
                f"{line!r}, {body!r})\n"]

    transform.has_side_effects = True     # check_complete need not run it
    transform.einsum_magic = True
    return transform


class CellCodeFailed(RuntimeError):
    """The cell's own code raised (IPython showed it), outside a cell IPython runs.

    Inside a cell, the cell fails with the user's own exception instead (see step 2);
    this is raised only where no cell holds the magic (``shell.run_cell_magic`` called
    directly), so that the caller still sees the failure.
    """

    def _render_traceback_(self):
        return [f"einsum_grad: {self}"]


def fail_with(shell, error: BaseException) -> None:
    """Make the cell IPython is running fail with the user's own ``error`` (already shown).

    Raising anything after the user's error would make IPython show that too and point
    ``sys.last_value``, ``%tb`` and ``%debug`` at the magic: the cell's result takes the
    user's error instead. Outside a cell IPython runs (``shell.run_cell_magic`` called
    directly) :class:`CellCodeFailed` tells the caller.
    """
    outer = getattr(shell.displayhook, "exec_result", None)
    if outer is None:
        raise CellCodeFailed(f"the cell's code raised {type(error).__name__}") from error
    outer.error_in_exec = error
