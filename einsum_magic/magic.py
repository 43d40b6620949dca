"""The ``%%einsum_grad`` magic: wires cell → derivation → check → views → display.

This module only connects the others, in one direction:

1. options (IPython's ``magic_arguments`` over the :class:`EinsumGradMagics` traits);
2. :func:`einsum_magic.cell.calls.find_calls` reads the einsum calls from the cell's source,
   and each is derived without shapes *before anything runs*: a bad literal equation
   raises IPython's own ``UsageError`` (the class itself: IPython prints its one-line
   message, no traceback) and the cell's code is not run (a call inside a ``try`` block
   is left to the run);
3. :func:`einsum_magic.cell.run.run_code` runs the code once, as IPython runs a cell
   (its output, ``Out`` and top-level ``await`` as without the magic; the run hooks fire
   once, for the cell), while :mod:`einsum_magic.cell.capture` observes every einsum call
   that executes; if it raises, IPython shows that error, nothing is analysed, and the
   magic raises :class:`CellCodeFailed` so that the cell fails as it would have;
4. each call site that ran (:mod:`einsum_magic.cell.sites`: names from the source where the
   site is in the cell) is derived with the shapes its first call received, its
   ``--expect`` proposals matched to the displays (``2:A=…`` counts them in execution
   order) and judged, and checked against JAX on the arrays it received.
   Where nothing ran (``--no-run``, an equation-only cell, the line magic) the source's
   calls are derived with the user's arrays where
   :meth:`Call.lookups <einsum_magic.cell.calls.Call.lookups>` allows it, ``--sizes`` and
   distinct defaults;
5. one :class:`~einsum_magic.views.widget.GradDisplay` per einsum is displayed, in order: the
   HTML page everywhere, and under it, where :mod:`einsum_magic.views.frontend` expects a
   working widget manager, an output of live widgets (:func:`einsum_magic.views.widget.live`);
6. a cell of several steps also gets the backward of the whole cell
   (:func:`einsum_magic.chain.result.for_cell`, shown by :mod:`einsum_magic.views.chain`),
   and ``-o NAME`` stores everything (:class:`~einsum_magic.cell.analysis.EinsumGradResult`).

nbval compares the first display message of each output and ignores
``update_display_data``; it compares ``text/plain`` and ``text/html`` and skips the
widget-view MIME type. So every display is published once, after its check, with its
outcome already in ``text/plain``. While the check runs, a live frontend shows a
progress widget in an output whose compared data is ``{'text/html': ''}`` both when
first displayed and after its update: it leaves no difference between runs. A kernel
whose frontend gets no widgets (Colab, VS Code) publishes the same empty
``{'text/html': ''}`` in that place, and the live widgets under each page carry
nothing but the widget view: so what nbval compares does not depend on the frontend
the notebook was saved from.

A wrong ``--expect`` proposal raises :class:`ExpectationFailed` and a failed check
:class:`CheckFailed` (both ``AssertionError``) after the displays: the cell fails for
nbval and nbmake, and the user sees one line,
``ExpectationFailed: --expect dL_dA = 'ik,jk->ji': wrong: the result must carry …``.

Nothing is added to the user's namespace but what the cell's own code assigns and
``-o NAME`` (an :class:`~einsum_magic.cell.analysis.EinsumGradResult`).
"""

from __future__ import annotations

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CaselessStrEnum, Int, Unicode

from .flow import CellCodeFailed, CheckFailed, ExpectationFailed, Run as _Run, sync as _sync

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
    @argument("--sizes", metavar="SIZES",
              help="sizes of letters the arrays do not fix, e.g. i=2,j=3 (einops axis names "
                   "too: batch=8)")
    @argument("--no-run", action="store_true",
              help="analyse the einsums without running the cell's code")
    @argument("--no-check", action="store_true", help="skip the check against jax.vjp")
    @argument("--dtype", help="dtype of the check (default float32)")
    @argument("--seed", type=int, help="seed of the check's random arrays (default 0)")
    @argument("--expect", action="append", default=[], metavar="NAME=SPEC",
              help="grade a proposed backward einsum for operand NAME (or gradient dL_dNAME), "
                   "e.g. A=ik,jk->ij; N:NAME=SPEC for the N-th einsum; NAME=? for an exercise; "
                   "repeatable; a wrong one makes the cell fail")
    @argument("-o", "--output", metavar="NAME",
              help="store the derivations and check reports in the variable NAME")
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
        args = parse_argstring(self.einsum_grad, line)
        return _Run(self, args, cell).run()

    async def run_async(self, line: str, cell: str):
        """The cell magic for a cell with top-level ``await`` (see :mod:`einsum_magic.cell.run`)."""
        args = parse_argstring(self.einsum_grad, line)
        return await _Run(self, args, cell).run_async()


def load_ipython_extension(ipython) -> None:
    """Register :class:`EinsumGradMagics` (``%load_ext einsum_magic``); idempotent."""
    ipython.configurables[:] = [c for c in ipython.configurables
                                if type(c).__name__ != EinsumGradMagics.__name__]
    ipython.register_magics(EinsumGradMagics(shell=ipython))
    from .cell.run import await_transform

    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "einsum_magic", False)]
    cleanup.append(await_transform(ipython))
