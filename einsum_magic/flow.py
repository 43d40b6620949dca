"""One run of the ``%%einsum_grad`` magic, step by step (moved from magic.py)."""

from __future__ import annotations

import dataclasses

from IPython.core.error import UsageError
from IPython.display import display

from .cell import calls as cells
from .cell.analysis import Analysis, EinsumGradResult
from .core.derivation import derive
from .core.equation import parse
from .errors import EinsumError
from .expect import judge
from .core.shapes import parse_sizes, shapes_from
from .options import (bound_by as _bound_by, is_result as _is_result,
                      output_name as _output_name, parse_expect as _parse_expect,
                      unquoted as _unquoted)
from .views.sliders import fixed_letters
from .views.verdict import answer_hidden, verdict

__all__ = ["Run", "sync", "ExpectationFailed", "CheckFailed", "CellCodeFailed"]


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



Run = _Run
sync = _sync
