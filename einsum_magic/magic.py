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

import builtins
import dataclasses
import keyword

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, CaselessStrEnum, Int, Unicode

from .cell import calls as cells
from .cell.analysis import Analysis, EinsumGradResult
from .core.derivation import derive
from .core.equation import parse
from .errors import EinsumError
from .expect import judge
from .core.shapes import parse_sizes, shapes_from
from .views.sliders import fixed_letters
from .views.verdict import answer_hidden, verdict

__all__ = ["EinsumGradMagics", "ExpectationFailed", "CheckFailed", "CellCodeFailed",
           "load_ipython_extension"]


class ExpectationFailed(AssertionError):
    """A ``--expect`` proposal is wrong: the cell fails, showing this one line (no traceback)."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


class CheckFailed(AssertionError):
    """A derived gradient disagrees with ``jax.vjp``: the cell fails, showing this one line."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


class CellCodeFailed(RuntimeError):
    """The cell's own code raised (IPython showed it): the cell fails, nothing is analysed.

    Raised so that nbval, nbmake and ``nbconvert --execute`` see the cell fail, as they
    would without the magic; it adds one line under IPython's own traceback.
    """

    def _render_traceback_(self):
        return [f"einsum_grad: {self}"]


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
    @argument("--grade", metavar="NAME",
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
        args = parse_argstring(self.einsum_grad, line)
        return _Run(self, args, cell).run()

    async def run_async(self, line: str, cell: str):
        """The cell magic for a cell with top-level ``await`` (see :mod:`einsum_magic.cell.run`)."""
        args = parse_argstring(self.einsum_grad, line)
        return await _Run(self, args, cell).run_async()


class _Run:
    """One use of the magic: the options, then the data flow, in order."""

    def __init__(self, magics: EinsumGradMagics, args, cell: str | None):
        self.shell = magics.shell
        self.magics = magics
        self.args = args
        self.cell = cell
        self.ns = magics.shell.user_ns
        self.check_on = magics.check and not args.no_check
        self.dtype = _unquoted(args.dtype) or magics.dtype
        self.seed = magics.seed if args.seed is None else args.seed
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            where = "--seed" if args.seed is not None else "EinsumGradMagics.seed ="
            raise UsageError(f"{where} {self.seed!r} is not a seed: give a non-negative integer")
        for trait in ("max_elements", "max_displays"):
            value = getattr(magics, trait)
            if value is not None and value < 1:
                raise UsageError(f"EinsumGradMagics.{trait} = {value} is not a limit: give a "
                                 "positive integer")
        self.sizes = _usage(parse_sizes, _unquoted(args.sizes))
        self.expects = [_parse_expect(e) for e in args.expect]
        self.output = _output_name(_unquoted(args.output), self.ns)
        if self.output and cell and self.output in _bound_by(magics.shell.transform_cell(cell)):
            raise UsageError(f"-o {self.output}: the cell assigns {self.output}, which the result "
                             "would overwrite: choose another name")
        from .check.report import TOLERANCES

        if self.dtype not in TOLERANCES:
            where = "--dtype" if args.dtype else "EinsumGradMagics.dtype ="
            raise UsageError(f"{where} {self.dtype!r} is not one the check supports: "
                             + ", ".join(TOLERANCES))
        self.ran = False                 # whether the cell's code ran (set by run())
        self.product = False             # the cell is one product written without einsum

    def run(self):
        """Run the magic (the cell's code without an event loop; see :meth:`run_async`)."""
        return _sync(self.run_async())

    async def run_async(self):
        if self.args.grade is not None:          # a hand-written backward cell, graded
            from .grading import grade_cell

            return await grade_cell(self.shell, _unquoted(self.args.grade), self.cell,
                                    self.magics.max_elements, self._view())
        calls, notes, note_lines, code = self._calls()
        calls, skipped = self._valid(calls)
        notes += skipped
        observing = code and not self.args.no_run and not self.product
        if not observing:       # else the run decides which einsums there are (_observed)
            targets = self._expect_targets(calls, [self._derive(c) for c in calls])
            self._check_sizes(calls)
        if code and not self.args.no_run:
            from .check.report import MAX_ELEMENTS
            from .cell.run import run_code

            ran = await run_code(self.shell, self.cell, self.magics.max_elements or MAX_ELEMENTS)
            if ran.error is not None:   # IPython has shown the error
                raise CellCodeFailed(f"the cell's code raised {type(ran.error).__name__}, so "
                                     "its einsums were not analysed")
            self.ran = True
        if observing:
            analyses, operands, notes = self._observed(ran, calls, notes, note_lines)
        else:
            analyses = [self._analyse(c, targets.get(k, ()), k + 1) for k, c in enumerate(calls)]
            operands = [self._operands(a.call) for a in analyses]
        analyses = self._checked(analyses, operands)
        view = self._view()
        from .views.widget import GradDisplay

        for k, a in enumerate(analyses):
            display(GradDisplay(a, k, len(analyses), tab=verdict(a).tab, view=view))
            if view == "widget":
                self._live(a)
        hidden = any(answer_hidden(a) for a in analyses)   # an exercise is open or wrong
        backward = self._cell_backward(show=not hidden) if code else None
        if not analyses and not notes and code and backward is None:
            notes = ("no einsum call found in the cell",)
        if notes:
            from .views.text import render_notes

            print(render_notes(notes))
        if self.output:
            _store(self.ns, self.output, EinsumGradResult(tuple(analyses), tuple(notes), backward))
        wrong = [e for a in analyses for e in a.expectations if e.failed]
        if wrong:
            from .views.text import expect_line

            raise ExpectationFailed("; ".join(
                "--" + expect_line(e, len(analyses)) for e in wrong))
        failed = [(f"einsum {k + 1} ({a.call.where or f'line {a.call.line}'}): "
                   if len(analyses) > 1 else "") + a.check.summary
                  for k, a in enumerate(analyses) if a.check is not None and not a.check.passed]
        if backward is not None and backward.check is not None and not backward.check.passed:
            failed.append(backward.check.summary)
        if failed:
            raise CheckFailed("; ".join(failed))
        return None

    def _valid(self, calls):
        """The calls whose equation derives; a bad one in a ``try`` block is left to the run."""
        out, notes = [], []
        for c in calls:
            try:
                self._derive(c)
            except UsageError as e:
                if not c.guarded:
                    raise
                notes.append(f"line {c.line}: {' '.join(c.source.split())}: inside a try "
                             f"block, left to the run ({str(e).splitlines()[0]})")
                continue
            out.append(c)
        return out, tuple(notes)

    def _output_name(self, call) -> str:
        """The output's name for a call not assigned to a name: the next letter, unless taken."""
        from .core.derivation import default_names

        name = default_names(len(call.names))[1]
        if name not in call.names and name not in self.ns:
            return name
        name = "out"
        while name in call.names or name in self.ns:
            name += "_"
        return name

    def _observed(self, ran, calls, notes, note_lines):
        """(analyses, operands, notes) of the call sites the run observed, in execution order."""
        from .cell.sites import site_call, site_source, sizes_note

        cells = dict(getattr(self.shell.compile, "_filename_map", {}))
        cap = self.magics.max_displays
        analyses, operands, extra = [], [], []
        for site in ran.sites[:cap]:
            try:
                call = site_call(site, calls, ran.filename, cells)
            except EinsumError as e:      # an equation the library took but we cannot read
                extra.append(f"line {site.line} of {site.filename}: not analysed "
                             f"({str(e).splitlines()[0]})")
                continue
            if call.output is None:
                call = dataclasses.replace(call, output=self._output_name(call))
            try:
                d = derive(call.equation, call.names, call.output, site.shapes)
            except EinsumError as e:
                place = call.where or f"line {call.line}"
                extra.append(f"{place}: {' '.join(call.source.split())}: not analysed "
                             f"({call.restate(e).reason})")
                continue
            fixed = fixed_letters(d, range(len(call.names)))    # the run fixed every size
            analyses.append(Analysis(call, d, sizes_note(site), fixed=fixed))
            kept = all(a is not None for a in site.arrays)
            operands.append(list(site.arrays) if kept else None)     # None: random stand-ins
        if len(ran.sites) > cap:
            extra.append(f"{len(ran.sites) - cap} more einsum call sites ran; the first {cap} "
                         "are shown (EinsumGradMagics.max_displays)")
        seen = {id(c) for site in ran.sites
                for c in [site_source(site, calls, ran.filename)] if c is not None}
        lines = {site.line for site in ran.sites if site.filename == ran.filename}
        kept = [n for n, line in zip(notes, (*note_lines, *[None] * len(notes)))
                if line is None or line not in lines]
        kept += [f"line {c.line}: {' '.join(c.source.split())}: did not run (or raised); "
                 "not analysed" for c in calls if id(c) not in seen]
        self._check_sizes([*calls, *(a.call for a in analyses)])
        targets = self._expect_targets([a.call for a in analyses],
                                       [a.derivation for a in analyses])
        analyses = [dataclasses.replace(a, expectations=tuple(
            dataclasses.replace(judge(a.derivation, target, proposal, self.seed), einsum=k + 1)
            for target, proposal in targets.get(k, ()))) for k, a in enumerate(analyses)]
        return analyses, operands, tuple(kept + extra)

    # -- 1. the calls -----------------------------------------------------------------

    def _calls(self):
        """(calls, notes, the line of each note, whether there is code to run)."""
        equation = " ".join(self.args.equation)
        if len(equation) > 1 and equation[0] in "'\"" and equation[-1] == equation[0]:
            equation = equation[1:-1]            # magic_arguments keeps quotes
        if self.cell is None:
            if not equation:
                raise UsageError("give an equation: %einsum_grad ij,jk->ik (or use %%einsum_grad "
                                 "on top of a cell)")
            return (_usage(cells.equation_call, equation),), (), (), False
        if equation:
            raise UsageError(f"%%einsum_grad takes no equation on its line ({equation!r}): put "
                             "it in the cell, or use the line magic %einsum_grad")
        only = cells.cell_equation(self.cell, self.ns)
        if only is not None:
            return (_usage(cells.equation_call, only),), (), (), False
        try:
            source = self.shell.transform_cell(self.cell)
            found = cells.find_calls(source, self.ns)
        except SyntaxError:
            return (), (), (), True      # the run reports the syntax error as IPython would
        except EinsumError as e:
            raise UsageError(f"einsum_grad: {e}") from None
        if not found.calls:            # C = A @ B alone: displayed as the einsum it is
            from .chain.products import single_product
            from .chain.result import or_none

            product = or_none(single_product, source, self.ns)
            if product is not None:
                self.product = True      # no einsum runs: its arrays are the namespace's
                return (product,), found.notes, found.note_lines, True
        return found.calls, found.notes, found.note_lines, True

    def _derive(self, call, shapes=None):
        try:
            return derive(call.equation, call.names, call.output, shapes)
        except EinsumError as e:
            where = "" if call.style == "equation" else f"line {call.line}, {call.source}: "
            raise UsageError(f"einsum_grad: {where}{call.restate(e)}") from None

    def _expect_targets(self, calls, derivations) -> dict[int, tuple]:
        """Call index → ((target, proposal), …) for every --expect; UsageError if unknown.

        ``--expect 2:A=…`` names the einsum (1-based, in the order of the displays); without
        a number the name must be an operand of one einsum only.
        """
        out: dict[int, list] = {}
        for number, key, proposal in self.expects:
            spec = f"{number}:{key}" if number else key
            if number is not None and not 1 <= number <= len(derivations):
                raise UsageError(f"--expect {spec}: the cell has {len(derivations)} einsum(s), "
                                 f"not {number}")
            hits = []
            for k, d in enumerate(derivations):
                if number is not None and k != number - 1:
                    continue
                targets = {g.target for g in d.grads}
                if key in targets:
                    hits.append((k, key))
                elif key in d.names:
                    if d.names.count(key) > 1:
                        parts = ", ".join(g.target for g in d.grads if g.wrt == key)
                        raise UsageError(f"--expect {key}: {key} is passed {d.names.count(key)} "
                                         f"times; name one position: {parts}")
                    hits.append((k, next(g.target for g in d.grads if g.wrt == key)))
            if not hits:
                scope = derivations if number is None else [derivations[number - 1]]
                names = sorted({n for d in scope for n in d.names})
                where = "the cell's einsums" if number is None else f"einsum {number}"
                raise UsageError(f"--expect names {key!r}, which is no operand of {where} "
                                 f"(operands: {', '.join(names) or 'none'})")
            if len(hits) > 1:
                which = ", ".join(str(k + 1) for k, _ in hits)
                raise UsageError(f"--expect {key}: {key} is an operand of einsums {which}; name "
                                 f"one, e.g. --expect {hits[0][0] + 1}:{key}=…")
            for k, target in hits:
                out.setdefault(k, []).append((target, proposal))
        return {k: tuple(v) for k, v in out.items()}

    def _check_sizes(self, calls) -> None:
        for key in self.sizes:
            if not any(key in _letter_keys(c) for c in calls):
                raise UsageError(f"--sizes names {key!r}, which is no letter (or einops axis) of "
                                 "the cell's einsums")

    # -- 2. analysis ------------------------------------------------------------------

    def _analyse(self, call, expects, number=None) -> Analysis:
        shapes, sizes_from = self._shapes(call)
        unread = call.unread(self.ran)
        if unread:
            sizes_from = f"{sizes_from}; {unread}"
        d = self._derive(call, shapes)
        verdicts = tuple(dataclasses.replace(judge(d, target, proposal, self.seed), einsum=number)
                         for target, proposal in expects)
        fixed = fixed_letters(d, self._arrays(call)) if self.ran else ()
        return Analysis(call, d, sizes_from, expectations=verdicts, fixed=fixed)

    def _arrays(self, call) -> dict[int, object]:
        """Position → the user's array, for operands the call may look up that have a shape."""
        out = {}
        for k, (name, lookup) in enumerate(zip(call.names, call.lookups(self.ran))):
            if not lookup:
                continue
            value = self.ns.get(name)
            shape = getattr(value, "shape", None)
            if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
                out[k] = value
        return out

    def _operands(self, call) -> list:
        """The user's arrays of a call that did not run, when every operand has one."""
        arrays = self._arrays(call)
        return [arrays[k] for k in range(len(call.names))] if len(arrays) == len(call.names) else []

    def _shapes(self, call):
        """Operand shapes: the user's arrays, then --sizes, then distinct defaults."""
        given = _letter_keys(call)
        sizes = {given[key]: n for key, n in self.sizes.items() if key in given}
        arrays = {k: tuple(x.shape) for k, x in self._arrays(call).items()}
        return shapes_from(call.equation, arrays, sizes)

    # -- 3. the check -----------------------------------------------------------------

    def _checked(self, analyses, operands):
        if not analyses:
            return analyses
        if not self.check_on:
            why = "--no-check" if self.args.no_check else "EinsumGradMagics.check = False"
            return [dataclasses.replace(a, check_note=f"skipped ({why})") for a in analyses]
        progress = self._progress(len(analyses))
        try:
            out = []
            for k, a in enumerate(analyses):
                if progress is not None:
                    from .views.html import progress as progress_html

                    progress[0].value = progress_html(len(analyses), k)
                out.append(self._check_one(a, operands[k]))
            return out
        finally:
            if progress is not None:
                widget, handle = progress
                handle.update({"text/html": ""}, raw=True)
                widget.close()

    def _check_one(self, a, operands):
        """``a`` with its check; ``operands`` None: the run's arrays were not kept (say so)."""
        from .check.report import check

        try:
            report = check(a.derivation, *(operands or ()), seed=self.seed, dtype=self.dtype,
                           max_elements=self.magics.max_elements)
            if operands is None and not report.stand_ins:
                report = dataclasses.replace(report, stand_ins="the run's arrays were not kept: "
                                             "over the element budget, or not copyable")
        except EinsumError as e:    # without JAX, check() falls back to NumPy: no ImportError
            return dataclasses.replace(a, check_note=f"could not run: {str(e).splitlines()[0]}")
        return dataclasses.replace(a, check=report)

    def _cell_backward(self, show: bool = True):
        """The whole cell's backward (:mod:`einsum_magic.chain`), displayed; None if none.

        ``show=False`` (an exercise of the cell is open or wrong: the cell's backward would
        give its answer away) says so in one line instead of displaying it.
        """
        from .chain.result import for_cell
        from .views.chain import CellBackwardDisplay

        why = "--no-check" if self.args.no_check else "EinsumGradMagics.check = False"
        backward, note = for_cell(self.shell.transform_cell(self.cell), self.ns, ran=self.ran,
                                  sizes=self.sizes, check=self.check_on, seed=self.seed,
                                  skipped=why)
        if note:
            from .views.text import render_notes

            print(render_notes((note,)))
        if backward is not None and show:
            display(CellBackwardDisplay(backward, view=self._view()))
        elif backward is not None:
            print("einsum_grad: the cell's backward is shown once its exercise is solved")
        return backward

    # -- 4. display -------------------------------------------------------------------

    def _view(self) -> str:
        from .views.frontend import choose

        return choose(self.magics.view, getattr(self.shell, "kernel", None) is not None)

    def _live(self, a) -> None:
        """Display the live widgets of ``a`` under its page (nbval compares nothing of them)."""
        from .views.widget import live, live_bundle

        widget = live(a)
        if widget is not None:
            display(live_bundle(widget), raw=True)

    def _progress(self, count: int):
        """(widget, display handle) of the progress line, or None without a widget frontend.

        A Jupyter kernel without widgets gets the same empty ``text/html`` output, so that
        notebooks saved from any frontend hold the same outputs for nbval.
        """
        view = self._view()
        if view == "html" and getattr(self.shell, "kernel", None) is not None:
            display({"text/html": ""}, raw=True)
        if view not in ("widget", "progress"):
            return None
        from .views.widget import WIDGET_MIME, progress_widget

        widget = progress_widget(count)
        view = widget._repr_mimebundle_()[WIDGET_MIME]
        handle = display({"text/html": "", WIDGET_MIME: view}, raw=True, display_id=True)
        return widget, handle


def _sync(coroutine):
    """Run a coroutine that never waits on an event loop (IPython's pseudo-sync runner)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise UsageError("this %%einsum_grad cell awaits: run it as a cell (IPython rewrites it "
                     "to run on its event loop), not through run_cell_magic")


def _usage(fn, *args):
    """``fn(*args)``, with an :class:`EinsumError` turned into IPython's ``UsageError``."""
    try:
        return fn(*args)
    except EinsumError as e:
        raise UsageError(f"einsum_grad: {e}") from None


def _unquoted(value: str | None) -> str | None:
    """An option's value without the quotes around it (magic_arguments keeps them).

    >>> _unquoted("'i=2'"), _unquoted('"res"'), _unquoted("res"), _unquoted(None)
    ('i=2', 'res', 'res', None)
    """
    if value is not None and len(value) > 1 and value[0] in "'\"" and value[-1] == value[0]:
        return value[1:-1]
    return value


def _output_name(name: str | None, ns: dict) -> str | None:
    """The ``-o`` name, refused (``UsageError``) unless it is free or holds an earlier result.

    The magic never overwrites a user's variable, a module, a builtin or IPython's own names.
    """
    if name is None:
        return None
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"-o takes a variable name, not {name!r}")
    if name in ns and not _is_result(ns[name]):
        kind = type(ns[name]).__name__
        raise UsageError(f"-o {name}: {name} already holds a value of type {kind}, which the "
                         "result would overwrite: choose a free name")
    if name not in ns and hasattr(builtins, name):
        raise UsageError(f"-o {name}: {name} is a Python builtin, which the result would shadow: "
                         "choose a free name")
    return name


def _is_result(value) -> bool:
    """Whether ``value`` is an earlier result of the magic (also from before a module reload)."""
    kind, result = type(value), EinsumGradResult
    return isinstance(value, result) or (kind.__name__, kind.__module__) == (result.__name__,
                                                                            result.__module__)


def _bound_by(source: str) -> set[str]:
    r"""The names a cell's code binds at its top level or anywhere (``=``, ``for``, ``def``,
    ``import``, …); empty when it does not parse (IPython reports that when it runs).

    >>> sorted(_bound_by("C = f(A)\nfor i in x: pass\nimport numpy as np\ndef g(): y = 1"))
    ['C', 'g', 'i', 'np', 'y']
    """
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _store(ns: dict, name: str, result: EinsumGradResult) -> None:
    """``ns[name] = result``, unless the cell's own code has bound ``name`` meanwhile."""
    if name in ns and not _is_result(ns[name]):
        kind = type(ns[name]).__name__
        raise UsageError(f"-o {name}: the cell assigned {name} a value of type {kind}, which the "
                         "result would overwrite: it was not stored; choose a free name")
    ns[name] = result


def _letter_keys(call) -> dict[str, str]:
    """The --sizes keys a call understands → its letters (einops: axis names; else letters)."""
    if call.style == "einops":
        return {name: letter for letter, name in call.axes}
    letters = parse(call.equation).letters
    return {c: c for c in letters}


def _parse_expect(text: str) -> tuple[int | None, str, str]:
    """``[N:]NAME=SPEC`` → (N or None, NAME, SPEC); quotes around the whole or SPEC are dropped.

    >>> _parse_expect("'2: A = ik, jk -> ij'")
    (2, 'A', 'ik, jk -> ij')
    """
    value = _unquoted(text.strip()).strip()
    head, eq, proposal = value.partition("=")
    number, colon, key = head.partition(":")
    if not colon:
        number, key = "", head
    number, key, proposal = number.strip(), key.strip(), _unquoted(proposal.strip()).strip()
    example = "e.g. A=ik,jk->ij, 2:A=ik,jk->ij for the second einsum, or A=? for an exercise"
    if not eq or not key.isidentifier() or keyword.iskeyword(key) or not proposal:
        raise UsageError(f"--expect is written [N:]NAME=EINSUM, {example} (got {text!r})")
    if colon and not (number.isdigit() and int(number) >= 1):
        raise UsageError(f"--expect {text!r}: before ':' comes the einsum's number, 1 for the "
                         f"first ({example})")
    return (int(number) if colon else None), key, proposal


def load_ipython_extension(ipython) -> None:
    """Register :class:`EinsumGradMagics` (``%load_ext einsum_magic``); idempotent."""
    ipython.configurables[:] = [c for c in ipython.configurables
                                if type(c).__name__ != EinsumGradMagics.__name__]
    ipython.register_magics(EinsumGradMagics(shell=ipython))
    from .cell.run import await_transform

    cleanup = ipython.input_transformers_cleanup
    cleanup[:] = [t for t in cleanup if not getattr(t, "einsum_magic", False)]
    cleanup.append(await_transform(ipython))
