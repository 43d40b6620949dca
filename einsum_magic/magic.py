"""The ``%%einsum_grad`` magic: IPython's side of the extension, and nothing else.

This module owns the arrow IPython → :mod:`einsum_magic.flow`: the
:class:`EinsumGradMagics` class (its options, declared with ``magic_arguments``, and its
session defaults, traits that ``%config EinsumGradMagics.…`` sets), and
:func:`load_ipython_extension`. Each use reads its options into one
:class:`~einsum_magic.options.Options` and hands the cell to :class:`einsum_magic.flow.Run`,
which runs the magic step by step. Here, in one place, an
:class:`~einsum_magic.errors.EinsumError` becomes IPython's own ``UsageError`` (the class
itself: IPython prints its one-line message, no traceback).

A wrong ``--expect`` proposal fails the cell with one line,
``ExpectationFailed: --expect dL_dA = 'ik,jk->ji': wrong: the result must carry …``, a
failed check with ``CheckFailed: …``; an error of the cell's own code fails the cell
with that error, as without the magic.
"""

from __future__ import annotations

from functools import partial

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CaselessStrEnum, Int, Unicode

from .errors import EinsumError
from .flow import CellCodeFailed, CheckFailed, ExpectationFailed, Run
from .options import Once, read

__all__ = ["EinsumGradMagics", "ExpectationFailed", "CheckFailed", "CellCodeFailed",
           "load_ipython_extension"]


@magics_class
class EinsumGradMagics(Magics):
    """The ``%%einsum_grad`` cell magic and ``%einsum_grad`` line magic (configurable).

    ``%config EinsumGradMagics.check = False`` turns the JAX check off for the session;
    ``dtype``, ``seed`` and ``max_elements`` set the check's defaults; ``view`` picks the
    display (:func:`einsum_magic.views.frontend.choose`).
    """

    check = Bool(True, help="Check the derived gradients against jax.vjp.").tag(config=True)
    dtype = Unicode("float32", help="dtype of the check (float32, float64, complex64, …)."
                    ).tag(config=True)
    seed = Int(0, help="Seed of the check's random operands and cotangent.").tag(config=True)
    max_elements = Int(None, allow_none=True,
                       help="Element budget per array of the check (None: the check's "
                            "default); bigger arrays are replaced by random ones."
                       ).tag(config=True)
    max_displays = Int(20, help="Most call sites displayed per cell (in the order they first "
                                "ran); a note counts the rest.").tag(config=True)
    view = CaselessStrEnum(["auto", "widget", "progress", "html", "text"], "auto",
                           help="auto: the HTML display, plus live widgets in a Jupyter "
                                "kernel with ipywidgets whose frontend renders them (not "
                                "Colab or VS Code); widget, progress (no live widgets but "
                                "the progress line), html or text to force one."
                           ).tag(config=True)

    @magic_arguments()
    @argument("equation", nargs="*",
              help="line magic only: the equation, e.g. ij,jk->ik (quote it if it has spaces)")
    @argument("--sizes", metavar="SIZES", action=Once,
              help="sizes of letters the arrays do not fix, e.g. i=2,j=3 (einops axis names "
                   "too: batch=8)")
    @argument("--no-run", action="store_true",
              help="analyse the einsums without running the cell's code")
    @argument("--no-check", action="store_true", help="skip the check against jax.vjp")
    @argument("--dtype", action=Once, help="dtype of the check (default float32)")
    @argument("--seed", type=int, action=Once,
              help="seed of the check's random arrays (default 0)")
    @argument("--expect", action="append", default=[], metavar="NAME=SPEC",
              help="grade a proposed backward einsum for operand NAME (or gradient dL_dNAME), "
                   "e.g. A=ik,jk->ij; N:NAME=SPEC for the N-th einsum; NAME=? for an exercise; "
                   "repeatable; a wrong one makes the cell fail")
    @argument("-o", "--output", metavar="NAME", action=Once,
              help="store the derivations and check reports in the variable NAME")
    @argument("--exercise", action="store_true",
              help="the cell's backward is an exercise: derive and check it, keep it for -o NAME, "
                   "do not show it (the learner writes it under --grade NAME)")
    @argument("--grade", metavar="NAME", action=Once,
              help="grade the gradients the cell assigns (d<name> or dL_d<name>) against the "
                   "backward of NAME, an earlier result of -o NAME; a wrong one fails the cell")
    @line_cell_magic
    def einsum_grad(self, line, cell=None):
        """Derive, show and check the backward einsum of every operand (the swap trick).

        On top of a cell, the cell runs as before, then each einsum call in it gets a
        display whose header says the verdict, with tabs Backward, Diagram, Loops, Shapes,
        Cost, Export and Check (and Exercise with ``--expect``)::

            %%einsum_grad
            C = np.einsum('ij,jk->ik', A, B)

        Every einsum call the cell runs is shown (numpy, jax.numpy, torch, opt_einsum,
        einops; inside functions, classes, loops and libraries too), one display per call
        site, with the shapes of the arrays the call received. The source gives the names
        (``A``, ``B``; ``B.T`` is op1 with a legend; the assigned output, or A_out in
        ``A = np.einsum('ij->ji', A)``) and its literal
        equations are checked before anything runs: ``np.einsum``/``numpy.einsum``,
        ``jnp.einsum``/``jax.numpy.einsum``, ``torch.einsum``, ``opt_einsum.contract``
        (``oe.contract``), a bare ``einsum``, the interleaved form
        ``einsum(A, [0, 1], B, [1, 2], [0, 2])`` and
        ``einops.einsum(x, w, "batch d, d out -> batch out")``. Sizes from ``--sizes`` or
        small distinct defaults only where nothing ran (``--no-run``, an equation-only
        cell, the line magic). ``EinsumGradMagics.max_displays`` (20) caps the displays.

        A cell whose one line has a ',', '->' or '...' and only letters besides is an
        equation; so is one run of letters (``ii``) that is no Python keyword, builtin or
        variable of yours (``pass`` and ``x`` stay Python: write ``'x'`` or ``x->x``).

        More examples::

            %%einsum_grad --sizes i=2,j=3,k=4
            ij,jk->ik

            %%einsum_grad --expect A=ik,jk->ij --no-check
            C = np.einsum('ij,jk->ik', A, B)

            %einsum_grad ii-> --sizes i=3
            %einsum_grad ...ij,...jk->...ik -o result

        ``--expect A=SPEC`` grades SPEC, an einsum over (dL_dC, the other operands in order),
        followed by the np.eye/np.ones tensors the Backward tab lists where the generalized
        rule needs them, strictly in that order; any letters pass. A wrong proposal fails the
        cell (so nbval and nbmake catch it) with one line saying why in the words of the trick.
        Quotes and spaces are fine (``--expect "A = ik, jk -> ij"``); ``--expect 2:A=…``
        names the einsum (1-based) when ``A`` is an operand of several; ``--expect A=?`` is
        an exercise: the cell runs, and the answer stays hidden until revealed.

        Session defaults: ``%config EinsumGradMagics.check = False`` (also ``dtype``,
        ``seed``, ``max_elements``, ``view``).
        """
        coroutine = self.run_async(line, cell)      # IPython's pseudo-sync runner
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        coroutine.close()
        raise UsageError("this %%einsum_grad cell awaits: run it as a cell (IPython rewrites it "
                         "to run on its event loop), not through run_cell_magic")

    async def run_async(self, line: str, cell: str | None = None):
        """The magic; on IPython's event loop for a cell with top-level ``await``
        (:func:`einsum_magic.cell.run.await_transform`)."""
        try:
            options = read(partial(parse_argstring, self.einsum_grad), line, self,
                           self.shell.user_ns, cell is not None)
            return await Run(self.shell, options, cell).run_async()
        except EinsumError as e:            # the one place: IPython's own one-line error
            raise UsageError(str(e)) from None


def load_ipython_extension(ipython) -> None:
    """Register :class:`EinsumGradMagics` (``%load_ext einsum_magic``); idempotent."""
    ipython.configurables[:] = [c for c in ipython.configurables
                                if type(c).__name__ != EinsumGradMagics.__name__]
    ipython.register_magics(EinsumGradMagics(shell=ipython))
    from .cell.run import await_transform

    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "einsum_magic", False)]
    cleanup.append(await_transform(ipython))
