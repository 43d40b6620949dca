"""The views: plain text, HTML fragments and the widget, all pure functions of an Analysis."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from html import unescape

import ipywidgets
import numpy as np
import pytest

from einsum_magic import derive
from einsum_magic.views import html, text, widget
from einsum_magic.cell.analysis import Analysis
from einsum_magic.cell.calls import equation_call, find_calls
from einsum_magic.expect import judge
from einsum_magic.check.report import CheckReport, GradCheck, INSTALL, check
from einsum_magic.compute.cost import cost, lesson
from einsum_magic.compute.export import export


def visible(fragment: str) -> str:
    """The text a reader sees in an HTML fragment: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", fragment))


def rows(fragment: str) -> list[list[str]]:
    """The visible text of every table cell, row by row (header rows included)."""
    return [[visible(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", fragment)]


def tables(fragment: str) -> list[str]:
    return re.findall(r'<table class="eg-table">.*?</table>', fragment)


def analysis(source="C = np.einsum('ij,jk->ik', A, B)", shapes=((2, 3), (3, 4)), **kw):
    call = find_calls(source).calls[0]
    d = derive(call.equation, call.names, call.output, shapes)
    kw.setdefault("check_note", "skipped (--no-check)")
    return Analysis(call, d, "sizes from your arrays", **kw)


@pytest.fixture(scope="module")
def checked():
    a = analysis()
    return dataclasses.replace(a, check=check(a.derivation), check_note="")


def failing_report(a):
    grads = tuple(GradCheck(g.target, g.wrt, g.equation, k == 0, 0.5 if k else 0.0, 0.25, 0.0,
                            1e-4, 1e-30, "" if k == 0 else "values differ from jax.vjp")
                  for k, g in enumerate(a.derivation.grads))
    return CheckReport(False, grads, "NVIDIA Fake 1", "gpu", "float32", "highest", True, (),
                       {"derived_ms": 1.5, "jax_vjp_ms": 2.5, "compile_ms": 30.0},
                       platform=("Platform 'fake' is experimental",))


# -- text ------------------------------------------------------------------------------

def test_text_holds_forward_gradients_readings_shapes_and_check(checked):
    out = text.render(checked)
    lines = out.splitlines()
    assert lines[0] == "check PASS"                   # the verdict first
    assert lines[1] == "einsum_grad: np.einsum('ij,jk->ik', A, B)  (line 1)"
    assert "forward: C = np.einsum('ij,jk->ik', A, B)" in lines
    assert "shapes:  A (2, 3), B (3, 4) -> C (2, 4)  (sizes from your arrays)" in lines
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in lines
    assert "  reads dL_dA = dL_dC @ B.T; relabelled 'ij,kj->ik'; shape (2, 3), as A" in lines
    assert lines[-1] == "check: PASS, 2/2 gradients match jax.vjp (float32)"
    assert text.render(checked) == out


def test_text_has_no_device_timing_or_error_figures():
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    out = text.render(a)
    assert out.splitlines()[-1] == \
        "check: FAIL, 1/2 gradients match jax.vjp (float32); wrong: dL_dB"
    for leak in ("NVIDIA", "gpu", "ms", "0.5", "e-"):
        assert leak not in out


def test_text_of_the_generalized_rule_and_the_product_rule():
    trace = text.render(analysis("t = np.einsum('ii->', A)", ((3, 3),)))
    assert "dL_dA = np.einsum(',ij->ij', dL_dt, np.eye(A.shape[1]))" in trace
    assert "  - 'i' repeats in A" in trace
    twice = text.render(analysis("s = np.einsum('ij,ij->', A, A)", ((2, 3), (2, 3))))
    assert "product rule: dL_dA = dL_dA_1 + dL_dA_2" in twice


def test_text_for_einops_writes_the_gradients_back_with_axis_names():
    a = analysis('Y = einops.einsum(x, w, "batch d, d out -> batch out")', ((5, 3), (3, 7)))
    out = text.render(a)
    assert 'forward: Y = einops.einsum(x, w, "batch d, d out -> batch out")' in out
    assert 'dL_dx = einops.einsum(dL_dY, w, "batch out, d out -> batch d")' in out
    assert 'dL_dw = einops.einsum(dL_dY, x, "batch out, batch d -> d out")' in out
    assert "letters for the axes: b=batch, d=d, o=out" in out


def test_text_gradient_code_runs_and_matches_the_derivation():
    einops = pytest.importorskip("einops")
    a = analysis('Y = einops.einsum(x, w, "batch d, d out -> batch out")', ((5, 3), (3, 7)))
    rng = np.random.default_rng(0)
    ns = {"np": np, "einops": einops, "x": rng.standard_normal((5, 3)),
          "w": rng.standard_normal((3, 7)), "dL_dY": rng.standard_normal((5, 7))}
    want = a.derivation.vjp(ns["dL_dY"], ns["x"], ns["w"])
    for g, expected in zip(a.derivation.grads, want):
        exec(text.grad_code(a, g), ns)
        np.testing.assert_allclose(ns[g.target], expected)


def test_text_legend_expectations_and_several_einsums():
    a = analysis("C = np.einsum('ij,jk->ik', A.T, B)", ((2, 3), (3, 4)))
    a = dataclasses.replace(a, expectations=(judge(a.derivation, "dL_dB", "ik,ij->jk"),))
    out = text.render(a, index=1, count=2)
    assert out.splitlines()[1].endswith("(einsum 2 of 2, line 1)")
    assert "  op1 = A.T" in out
    assert "expect dL_dB = 'ik,ij->jk': correct: dL_dB = einsum('ik,ij->jk', dL_dC, op1)" in out


def test_text_of_an_equation_only_cell_and_of_jax_missing():
    d = derive("ij->j", shapes=((2, 3),))
    a = Analysis(equation_call("ij->j"), d, "sizes from defaults",
                 check_note=f"not run: the gradient check needs JAX: {INSTALL}")
    out = text.render(a)
    assert out.splitlines()[1] == "einsum_grad: 'ij->j'  (equation)"
    assert out.splitlines()[-1] == f"check: not run: the gradient check needs JAX: {INSTALL}"


# Cases for the cost and export views: aux tensors (eye, ones), a product rule, a size-1 axis,
# three operands, and FLOP counts past a thousand (the figures carry thousands separators).
COST_CASES = [
    ("C = np.einsum('ij,jk->ik', A, B)", ((2, 3), (3, 4))),
    ("t = np.einsum('ii,ij->j', M, v)", ((3, 3), (3, 4))),
    ("s = np.einsum('ij,ij->', A, A)", ((2, 3), (2, 3))),
    ("y = np.einsum('...ij,jk->...k', X, W)", ((1, 5, 6), (6, 7))),
    ("O = np.einsum('bhqk,bhkd->bhqd', P, V)", ((2, 4, 16, 16), (2, 4, 16, 8))),
    ("D = np.einsum('ij,jk,kl->il', A, B, C)", ((2, 30), (30, 3), (3, 40))),
]


@pytest.mark.parametrize("source, shapes", COST_CASES)
def test_text_has_the_cost_line_just_before_the_check_line(source, shapes):
    a = analysis(source, shapes)
    lines = text.render(a).splitlines()
    assert lines[-2] == lesson(a.derivation)
    assert lines[-1] == "check: skipped (--no-check)"
    assert sum(line.startswith("cost: ") for line in lines) == 1
    # deterministic: a fresh derivation, with the cost's caches cleared, gives the same text
    from einsum_magic.compute.cost import _cost, _tally
    from einsum_magic.compute.plan import _plan

    _cost.cache_clear()
    _plan.cache_clear()
    _tally.cache_clear()
    assert text.render(analysis(source, shapes)).splitlines() == lines


def test_text_without_shapes_has_no_cost_line():
    d = derive("...ij,jk->...ik")
    a = Analysis(equation_call("...ij,jk->...ik"), d, "no shapes", check_note="skipped")
    out = text.render(a)
    assert not any(line.startswith("cost:") for line in out.splitlines())
    assert "shapes:  A ?, B ? -> C ?" in out
    assert "needs shapes" in html.cost(a) and "needs shapes" in html.export(a)


def test_text_holds_no_exported_code():
    out = text.render(analysis())
    for code in ("def backward(", "custom_vjp", "torch", "import "):
        assert code not in out


# -- HTML ------------------------------------------------------------------------------

def test_html_is_styled_with_jupyterlab_variables_only_under_its_scope():
    css = html.stylesheet()
    for var in ("--jp-ui-font-color1", "--jp-layout-color1", "--jp-border-color2",
                "--jp-code-font-family", "--jp-mirror-editor-keyword-color",
                "--jp-mirror-editor-string-color"):
        assert f"var({var}" in css
    body = css.removeprefix("<style>").removesuffix("</style>")
    selectors = [sel.strip() for block in body.split("}") if "{" in block
                 for sel in block.split("{")[0].split(",")]
    assert len(selectors) > 20
    # a diagram's parts start at its drawing's own group: a copy drawn by <use> is reached
    # by no ancestor outside it (einsum_magic.views.diagram.CSS)
    assert all(sel.startswith((".einsum-grad", ".eg-net ")) for sel in selectors), selectors
    assert sum(sel.startswith(".einsum-grad") for sel in selectors) > 20


def test_code_is_highlighted_by_pygments():
    block = html.highlight("dL_dA = np.einsum('ik,jk->ij', dL_dC, B)")
    assert block.startswith('<pre class="eg-code">')
    assert """<t-s>'ik,jk-&gt;ij'</t-s>""" in block
    assert "dL_dA <t-o>=</t-o> np<t-o>.</t-o>einsum" in block  # names: plain
    assert "<t-n>B</t-n>" in block                  # a one-letter name, for the letter colours
    # every token class emitted for it has a colour rule (or is a one-letter name)
    css = html.stylesheet()
    for cls in set(re.findall(r"<t-(\w+)>", block)) - {"n"}:
        assert f".einsum-grad t-{cls}{{" in css, cls
    keyword = html.highlight("x = a if b in c else None")
    assert "<t-ow>in</t-ow>" in keyword
    ow_rule = next(r for r in css.splitlines() if " t-ow{" in r)
    assert "keyword-color" in ow_rule


def test_code_spans_cover_runs_of_one_colour_and_drop_uncoloured_tokens():
    block = html.highlight("x[i, j] = fn(ab, 2)")
    assert block == ('<pre class="eg-code"><t-n>x</t-n><t-p>[</t-p><t-n>i</t-n><t-p>,</t-p> '
                     '<t-n>j</t-n><t-p>]</t-p> <t-o>=</t-o> fn<t-p>(</t-p>ab<t-p>,</t-p> '
                     '<t-m>2</t-m><t-p>)</t-p></pre>')
    assert html.highlight("vs = ((ab)) [:, None]") == (
        '<pre class="eg-code">vs <t-o>=</t-o> <t-p>((</t-p>ab<t-p>)) [:,</t-p> <t-k>None</t-k>'
        '<t-p>]</t-p></pre>')
    assert html.highlight("for k in range(n): pass").count("<t-k>") == 2


def _pygments_html(source: str) -> str:
    """``source`` lexed by Pygments' own PythonLexer, written as the views write tokens."""
    from pygments.lexers import PythonLexer

    tokens = PythonLexer(stripnl=False, ensurenl=False).get_tokens(source)
    return f'<pre class="eg-code">{html.tokens_html(tokens).rstrip(chr(10))}</pre>'


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", ((2, 3), (3, 4))), ("ii->", ((3, 3),)), ("ij->i", ((2, 3),)),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))), ("ij,ij->", ((2, 3), (2, 3))),
    ("bhqd,bhkd->bhqk", ((2, 3, 4, 5), (2, 3, 6, 5))), (",ij->ij", ((), (2, 3))),
])
def test_the_fast_lexer_highlights_generated_code_as_pygments_python_lexer(equation, shapes):
    a = analysis(f"Y = np.einsum({equation!r}, {', '.join(f'X{k}' for k in range(len(shapes)))})",
                 shapes)
    d = a.derivation
    sources = [text.forward_code(a), d.loops, "x = np.broadcast_to(v[:, None], A.shape) * 2.5e-3",
               'Y = einops.einsum(x, w, "batch d, d out -> batch out")',
               "# note\nif a is None: pass"]
    sources += [s for g in d.grads for s in (g.code, g.loops, f"{g.target} = {g.interpretation}")]
    sources += [t.code for t in d.totals]
    for source in sources:
        assert html.highlight(source) == _pygments_html(source), source


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", ((2, 3), (3, 4))), ("ii->", ((3, 3),)), ("iij,jk->ik", ((2, 2, 3), (3, 4))),
    ("ij->i", ((2, 3),)), ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))),
    ("ij,ij->", ((2, 3), (2, 3))), ("ijji,kji,jj->kj", ((2, 3, 3, 2), (4, 3, 2), (3, 3))),
    (",ij->ij", ((), (2, 3))), ("ij,jk,kl->il", ((2, 3), (3, 4), (4, 5))),
])
def test_the_module_lexer_highlights_exports_as_pygments_python_lexer(equation, shapes):
    d = derive(equation, shapes=shapes)
    for target in ("numpy", "jax", "torch"):
        source = export(d, target)
        assert html.highlight_module(source) == _pygments_html(source), target


def test_page_is_deterministic_and_holds_no_device_errors_or_timings():
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    page = html.page(a)
    assert page == html.page(a)
    assert page.startswith("<style>") and '<div class="einsum-grad">' in page
    titles = re.findall(r'<h3 class="eg-panel-title">(\w+)</h3>', page)
    assert titles == ["Backward", "Diagram", "Loops", "Shapes", "Cost", "Export", "Check"]
    assert html.painted(a, html.cost(a)) in page and html.painted(a, html.export(a)) in page
    assert page.count("<svg") == 1 + 2 * len(a.derivation.grads)           # the Diagram tab
    for leak in ("NVIDIA", "gpu", "ms", "5.00e-01", "values differ", "experimental"):
        assert leak not in page
    assert "FAIL" in page and "1.00e-04" in page
    assert "<script" not in page and "http" not in page        # no script, no network


def test_page_tabs_are_radios_and_labels_with_one_open():
    a = analysis()
    page = html.page(a)
    labels = re.findall(r'<label for="([\w-]+)">(\w+)</label>', page)
    assert [t for _, t in labels] == [t for t, _ in html.TABS if t != "Exercise"]
    radios = re.findall(r'<input type="radio" name="([\w-]+)" id="([\w-]+)"( checked)?>', page)
    assert [i for _, i, _ in radios] == [f for f, _ in labels]
    assert len({n for n, _, _ in radios}) == 1                  # one group
    assert [c for _, _, c in radios] == [" checked"] + [""] * (len(radios) - 1)
    opened = html.page(a, tab="Check")
    checked = re.findall(r' checked><label for="[\w-]+">(\w+)<', opened)
    assert checked == ["Check"]
    with pytest.raises(ValueError, match="no tab 'Nope'"):
        html.page(a, tab="Nope")
    other = analysis("Y = np.einsum('ij->i', X)", shapes=((2, 3),))   # another group name
    group = re.search(r'name="([\w-]+)"', page)[1]
    assert group != re.search(r'name="([\w-]+)"', html.page(other))[1]
    assert group != re.search(r'name="([\w-]+)"', html.page(a, key="1"))[1]


def test_page_code_is_in_pre_and_export_is_folded():
    a = analysis()
    page = html.page(a)
    assert "dL_dA = np.einsum(" in visible(re.search(r"<pre[^>]*>.*?</pre>",
                                                     html.backward(a), re.S)[0])
    export_panel = re.search(r'<div class="eg-panel" data-tab="Export">(.*?)</div></div>',
                             page, re.S)[1]
    folds = re.findall(r"<details><summary>(.*?)</summary>(.*?)</details>", export_panel, re.S)
    assert [visible(s).split()[0] for s, _ in folds] == ["NumPy", "JAX", "PyTorch"]
    assert "def backward(dL_dC, A, B):" in visible(folds[0][1])
    assert "written when" not in page


def test_stylesheet_switches_every_tab_and_limits_panel_height():
    css = html.stylesheet()
    for k in range(1, len(html.TABS) + 1):
        assert (f"input:nth-of-type({k}):checked~div:nth-of-type({k})") in css
    assert re.search(r"\.eg-panel\{[^}]*max-height:[\d.]+em;overflow:auto", css)
    assert "input:focus-visible+label" in css                  # keyboard focus shows
    # a page's own stylesheet switches exactly its tabs
    page = html.page(analysis())
    shown = page.count('type="radio"')
    assert f"input:nth-of-type({shown}):checked~" in page
    assert f"input:nth-of-type({shown + 1}):checked~" not in page


def test_adding_a_page_tab_is_one_function_and_one_line(monkeypatch):
    monkeypatch.setattr(html, "TABS", html.TABS + [("Count", lambda a: "<p>2 gradients</p>")])
    page = html.page(analysis(), tab="Count")
    assert re.findall(r' checked><label for="[\w-]+">(\w+)<', page) == ["Count"]
    assert '<h3 class="eg-panel-title">Count</h3><p>2 gradients</p>' in page


def test_page_is_the_same_when_the_einsum_is_shown_again(checked):
    first, second = (widget.GradDisplay(checked).html() for _ in range(2))
    assert first == second == html.page(checked)


def test_live_check_section_shows_device_errors_and_timings():
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    live = html.check(a, live=True)
    for shown in ("NVIDIA Fake 1", "5.00e-01", "2.50e-01", "values differ from jax.vjp",
                  "derived_ms 1.500 ms", "jax_vjp_ms 2.500 ms", 'class="eg-fail"',
                  "Platform &#x27;fake&#x27; is experimental"):
        assert shown in live


@pytest.mark.parametrize("proposal", ["?", "ik,kj->ij"])      # open, wrong
def test_live_check_details_hide_the_answer_of_an_open_exercise(proposal):
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a), check_note="",
                            expectations=(judge(a.derivation, "dL_dA", proposal),))
    for backend in ("gpu", "numpy"):
        a = dataclasses.replace(a, check=dataclasses.replace(a.check, backend=backend))
        for live in (True, False):
            shown = visible(html.check(a, live=live))
            assert "hidden" in shown
            for g in a.derivation.grads:
                assert g.equation not in shown, (backend, live, g.equation)
    details = widget.live_check(a)
    assert all(g.equation not in visible(details.value) for g in a.derivation.grads)


def test_check_section_without_a_report():
    skipped = html.check(analysis())
    assert "check: skipped (--no-check)" in skipped
    a = analysis(check_note=f"not run: the gradient check needs JAX: {INSTALL}")
    assert "pip install jax" in html.check(a) and "eg-warn" in html.check(a)


def test_backward_section(checked):
    out = html.backward(checked)
    seen = visible(out)
    for g in checked.derivation.grads:
        assert f"<h4>{g.target} " in out
        assert f"shape {g.shape} = {g.wrt}'s shape" in seen
        assert text.grad_code(checked, g) in seen
        assert f"relabelled {g.relabelled}" in seen
        for step in g.steps:
            assert step in seen
    assert "reads dL_dA = dL_dC @ B.T" in seen


def test_loops_and_shapes_sections():
    a = analysis("t = np.einsum('ii,j->j', A, v)", ((3, 3), (4,)))
    loops = html.loops(a)
    assert "forward t" in loops and loops.count('<pre class="eg-code">') == 3
    for source in [a.derivation.loops] + [g.loops for g in a.derivation.grads]:
        assert source in visible(loops)
    shapes = html.shapes(a)
    for cell in ("<td>diagonal</td>", "<td>free</td>", "<td>A</td>", "<td>(3, 3)</td>",
                 "<td>gradient of v</td>", "<td>(4,)</td>", "<td>output</td>"):
        assert cell in shapes, cell


def test_einops_shapes_table_names_the_axes():
    a = analysis('Y = einops.einsum(x, w, "batch d, d out -> batch out")', ((5, 3), (3, 7)))
    assert "<th>axis</th>" in html.shapes(a) and "<td>batch</td>" in html.shapes(a)
    assert "b = batch" in html.loops(a)


def test_header_shows_the_call_as_written_when_it_differs():
    same = html.header(analysis())
    assert "as written" not in same and "line 1" in same
    interleaved = analysis("C = np.einsum(A, [0, 1], B, [1, 2], [0, 2])")
    assert "as written: <code>np.einsum(A, [0, 1], B, [1, 2], [0, 2])</code>" in \
        html.header(interleaved)
    # the letters numpy's integers map to are the cell module's to pin (tests/test_cell.py)
    forward = f"C = np.einsum({interleaved.call.equation!r}, A, B)"
    assert text.forward_code(interleaved) == forward and forward in visible(html.header(interleaved))


def test_html_escapes_what_the_user_wrote():
    a = analysis("C = np.einsum('ij,jk->ik', x['<b>'], B)", ((2, 3), (3, 4)))
    page = html.page(a)
    assert "<b>" not in page
    assert "x[&#x27;&lt;b&gt;&#x27;]" in page


@pytest.mark.parametrize("source, shapes", COST_CASES)
def test_cost_section_shows_the_forward_and_every_gradient_with_flops(source, shapes):
    a = analysis(source, shapes)
    d, r = a.derivation, cost(a.derivation)
    each, joint, steps = (rows(t) for t in tables(html.cost_details(a)))
    assert each[0] == ["einsum", "equation", "naive FLOPs", "optimised FLOPs",
                       "largest intermediate (elements)", "pairwise steps"]
    assert [row[0] for row in each[1:]] == [f"forward {d.output}"] + [g.target for g in d.grads]
    for row, c in zip(each[1:], (r.forward,) + r.grads):
        assert row[1:5] == [c.equation, f"{c.naive_flops:,}", f"{c.flops:,}",
                            f"{c.largest_intermediate:,}"]
        assert row[5] == ("".join(c.steps) or "none")
    assert joint[1:] == [["joint plan (the steps below)", f"{r.backward:,}"],
                         ["separate paths (each gradient optimised alone)",
                          f"{r.separate_backward:,}"],
                         ["naive (each gradient in one loop nest)", f"{r.naive_backward:,}"]]
    p = r.plan
    assert steps[1:] == [[pass_, visible(html._step(s)), str(s.shape), f"{s.flops:,}"]
                         for pass_, part in (("forward", p.forward), ("backward", p.backward))
                         for s in part]
    assert sum(int(row[3].replace(",", "")) for row in steps[1:] if row[0] == "backward") \
        == r.backward
    shown = visible(html.cost_details(a))
    assert "scatter" not in shown and "scatter" not in visible(html.cost(a))
    assert f"largest intermediate of the plan (results and gradients included): " \
        f"{r.largest_intermediate:,} elements" in shown
    assert ("np.eye and np.ones count as operands" in shown) == any(g.aux for g in d.grads)


def test_cost_section_tells_the_shared_backward_from_separate_paths():
    """x^T A x: the joint backward shares a matrix-vector product the separate paths redo."""
    a = analysis("q = np.einsum('i,ij,j->', x, A, x)", ((30,), (30, 30), (30,)))
    joint = rows(tables(html.cost_details(a))[1])
    figures = [int(row[1].replace(",", "")) for row in joint[1:]]
    assert figures[0] < figures[1] < figures[2]


@pytest.mark.parametrize("source, shapes", COST_CASES)
def test_export_section_holds_the_numpy_jax_and_torch_source(source, shapes):
    a = analysis(source, shapes)
    out = html.export(a)
    seen = visible(out)
    for target in ("numpy", "jax", "torch"):
        assert export(a.derivation, target).rstrip("\n") in seen
    assert [visible(h).split()[0] for h in re.findall(r"<summary>(.*?)</summary>", out)] == \
        ["NumPy", "JAX", "PyTorch"]
    d = a.derivation
    assert f"def backward({d.cotangent}, " in seen
    assert "@jax.custom_vjp" in seen and "jax.custom_vjp function" in seen
    assert "class Einsum(torch.autograd.Function):" in seen
    assert out.count('<pre class="eg-code">') == 3


def test_export_section_says_when_a_name_is_taken_by_the_exported_code():
    a = analysis("C = np.einsum('ij,jk->ik', residuals, B)")
    out = html.export(a)
    assert out.count('class="eg-warn"') == 3 and "<pre" not in out
    assert "the name &#x27;residuals&#x27; is used by the exported code" in out


def test_exported_modules_are_highlighted_and_coloured():
    d = analysis(*COST_CASES[1]).derivation
    css = html.stylesheet()
    decorator = next(r for r in css.splitlines() if " t-nd{" in r)
    assert "--jp-mirror-editor-meta-color" in decorator
    for target in ("numpy", "jax", "torch"):
        block = html.highlight_module(export(d, target))
        assert block.startswith('<pre class="eg-code">')
        assert re.search(r'<t-s>"""[^<]*\n[^<]*"""</t-s>', block)  # one docstring
        classes = set(re.findall(r"<t-(\w+)>", block))
        assert {"k", "nf", "s"} <= classes
        # every token class emitted has a colour rule (or is a one-letter name)
        for cls in classes - {"n"}:
            assert f".einsum-grad t-{cls}{{" in css, (target, cls)


def test_cost_and_export_views_import_neither_jax_nor_torch():
    code = textwrap.dedent("""
        import sys
        import einsum_magic.compute.cost, einsum_magic.compute.export
        from einsum_magic import derive
        from einsum_magic.views import html, text
        from einsum_magic.cell.analysis import Analysis
        from einsum_magic.cell.calls import equation_call
        d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
        a = Analysis(equation_call("ij,jk->ik"), d, "sizes", check_note="skipped")
        assert "cost: " in text.render(a) and ">Cost</h3>" in html.page(a)
        assert "custom_vjp" in html.export(a) and "torch" in d.export("torch")
        print(sorted(m for m in ("jax", "torch", "ipywidgets") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


# -- widget ----------------------------------------------------------------------------

def test_live_widget_holds_the_check_details_folded(checked):
    w = widget.live(checked)
    assert isinstance(w, ipywidgets.VBox)
    sizes, details = w.children           # no array fixes a letter here: each gets a slider
    assert sorted(sizes._einsum_sliders) == ["i", "j", "k"]
    assert details.value.count("<details>") == 1
    assert html.check(checked, live=True) in details.value
    assert "device" in visible(details.value) and checked.check.device in details.value
    fixed = dataclasses.replace(analysis(), fixed=("i", "j", "k"))
    assert widget.live(fixed) is None    # no check, every size fixed: nothing live to add
    bundle = widget.live_bundle(w)
    assert set(bundle) == {widget.WIDGET_MIME} and bundle[widget.WIDGET_MIME]["model_id"] == w.model_id
    w.close()


def test_adding_a_live_widget_is_one_function_and_one_line(monkeypatch, checked):
    def count(a):
        return ipywidgets.HTML(value=f"{len(a.derivation.grads)} gradients")

    monkeypatch.setattr(widget, "LIVE", widget.LIVE + [("Count", count)])
    assert widget.live(checked).children[-1].value == "2 gradients"
    assert widget.live(dataclasses.replace(analysis(), fixed=("i", "j", "k"))).children[0].value == \
        "2 gradients"


def test_display_bundle(checked):
    plain = widget.GradDisplay(checked)._repr_mimebundle_()
    assert set(plain) == {"text/plain", "text/html"}
    assert plain["text/plain"] == text.render(checked)
    assert plain["text/html"] == html.page(checked)
    opened = widget.GradDisplay(checked, tab="Check")._repr_mimebundle_()["text/html"]
    assert opened == html.page(checked, tab="Check")
    assert widget.GradDisplay(checked, view="text")._repr_mimebundle_() == \
        {"text/plain": text.render(checked)}


def test_check_section_of_the_numpy_adjoint_test_says_why_in_one_line():
    from einsum_magic.check import adjoint

    a = analysis()
    why = "JAX not available: import raised RuntimeError"
    said = "RuntimeError: jaxlib 0.4.1 mismatch at /opt/lib"
    r = dataclasses.replace(adjoint.check(a.derivation, fallback=why), fallback_detail=said)
    a = dataclasses.replace(a, check=r, check_note="")
    line = ("check: PASS, 2/2 gradients pass the adjoint test (float64); checked with NumPy "
            f"(adjoint test), {why}")
    assert text.render(a).splitlines()[-1] == line
    static, live = html.check(a, live=False), html.check(a, live=True)
    assert "checked with NumPy (adjoint test), " + why in visible(static)
    assert said in visible(live) and said not in static + text.render(a) + html.meaning(a)
    assert "Traceback" not in static + live and "jax.vjp" not in visible(live)
    assert "adjoint test: |left - right|" in visible(live)
    assert why in html.meaning(a)


def test_the_meaning_line_says_where_as_the_header_does_and_grades_in_words():
    from einsum_magic.cell.capture import Site
    from einsum_magic.cell.sites import site_call

    site = Site("numpy.einsum", "numpy", "pi,qi->pq", None, ((4, 3), (4, 3)), ("float64",) * 2,
                (0, 0), ("C", "C"), (None, None), "<cell>", 2, 11, "density", count=3)
    call = site_call(site, (), "<cell>")
    d = derive(call.equation, call.names, call.output, ((4, 3), (4, 3)))
    a = Analysis(call, d, "from the run", check_note="skipped (--no-check)")
    said = html.meaning(a)
    assert said.startswith("density(), line 2 | ") and "density(), line 2" in html.header(a)
    assert html.meaning(analysis()).startswith("line 1 | ")
    a = analysis()
    graded = dataclasses.replace(a, expectations=(
        judge(a.derivation, "dL_dA", "ik,jk->ij"), judge(a.derivation, "dL_dB", "ik,ji->jk"),
        judge(a.derivation, "dL_dB", "?"), judge(a.derivation, "dL_dA", "i$k,jk->ij")))
    said = html.meaning(graded)
    assert [e.verdict for e in graded.expectations] == ["correct", "wrong", "blank", "invalid"]
    assert "expect dL_dA = 'ik,jk->ij': right" in said
    assert "expect dL_dB = 'ik,ji->jk': wrong" in said
    assert "expect dL_dB = '?': unanswered" in said
    assert "expect dL_dA = 'i$k,jk->ij': wrong" in said
    for raw in ("correct", "blank", "invalid"):
        assert raw not in said
