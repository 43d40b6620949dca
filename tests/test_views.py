"""The views: plain text, HTML fragments and the widget, all pure functions of an Analysis."""

from __future__ import annotations

import dataclasses
import re
from html import unescape

import ipywidgets
import numpy as np
import pytest

from einsum_magic import derive
from einsum_magic import html, text, widget
from einsum_magic.cell import Analysis, equation_call, find_calls
from einsum_magic.expect import judge
from einsum_magic.check import CheckReport, GradCheck, INSTALL, check


def visible(fragment: str) -> str:
    """The text a reader sees in an HTML fragment: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", fragment))


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
    assert lines[0] == "einsum_grad: np.einsum('ij,jk->ik', A, B)  (line 1)"
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
    assert out.splitlines()[0].endswith("(einsum 2 of 2, line 1)")
    assert "  op1 = A.T" in out
    assert "expect dL_dB = 'ik,ij->jk': correct: dL_dB = einsum('ik,ij->jk', dL_dC, op1)" in out


def test_text_of_an_equation_only_cell_and_of_jax_missing():
    d = derive("ij->j", shapes=((2, 3),))
    a = Analysis(equation_call("ij->j"), d, "sizes from defaults",
                 check_note=f"not run: the gradient check needs JAX: {INSTALL}")
    out = text.render(a)
    assert out.splitlines()[0] == "einsum_grad: 'ij->j'  (equation)"
    assert out.splitlines()[-1] == f"check: not run: the gradient check needs JAX: {INSTALL}"


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
    assert all(sel.startswith(".einsum-grad") for sel in selectors), selectors


def test_code_is_highlighted_by_pygments():
    block = html.highlight("dL_dA = np.einsum('ik,jk->ij', dL_dC, B)")
    assert block.startswith('<pre class="eg-code">')
    assert """<span class="s1">'ik,jk-&gt;ij'</span>""" in block
    assert '<span class="n">dL_dA</span>' in block
    # every class Pygments emitted for it has a colour rule (or is a plain name/space)
    css = html.stylesheet()
    for cls in set(re.findall(r'class="(\w+)"', block)) - {"n", "w"}:
        assert f".eg-code .{cls}" in css, cls
    keyword = html.highlight("x = a if b in c else None")
    assert '<span class="ow">in</span>' in keyword
    ow_rule = next(r for r in css.splitlines() if ".eg-code .ow" in r)
    assert "keyword-color" in ow_rule


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", ((2, 3), (3, 4))), ("ii->", ((3, 3),)), ("ij->i", ((2, 3),)),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))), ("ij,ij->", ((2, 3), (2, 3))),
    ("bhqd,bhkd->bhqk", ((2, 3, 4, 5), (2, 3, 6, 5))), (",ij->ij", ((), (2, 3))),
])
def test_the_fast_lexer_highlights_generated_code_as_pygments_python_lexer(equation, shapes):
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    a = analysis(f"Y = np.einsum({equation!r}, {', '.join(f'X{k}' for k in range(len(shapes)))})",
                 shapes)
    d = a.derivation
    sources = [text.forward_code(a), d.loops, "x = np.broadcast_to(v[:, None], A.shape) * 2.5e-3",
               'Y = einops.einsum(x, w, "batch d, d out -> batch out")',
               "# note\nif a is None: pass"]
    sources += [s for g in d.grads for s in (g.code, g.loops, f"{g.target} = {g.interpretation}")]
    sources += [t.code for t in d.totals]
    reference = PythonLexer(stripnl=False, ensurenl=False)
    for source in sources:
        want = highlight(source, reference, HtmlFormatter(nowrap=True)).rstrip("\n")
        assert html.highlight(source) == f'<pre class="eg-code">{want}</pre>', source


def test_page_is_deterministic_and_holds_no_device_errors_or_timings():
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    page = html.page(a)
    assert page == html.page(a)
    assert page.startswith("<style>") and '<div class="einsum-grad">' in page
    for title in ("Backward", "Loops", "Shapes", "Check"):
        assert f"<h3>{title}</h3>" in page
    for leak in ("NVIDIA", "gpu", "ms", "5.00e-01", "values differ", "experimental"):
        assert leak not in page
    assert "FAIL" in page and "1.00e-04" in page


def test_live_check_section_shows_device_errors_and_timings():
    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    live = html.check(a, live=True)
    for shown in ("NVIDIA Fake 1", "5.00e-01", "2.50e-01", "values differ from jax.vjp",
                  "derived_ms 1.500 ms", "jax_vjp_ms 2.500 ms", 'class="eg-fail"',
                  "Platform &#x27;fake&#x27; is experimental"):
        assert shown in live


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
    assert "C = np.einsum('ab,bc->ac', A, B)" in visible(html.header(interleaved))


def test_html_escapes_what_the_user_wrote():
    a = analysis("C = np.einsum('ij,jk->ik', x['<b>'], B)", ((2, 3), (3, 4)))
    page = html.page(a)
    assert "<b>" not in page
    assert "x[&#x27;&lt;b&gt;&#x27;]" in page


# -- widget ----------------------------------------------------------------------------

def test_widget_has_a_header_and_the_four_tabs(checked):
    w = widget.build(checked)
    assert isinstance(w, ipywidgets.VBox)
    head, tabs = w.children
    assert "<style>" in head.value and "einsum_grad" in head.value
    assert isinstance(tabs, ipywidgets.Tab)
    assert list(tabs.titles) == ["Backward", "Loops", "Shapes", "Check"]
    backward, loops, shapes, check_tab = tabs.children
    assert visible(backward.value) == visible(html.backward(checked))
    assert checked.derivation.loops in visible(loops.value)
    assert "contracted" in shapes.value
    assert "PASS" in check_tab.value and "device" in check_tab.value
    w.close()


def test_adding_a_tab_is_one_function_and_one_line(monkeypatch, checked):
    def cost_tab(a):
        return ipywidgets.HTML(value=f"{len(a.derivation.grads)} gradients")

    monkeypatch.setattr(widget, "TABS", widget.TABS + [("Cost", cost_tab)])
    tabs = widget.build(checked).children[1]
    assert tabs.titles[-1] == "Cost" and tabs.children[-1].value == "2 gradients"


def test_display_bundle(checked):
    plain = widget.GradDisplay(checked)._repr_mimebundle_()
    assert set(plain) == {"text/plain", "text/html"}
    assert plain["text/plain"] == text.render(checked)
    assert plain["text/html"] == html.page(checked)
    live = widget.GradDisplay(checked, widgets=True)._repr_mimebundle_()
    view = live[widget.WIDGET_MIME]
    assert view["version_major"] == 2 and isinstance(view["model_id"], str)
    assert live["text/plain"] == plain["text/plain"] and live["text/html"] == plain["text/html"]
