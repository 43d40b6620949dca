"""One run of the ``%%einsum_grad`` magic, step by step: the arrow options + cell → displays.

This module owns the order of the magic's steps; each step is another module's job:

1. **read** the cell once (:func:`einsum_magic.cell.calls.find_calls`: one parse of the
   source gives the einsum calls, their names and the names the cell binds). A call
   certain to run (a top-level straight-line statement) is derived without shapes
   *before anything runs*: a bad literal equation there is an error and the cell's code
   is not run; any other call (in a function, a branch, a loop, a ``try``) is left to the
   run: only a call the run reaches can fail the cell;
2. **run** the code once (:func:`einsum_magic.cell.run.run_code`), as IPython runs a cell,
   while :mod:`einsum_magic.cell.capture` observes every einsum call that executes. If it
   raises, IPython has shown the user's error: nothing is analysed, and the cell fails
   with the user's exception (``sys.last_value``, ``%tb`` and ``%debug`` see the user's
   error and frames, as without the magic);
3. **join** each call site that ran (:mod:`einsum_magic.cell.sites`; spellings of one
   einsum at one place are one site) with the source's call at its place, or, where
   nothing ran (``--no-run``, an equation-only cell, the line magic), take the source's
   calls with the user's arrays where :meth:`Call.lookups
   <einsum_magic.cell.calls.Call.lookups>` allows it, ``--sizes`` and distinct defaults.
   Every product the record of the run holds (``x @ W1``, ``F.linear``, NumPy's ``@``:
   :func:`einsum_magic.chain.faces.products`) joins them as the einsum it is, in the order
   of the run, except where an einsum the capture observed ran (no display twice) and under
   ``--exercise``; ``max_displays`` caps them all;
4. **derive** each (:func:`einsum_magic.derive`) and grade its ``--expect`` proposals
   (:func:`einsum_magic.expect.judge`; ``2:A=…`` counts the displays in execution order);
   while an exercise is open, every display of the cell that would give its answer away
   is hidden too;
5. **check** each against JAX (:func:`einsum_magic.check.report.check`) on the arrays it
   received, with a progress widget where a live frontend shows one;
6. **display** one :class:`~einsum_magic.views.widget.GradDisplay` per einsum, in order
   (the HTML page everywhere; under it, where :mod:`einsum_magic.views.frontend` expects
   a working widget manager, live widgets), then the backward of the whole cell
   (:mod:`einsum_magic.chain`, from the record of the run that
   :func:`einsum_magic.chain.recorders.recording` keeps; shown by :mod:`einsum_magic.views.chain`);
7. **store** ``-o NAME`` (:class:`~einsum_magic.cell.analysis.EinsumGradResult`) and
   **raise** :class:`ExpectationFailed` for a wrong ``--expect`` and :class:`CheckFailed`
   for a failed check (both ``AssertionError``), after the displays, so that nbval and
   nbmake see the cell fail.

nbval compares the first display message of each output and ignores
``update_display_data``; it compares ``text/plain`` and ``text/html`` and skips the
widget-view MIME type. So every display is published once, after its check, with its
outcome already in ``text/plain``. While the check runs, a live frontend shows a
progress widget in an output whose compared data is ``{'text/html': ''}`` both when
first displayed and after its update: it leaves no difference between runs. A kernel
whose frontend gets no widgets (Colab, VS Code) publishes the same empty
``{'text/html': ''}`` in that place, and the live widgets under each page carry nothing
but the widget view: so what nbval compares does not depend on the frontend.

A mistake of the user's in the magic's own terms (a bad literal equation, an ``--expect``
naming no operand, ``-o`` over a name the cell assigns) raises
:class:`~einsum_magic.errors.EinsumError` with the one line to show; the magic turns it into
IPython's ``UsageError``. Nothing is added to the user's namespace but what the cell's own
code assigns and ``-o NAME``.
"""

from __future__ import annotations

import dataclasses
import re

from IPython.display import display

from .cell import calls as cells
from .cell.analysis import Analysis, EinsumGradResult, is_result
from .cell.run import CellCodeFailed, fail_with, transformed
from .core.derivation import default_names, derive
from .core.equation import parse
from .core.shapes import shapes_from
from .errors import EinsumError
from .expect import judge
from .views.sliders import fixed_letters
from .views.verdict import answer_hidden, verdict

__all__ = ["Run", "ExpectationFailed", "CheckFailed", "CellCodeFailed"]


class ExpectationFailed(AssertionError):
    """A ``--expect`` proposal is wrong: the cell fails, showing this one line (no traceback)."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]


class CheckFailed(AssertionError):
    """A derived gradient disagrees with ``jax.vjp``: the cell fails, showing this one line."""

    def _render_traceback_(self):
        return [f"{type(self).__name__}: {self}"]



class Run:
    """One use of the magic on one cell (``None`` for the line magic): its steps, in order."""

    def __init__(self, shell, options, cell: str | None):
        self.shell = shell
        self.options = options
        self.cell = cell
        self.ns = shell.user_ns
        self.source = None               # the cell as IPython transforms it (read once)
        self.ran = False                 # whether the cell's code ran
        self.recording = None            # the record of the run (chain.record)
        self.product = False             # the cell is one product written without einsum
        self._unrun: dict[str, str] = {}  # a bad equation's note → what it says once unrun

    async def run_async(self):
        o = self.options
        if o.grade is not None:             # a hand-written backward cell, graded instead
            from .grading import grade_cell

            return await grade_cell(self.shell, o.grade, self.cell, o.max_elements, self._view())
        # 1. read the source once; a bad equation certain to run stops here
        calls, notes, note_lines, code = self._read()
        calls, left, left_lines = self._valid(calls)
        notes, note_lines = notes + left, note_lines + left_lines
        observing = code and o.run and not self.product
        if not observing:       # else the run decides which einsums there are (_observed)
            targets = self._expect_targets(calls, [self._derive(c) for c in calls])
            self._check_sizes(calls)
        # 2. run
        if code and o.run:
            from .cell.run import run_code
            from .chain.recorders import recording
            from .check.report import MAX_ELEMENTS

            with recording(self.ns, source=self.source) as self.recording:   # cell backward
                ran = await run_code(self.shell, self.cell, o.max_elements or MAX_ELEMENTS,
                                     source=self.source)
            if ran.error is not None:   # IPython has shown the user's error
                return self._failed(ran.error)
            self.ran = True
        # 3-4. join what ran with the source, derive, grade
        if observing:
            analyses, operands, notes = self._observed(ran, calls, notes, note_lines)
        else:
            analyses = [self._analyse(c, targets.get(k, ()), k + 1) for k, c in enumerate(calls)]
            operands = [self._operands(a.call) for a in analyses]
        analyses = _hide_answers(analyses)
        # 5. check; 6. display
        analyses = self._checked(analyses, operands)
        self._display(analyses)
        hidden = any(answer_hidden(a) for a in analyses)   # an exercise is open or wrong
        backward = self._cell_backward(show=not hidden and not o.exercise) if code else None
        if not analyses and not notes and code and backward is None:
            notes = ("no einsum call found in the cell",)
        if notes:
            from .views.text import render_notes

            print(render_notes(notes))
        # 7. store, raise
        if o.output:
            self._store(EinsumGradResult(tuple(analyses), tuple(notes), backward))
        self._raise(analyses, backward)
        return None

    # -- 1. read ------------------------------------------------------------------------

    def _read(self):
        """(calls, notes, the line of each note, whether there is code to run)."""
        equation = self.options.equation
        if self.cell is None:
            if not equation:
                raise EinsumError("give an equation: %einsum_grad ij,jk->ik (or use "
                                  "%%einsum_grad on top of a cell)")
            return (self._said(cells.equation_call, equation),), (), (), False
        if equation:
            raise EinsumError(f"%%einsum_grad takes no equation on its line ({equation!r}): "
                              "put it in the cell, or use the line magic %einsum_grad")
        only = cells.cell_equation(self.cell, self.ns)
        if only is not None:
            return (self._said(cells.equation_call, only),), (), (), False
        self.source = transformed(self.shell, self.cell)
        try:
            found = cells.find_calls(self.source, self.ns)
        except SyntaxError:
            return (), (), (), True      # the run reports the syntax error as IPython would
        except EinsumError as e:
            raise EinsumError(f"einsum_grad: {e}") from None
        output = self.options.output
        if output and output in found.bound:
            raise EinsumError(f"-o {output}: the cell assigns {output}, which the result "
                              "would overwrite: choose another name")
        if not found.calls:            # C = A @ B alone: displayed as the einsum it is
            from .chain.text.products import single_product
            from .chain.text.result import or_none

            product = or_none(single_product, self.source, self.ns)
            if product is not None:
                self.product = True      # no einsum runs: its arrays are the namespace's
                return (product,), found.notes, found.note_lines, True
        return found.calls, found.notes, found.note_lines, True

    @staticmethod
    def _said(fn, *args):
        try:
            return fn(*args)
        except EinsumError as e:
            raise EinsumError(f"einsum_grad: {e}") from None

    def _valid(self, calls):
        """(the calls whose equation derives, notes, their lines): a bad equation of a call
        that is not certain to run is left to the run (noted unless it runs)."""
        out, notes, lines = [], [], []
        for c in calls:
            try:
                self._derive(c)
            except EinsumError as e:
                if c.certain and not c.guarded:
                    raise
                why = ("inside a try block" if c.guarded else f"inside a {c.scope}"
                       if c.scope != "cell" else "in a branch or loop")
                reason = str(e).splitlines()[0].removeprefix(
                    f"einsum_grad: line {c.line}, {c.source}: ")
                said = f"line {c.line}: {' '.join(c.source.split())}: {why}, "
                notes.append(f"{said}left to the run ({reason})")
                lines.append(c.line)
                # what the note says once the run has not reached it (_observed)
                self._unrun[notes[-1]] = (f"{said}did not run (or raised); not analysed (its "
                                          f"equation: {reason})")
                continue
            out.append(c)
        return out, tuple(notes), tuple(lines)

    def _derive(self, call, shapes=None):
        try:
            return derive(call.equation, call.names, call.output, shapes)
        except EinsumError as e:
            where = "" if call.style == "equation" else f"line {call.line}, {call.source}: "
            raise EinsumError(f"einsum_grad: {where}{call.restate(e)}") from None

    # -- 2. the user's error ------------------------------------------------------------

    def _failed(self, error: BaseException):
        """The cell fails with the user's own ``error``, which IPython has shown.

        Raising anything here would make IPython show it too and point ``sys.last_value``,
        ``%tb`` and ``%debug`` at the magic: the cell's result takes the user's error instead.
        """
        from .views.text import render_notes

        print(render_notes((f"the cell's code raised {type(error).__name__}, so its einsums "
                            "were not analysed",)))
        fail_with(self.shell, error)
        return None

    # -- 3-4. join, derive, grade -------------------------------------------------------

    def _output_name(self, call) -> str:
        """The output's name for a call not assigned to a name: the next letter, unless taken."""
        name = default_names(len(call.names))[1]
        if name not in call.names and name not in self.ns:
            return name
        name = "out"
        while name in call.names or name in self.ns:
            name += "_"
        return name

    def _observed(self, ran, calls, notes, note_lines):
        """(analyses, operands, notes) of the call sites the run observed, in execution order."""
        from .cell.sites import merged, site_call, site_source, sizes_note, unseen
        from .chain.faces import Product

        cells_ = dict(getattr(self.shell.compile, "_filename_map", {}))
        cap = self.options.max_displays
        sites = merged(ran.sites)
        shown = self._with_products(sites, ran.filename)
        analyses, operands, extra = [], [], []
        for site in shown[:cap]:
            if isinstance(site, Product):          # a product of the record (x @ W1)
                self._product(site, analyses, operands, extra)
                continue
            try:
                call = site_call(site, calls, ran.filename, cells_)
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
        if len(shown) > cap:
            extra.append(f"{len(shown) - cap} more einsum call sites ran; the first {cap} "
                         "are shown (EinsumGradMagics.max_displays)")
        seen = {id(c) for site in sites
                for c in [site_source(site, calls, ran.filename)] if c is not None}
        lines = {site.line for site in sites if site.filename == ran.filename}
        kept = [self._unrun.get(n, n) for n, line in zip(notes, (*note_lines, *[None] * len(notes)))
                if line is None or line not in lines]
        threads = re.search(r"\b(Thread|\w*Executor|Pool)\(|threading", self.cell) is not None
        kept += [f"line {c.line}: {' '.join(c.source.split())}: {unseen(c, threads)}"
                 for c in calls if id(c) not in seen]
        self._check_sizes([*calls, *(a.call for a in analyses)])
        extra += self._sizes_unused(analyses)
        targets = self._expect_targets([a.call for a in analyses],
                                       [a.derivation for a in analyses])
        analyses = [dataclasses.replace(a, expectations=self._judged(a, targets.get(k, ()),
                                                                     k + 1))
                    for k, a in enumerate(analyses)]
        return analyses, operands, tuple(kept + extra)

    def _with_products(self, sites, cell_file) -> list:
        """The einsum ``sites`` and, in the order of the run, every product the record holds
        (``x @ W1``, ``F.linear``: :func:`einsum_magic.chain.faces.products`) as the einsum it
        is; none where an exercise of the whole backward is open (``--exercise``: they would
        give its answer away) or the record stopped."""
        rec = self.recording
        if rec is None or rec.stopped or not rec.nodes or self.options.exercise:
            return list(sites)
        from .chain.faces import einsum_places, order, products

        found = products(rec, self.source, self.ns, einsum_places(sites, cell_file))
        return order(sites, found, rec, cell_file) if found else list(sites)

    def _product(self, p, analyses, operands, notes) -> None:
        """Append the analysis of product ``p`` (a :class:`~einsum_magic.chain.faces.Product`)."""
        call = p.call
        if call.output is None:
            call = dataclasses.replace(call, output=self._output_name(call))
        try:
            d = derive(call.equation, call.names, call.output, p.shapes)
        except EinsumError as e:
            notes.append(f"{call.where or f'line {call.line}'}: {call.source}: not analysed "
                         f"({str(e).splitlines()[0]})")
            return
        fixed = fixed_letters(d, range(len(call.names)))
        analyses.append(Analysis(call, d, p.sizes_from, fixed=fixed, equals=p.equals))
        kept = all(a is not None for a in p.arrays)
        operands.append(list(p.arrays) if kept else None)

    def _judged(self, a, expects, number) -> tuple:
        return tuple(dataclasses.replace(judge(a.derivation, target, proposal,
                                               self.options.seed), einsum=number)
                     for target, proposal in expects)

    def _expect_targets(self, calls, derivations) -> dict[int, tuple]:
        """Call index → ((target, proposal), …) for every --expect; EinsumError if unknown.

        ``--expect 2:A=…`` names the einsum (1-based, in the order of the displays); without
        a number the name must be an operand of one einsum only.
        """
        out: dict[int, list] = {}
        for number, key, proposal in self.options.expects:
            spec = f"{number}:{key}" if number else key
            if number is not None and not 1 <= number <= len(derivations):
                raise EinsumError(f"--expect {spec}: the cell has {len(derivations)} einsum(s), "
                                  f"not {number}")
            hits = []
            for k, d in enumerate(derivations):
                if number is not None and k != number - 1:
                    continue
                if key in {g.target for g in d.grads}:
                    hits.append((k, key))
                elif key in d.names:
                    if d.names.count(key) > 1:
                        parts = ", ".join(g.target for g in d.grads if g.wrt == key)
                        raise EinsumError(f"--expect {key}: {key} is passed "
                                          f"{d.names.count(key)} times; name one position: "
                                          f"{parts}")
                    hits.append((k, next(g.target for g in d.grads if g.wrt == key)))
            if not hits:
                scope = derivations if number is None else [derivations[number - 1]]
                names = sorted({n for d in scope for n in d.names})
                where = "the cell's einsums" if number is None else f"einsum {number}"
                raise EinsumError(f"--expect names {key!r}, which is no operand of {where} "
                                  f"(operands: {', '.join(names) or 'none'})")
            if len(hits) > 1:
                which = ", ".join(str(k + 1) for k, _ in hits)
                raise EinsumError(f"--expect {key}: {key} is an operand of einsums {which}; "
                                  f"name one, e.g. --expect {hits[0][0] + 1}:{key}=…")
            for k, target in hits:
                out.setdefault(k, []).append((target, proposal))
        return {k: tuple(v) for k, v in out.items()}

    def _check_sizes(self, calls) -> None:
        for key in self.options.sizes:
            if not any(key in _letter_keys(c) for c in calls):
                raise EinsumError(f"--sizes names {key!r}, which is no letter (or einops axis) "
                                  "of the cell's einsums")

    def _sizes_unused(self, analyses) -> list[str]:
        """A note for each ``--sizes`` letter whose size the run's arrays gave otherwise."""
        notes = []
        for key, n in self.options.sizes.items():
            ran = {a.derivation.sizes.get(_letter_keys(a.call)[key]) for a in analyses
                   if key in _letter_keys(a.call) and a.derivation.sizes}
            ran = sorted(m for m in ran if m is not None and m != n)
            if ran:
                notes.append(f"--sizes {key}={n}: not used, the run's arrays give {key}="
                             f"{', '.join(map(str, ran))} (--sizes sizes an einsum that does "
                             "not run: an equation cell, --no-run)")
        return notes

    def _analyse(self, call, expects, number=None) -> Analysis:
        shapes, sizes_from = self._shapes(call)
        unread = call.unread(self.ran)
        if unread:
            sizes_from = f"{sizes_from}; {unread}"
        d = self._derive(call, shapes)
        fixed = fixed_letters(d, self._arrays(call)) if self.ran else ()
        equals = f"the einsum {d.equation!r}" if self.product else ""   # C = A @ B alone
        a = Analysis(call, d, sizes_from, fixed=fixed, equals=equals)
        return dataclasses.replace(a, expectations=self._judged(a, expects, number))

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
        sizes = {given[key]: n for key, n in self.options.sizes.items() if key in given}
        arrays = {k: tuple(x.shape) for k, x in self._arrays(call).items()}
        return shapes_from(call.equation, arrays, sizes)

    # -- 5. check -----------------------------------------------------------------------

    def _checked(self, analyses, operands):
        if not analyses:
            return analyses
        if not self.options.check:
            return [dataclasses.replace(a, check_note=f"skipped ({self.options.skipped})")
                    for a in analyses]
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

        o = self.options
        try:
            report = check(a.derivation, *(operands or ()), seed=o.seed, dtype=o.dtype,
                           max_elements=o.max_elements)
            if operands is None and not report.stand_ins:
                report = dataclasses.replace(report, stand_ins="the run's arrays were not kept: "
                                             "over the element budget, or not copyable")
        except EinsumError as e:    # without JAX, check() falls back to NumPy: no ImportError
            return dataclasses.replace(a, check_note=f"could not run: {str(e).splitlines()[0]}")
        return dataclasses.replace(a, check=report)

    def _cell_backward(self, show: bool = True):
        """The whole cell's backward (:mod:`einsum_magic.chain`), displayed; None if none.

        ``show=False`` (an exercise of the cell is open or wrong, or the whole backward is one,
        ``--exercise``: showing it would give the answer away) says so in one line instead.
        """
        from .chain.result import for_cell
        from .views.chain import CellBackwardDisplay

        o = self.options
        backward, note = for_cell(self.recording, self.source, self.ns, ran=self.ran,
                                  sizes=o.sizes, check=o.check, seed=o.seed, skipped=o.skipped,
                                  output=o.output or "")
        if note:
            from .views.text import render_notes

            print(render_notes((note,)))
        if backward is not None and show:
            display(CellBackwardDisplay(backward, view=self._view()))
        elif backward is not None and o.exercise:
            verdict = f" ({backward.check.summary.split(',')[0]})" if backward.check else ""
            where = (f"%%einsum_grad --grade {o.output}" if o.output
                     else "%%einsum_grad --grade NAME, after storing this cell's result with -o NAME")
            print(f"einsum_grad: the cell's backward is an exercise{verdict}: it is derived and "
                  f"kept, not shown; write yours in a later cell under {where}")
        elif backward is not None:
            print("einsum_grad: the cell's backward is shown once its exercise is solved")
        return backward

    # -- 6. display ---------------------------------------------------------------------

    def _view(self) -> str:
        from .views.frontend import choose

        return choose(self.options.view, getattr(self.shell, "kernel", None) is not None)

    def _display(self, analyses) -> None:
        """One page per einsum, in order, each with its live widgets where they render."""
        from .views.widget import GradDisplay

        view = self._view()
        for k, a in enumerate(analyses):
            display(GradDisplay(a, k, len(analyses), tab=verdict(a).tab, view=view))
            if view == "widget":
                from .views.widget import live, live_bundle

                widget = live(a)       # nbval compares nothing of them
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

    # -- 7. store, raise ----------------------------------------------------------------

    def _store(self, result: EinsumGradResult) -> None:
        """``-o NAME``, unless the cell's own code has bound ``NAME`` meanwhile."""
        name = self.options.output
        if name in self.ns and not is_result(self.ns[name]):
            kind = type(self.ns[name]).__name__
            raise EinsumError(f"-o {name}: the cell assigned {name} a value of type {kind}, "
                              "which the result would overwrite: it was not stored; choose a "
                              "free name")
        self.ns[name] = result

    @staticmethod
    def _raise(analyses, backward) -> None:
        """A wrong ``--expect`` or a failed check fails the cell, after the displays."""
        wrong = [e for a in analyses for e in a.expectations if e.failed]
        if wrong:
            from .views.text import expect_line

            raise ExpectationFailed("; ".join(
                "--" + expect_line(e, len(analyses)) for e in wrong))
        failed = [(f"einsum {k + 1} ({a.call.where or f'line {a.call.line}'}): "
                   if len(analyses) > 1 else "") + a.check.summary
                  for k, a in enumerate(analyses) if a.check is not None and not a.check.passed]
        if backward is not None and backward.check is not None and backward.check.failed:
            failed.append(backward.check.summary)
        if failed:
            raise CheckFailed("; ".join(failed))


def _hide_answers(analyses) -> list:
    """Analyses whose display would answer an open exercise of another one, marked hidden.

    A display answers an exercise when one of its gradients is the exercise's answer up
    to a renaming of letters (``D = einsum('ij,jk->ik', E, F)`` beside ``--expect 1:A=?``).
    """
    answers = [(k, e.target, {g.relabelled for g in a.derivation.grads if g.target == e.target})
               for k, a in enumerate(analyses) for e in a.expectations if not e.passed]
    out = []
    for k, a in enumerate(analyses):
        relabelled = {g.relabelled for g in a.derivation.grads}
        by = next((f"{target} of einsum {j + 1}" for j, target, answer in answers
                   if j != k and answer & relabelled), "")
        out.append(dataclasses.replace(a, hidden_by=by) if by and not a.hidden_by else a)
    return out


def _letter_keys(call) -> dict[str, str]:
    """The --sizes keys a call understands → its letters (einops: axis names; else letters)."""
    if call.style == "einops":
        return {name: letter for letter, name in call.axes}
    letters = parse(call.equation).letters
    return {c: c for c in letters}
