"""HTML fragments of one analysed einsum: the widget's tabs and the static fallback page.

Every function here is a pure function of an :class:`~einsum_magic.analysis.Analysis`
returning an HTML string. Styling is one scoped stylesheet (:func:`stylesheet`, every
rule under ``.einsum-grad``) written with JupyterLab's CSS variables
(``var(--jp-ui-font-color1)``, ``var(--jp-layout-color1)``, ``var(--jp-border-color2)``,
``var(--jp-code-font-family)``, the ``--jp-mirror-editor-*`` token colours, …) with
plain fallbacks, so it reads in light and dark themes and outside JupyterLab. Code is
tokenised by Pygments (:func:`highlight`, :func:`highlight_module` for whole exported
modules) and coloured by that stylesheet.

:func:`page` is the ``text/html`` of the display bundle, seen where no widget manager
exists (nbconvert, GitHub) and compared by nbval: it is deterministic, so its Check
section shows PASS/FAIL, dtype, precision and tolerances but no device, error
figures or timings (:func:`check` with ``live=True``, the widget's tab, shows those).
Its Cost section (:func:`cost`) holds FLOP counts, which depend on the shapes only. The
exported code (:func:`export`) is the widget's alone, to keep the page small.

>>> from einsum_magic import derive
>>> from einsum_magic.analysis import Analysis
>>> from einsum_magic.cell import equation_call
>>> a = Analysis(equation_call("ij,jk->ik"), derive("ij,jk->ik", shapes=((2, 3), (3, 4))),
...              "defaults", check_note="skipped (--no-check)")
>>> "var(--jp-border-color2" in page(a) and "dL_dC" in backward(a)
True
"""

from __future__ import annotations

import functools
import math
from html import escape

from .cost import cost as cost_report
from .errors import EinsumError
from .text import check_line, forward_code, grad_code, shape_text

__all__ = ["stylesheet", "highlight", "highlight_module", "header", "backward", "loops", "shapes",
           "cost", "export", "check", "page", "progress", "wrap"]

#: Pygments token type → JupyterLab editor colour variable (and a light-theme fallback).
_TOKEN_COLOURS = (
    ("Keyword", "keyword", "#008000", "bold"),
    ("Operator.Word", "keyword", "#aa22ff", "bold"),
    ("Name.Builtin", "builtin", "#008000", ""),
    ("Name.Function", "def", "#0000ff", ""),
    ("Name.Class", "def", "#0000ff", "bold"),
    ("Name.Attribute", "property", "#7d9029", ""),
    ("Name.Decorator", "meta", "#aa22ff", ""),
    ("String", "string", "#ba2121", ""),
    ("Number", "number", "#008800", ""),
    ("Comment", "comment", "#408080", "italic"),
    ("Operator", "operator", "#aa22ff", ""),
    ("Punctuation", "punctuation", "inherit", ""),
)

_BASE_CSS = """
.einsum-grad { font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, #212121);
  background: var(--jp-layout-color1, transparent); line-height: 1.4; }
.einsum-grad .eg-title { font-weight: bold; margin: 2px 0; }
.einsum-grad h3 { font-size: var(--jp-content-font-size3, 1.25em); margin: 14px 0 4px 0;
  color: var(--jp-ui-font-color1, #212121);
  border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); }
.einsum-grad h4 { font-size: var(--jp-content-font-size2, 1.1em); margin: 10px 0 4px 0;
  color: var(--jp-ui-font-color1, #212121); }
.einsum-grad code, .einsum-grad pre { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px); }
.einsum-grad code { background: var(--jp-layout-color2, #eeeeee); padding: 0 3px;
  border-radius: 2px; }
.einsum-grad pre.eg-code { background: var(--jp-cell-editor-background, #f7f7f7);
  color: var(--jp-content-font-color1, #212121);
  border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 2px;
  padding: 4px 8px; margin: 3px 0; white-space: pre; overflow-x: auto; }
.einsum-grad table.eg-table { border-collapse: collapse; margin: 4px 0; }
.einsum-grad table.eg-table th, .einsum-grad table.eg-table td {
  border: 1px solid var(--jp-border-color2, #e0e0e0);
  padding: 2px 8px; text-align: left; vertical-align: top; }
.einsum-grad table.eg-table th { background: var(--jp-layout-color2, #eeeeee); font-weight: 600; }
.einsum-grad .eg-num { white-space: nowrap; }
.einsum-grad .eg-muted { color: var(--jp-ui-font-color2, #616161); }
.einsum-grad .eg-pass { color: var(--jp-success-color1, #388e3c); font-weight: bold; }
.einsum-grad .eg-fail { color: var(--jp-error-color1, #d32f2f); font-weight: bold; }
.einsum-grad .eg-warn { color: var(--jp-warn-color1, #f57c00); font-weight: bold; }
.einsum-grad ol, .einsum-grad ul { margin: 2px 0; padding-left: 22px; }
"""


@functools.lru_cache(maxsize=1)
def stylesheet() -> str:
    """The scoped ``<style>`` element: layout and Pygments token colours, in --jp- variables."""
    from pygments.token import STANDARD_TYPES, string_to_tokentype

    rules = [_BASE_CSS.strip()]
    roots = [string_to_tokentype(name) for name, *_ in _TOKEN_COLOURS]
    for root, (name, var, fallback, font) in zip(roots, _TOKEN_COLOURS):
        # each token class goes to the most specific entry that holds it
        classes = sorted(c for t, c in STANDARD_TYPES.items()
                         if c and t in root and max((r for r in roots if t in r), key=len) is root)
        selector = ", ".join(f".einsum-grad .eg-code .{c}" for c in classes)
        weight = {"bold": "font-weight: bold; ", "italic": "font-style: italic; "}.get(font, "")
        rules.append(f"{selector} {{ color: var(--jp-mirror-editor-{var}-color, {fallback}); "
                     f"{weight}}}")
    return "<style>\n" + "\n".join(rules) + "\n</style>"


@functools.lru_cache(maxsize=2048)
def highlight(code: str) -> str:
    """``code`` as a ``<pre class="eg-code">`` block of Pygments token spans (cached)."""
    from pygments import highlight as _highlight

    body = _highlight(code, _lexer(), _formatter()).rstrip("\n")
    return f'<pre class="eg-code">{body}</pre>'


@functools.lru_cache(maxsize=64)
def highlight_module(code: str) -> str:
    """A whole module of Python (an export) as a ``<pre class="eg-code">`` block (cached).

    Tokenised by Pygments' full ``PythonLexer``: exported modules hold what the fast lexer
    of :func:`highlight` does not know (docstrings, decorators, classes, imports).
    """
    from pygments import highlight as _highlight
    from pygments.lexers import PythonLexer

    body = _highlight(code, PythonLexer(stripnl=False, ensurenl=False), _formatter()).rstrip("\n")
    return f'<pre class="eg-code">{body}</pre>'


@functools.lru_cache(maxsize=None)
def _formatter():
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(nowrap=True)


@functools.lru_cache(maxsize=None)
def _lexer():
    """A Pygments lexer for the Python that einsum_magic generates, ~10x faster than PythonLexer.

    The views highlight only generated code (assignments, ``np.einsum`` calls, for-loops,
    readings); on it this lexer yields the same HTML as Pygments' ``PythonLexer`` (the
    tests compare the two), at a fraction of the cost: PythonLexer's full grammar made
    highlighting 80% of a render.
    """
    from pygments.lexer import RegexLexer, words
    from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text

    class GeneratedPythonLexer(RegexLexer):
        name = "einsum_magic generated Python"
        tokens = {"root": [
            (r"\n", Text.Whitespace),
            (r"[^\S\n]+", Text),
            (r"#.*$", Comment.Single),
            (words(("in", "not", "and", "or", "is"), suffix=r"\b"), Operator.Word),
            (words(("None", "True", "False"), suffix=r"\b"), Keyword.Constant),
            (words(("for", "if", "else", "elif", "while", "return", "def", "import", "from",
                    "as", "with", "lambda", "del", "pass"), suffix=r"\b"), Keyword),
            (words(("range", "len", "sum", "abs", "min", "max", "zip", "tuple", "int",
                    "float", "print"), prefix=r"(?<!\.)", suffix=r"\b"), Name.Builtin),
            (r"[A-Za-z_]\w*", Name),
            (r"(\d+\.\d*|\.\d+)([eE][+-]?\d+)?|\d+[eE][+-]?\d+", Number.Float),
            (r"\d+", Number.Integer),
            (r"'[^'\n]*'", String.Single),
            (r'"[^"\n]*"', String.Double),
            (r"[-+*/%@=<>!&|^~.]", Operator),
            (r"[()\[\]{},:;]", Punctuation),
            (r".", Text),
        ]}

    return GeneratedPythonLexer(stripnl=False, ensurenl=False)


def wrap(body: str, style: bool = False) -> str:
    """``body`` inside the ``.einsum-grad`` scope (with the stylesheet when ``style``)."""
    return (stylesheet() if style else "") + f'<div class="einsum-grad">{body}</div>'


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def _table(head, rows) -> str:
    out = ['<table class="eg-table"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"


# -- sections --------------------------------------------------------------------------

def header(a, index: int | None = None, count: int = 1) -> str:
    """The call, the forward einsum, what the operands stand for, and the shapes."""
    d, call = a.derivation, a.call
    where = call.where or (f"line {call.line}" if call.style != "equation" else "equation")
    if count > 1 and index is not None:
        where = f"einsum {index + 1} of {count}, {where}"
    parts = [f'<div class="eg-title">einsum_grad <span class="eg-muted">{escape(where)}</span>'
             "</div>", highlight(forward_code(a))]
    written = forward_code(a).split(" = ", 1)[-1]
    if call.style != "equation" and " ".join(call.source.split()) != written:
        parts.append(f'<div class="eg-muted">as written: {_code(call.source)}</div>')
    if call.legend:
        parts.append('<div class="eg-muted">' + ", ".join(
            f"{_code(n)} is {_code(e)}" for n, e in call.legend) + "</div>")
    shapes = ", ".join(f"{escape(n)} {shape_text(s)}"
                       for n, s in zip(d.names, d.shapes or (None,) * len(d.names)))
    parts.append(f"<div>shapes: {shapes} → {escape(d.output)} {shape_text(d.output_shape)} "
                 f'<span class="eg-muted">({escape(a.sizes_from)})</span></div>')
    return "".join(parts)


def backward(a) -> str:
    """Each gradient: its code, the swap spelled out step by step, readings and shape."""
    d = a.derivation
    parts = []
    for g in d.grads:
        parts.append(f"<h4>{escape(g.target)} <span class=\"eg-muted\">shape "
                     f"{shape_text(g.shape)} = {escape(g.wrt)}'s shape</span></h4>")
        parts.append(highlight(grad_code(a, g)))
        parts.append("<ol>" + "".join(f"<li>{escape(s)}</li>" for s in g.steps) + "</ol>")
        reading = f"relabelled {_code(g.relabelled)}"
        if g.interpretation:
            reading += f", reads {_code(f'{g.target} = {g.interpretation}')}"
        parts.append(f"<div>{_code(g.equation)}: {reading}</div>")
    for t in d.totals:
        parts.append(f"<h4>product rule <span class=\"eg-muted\">{escape(t.wrt)} is passed "
                     f"{len(t.parts)} times</span></h4>")
        parts.append(highlight(t.code))
    if a.expectations:
        parts.append("<h4>--expect</h4><ul>")
        for e in a.expectations:
            cls = "eg-pass" if e.passed else "eg-fail"
            message = escape(e.message).replace("\n", "<br>")
            parts.append(f'<li><span class="{cls}">{escape(e.verdict)}</span> '
                         f"{escape(e.target)} = {_code(e.proposal)}: {message}</li>")
        parts.append("</ul>")
    return "".join(parts)


def loops(a) -> str:
    """The forward pass and each gradient as for-loops (every backward is the plain swap)."""
    d, call = a.derivation, a.call
    parts = []
    if call.style == "einops" and any(c != n for c, n in call.axes):
        parts.append('<div class="eg-muted">loop indices are letters: ' + ", ".join(
            f"{escape(c)} = {escape(n)}" for c, n in call.axes) + "</div>")
    parts += [f"<h4>forward {escape(d.output)}</h4>", highlight(d.loops)]
    for g in d.grads:
        parts += [f"<h4>{escape(g.target)}</h4>", highlight(g.loops)]
    return "".join(parts)


def shapes(a) -> str:
    """Letters (size, role, carriers) and arrays (operands, output, gradients) with shapes."""
    d, call = a.derivation, a.call
    einops = call.style == "einops"
    head = ["letter"] + (["axis"] if einops else []) + ["size", "role", "carried by"]
    rows = []
    for x in d.letters:
        role = x.role + (" (from ...)" if x.origin == "..." else "")
        rows.append([_code(x.letter)] + ([escape(call.axis_name(x.letter))] if einops else [])
                    + ["?" if x.size is None else str(x.size), escape(role),
                       ", ".join(escape(n) for n in x.operands)])
    arrays = [[escape(n), "operand", _code(s), shape_text(sh)]
              for n, s, sh in zip(d.names, d.inputs, d.shapes or [None] * len(d.names))]
    arrays.append([escape(d.output), "output", _code(d.result), shape_text(d.output_shape)])
    arrays += [[escape(g.target), f"gradient of {escape(g.wrt)}", _code(g.output),
                shape_text(g.shape)] for g in d.grads]
    return (_table(head, rows) if rows else "<div>no letters: every operand is a scalar</div>") + \
        _table(["array", "is", "subscripts", "shape"], arrays)


def _count(n: int) -> str:
    return f'<span class="eg-num">{n:,}</span>'


def cost(a) -> str:
    """FLOPs of the forward and of each gradient (naive, optimised, largest intermediate,
    pairwise steps), and the joint backward plan against separate paths and naive."""
    d = a.derivation
    if d.shapes is None:
        return '<div class="eg-muted">the cost needs shapes</div>'
    r = cost_report(d)
    parts = ['<h4>each einsum alone <span class="eg-muted">opt_einsum.contract_path, '
             "optimize=&quot;auto&quot;</span></h4>"]
    rows = []
    for label, c in [(f"forward {d.output}", r.forward)] + [(g.label, g) for g in r.grads]:
        steps = "<br>".join(_code(s) for s in c.steps) or '<span class="eg-muted">none</span>'
        rows.append([escape(label), _code(c.equation), _count(c.naive_flops), _count(c.flops),
                     _count(c.largest_intermediate), steps])
    parts.append(_table(["einsum", "equation", "naive FLOPs", "optimised FLOPs",
                         "largest intermediate (elements)", "pairwise steps"], rows))
    if any(g.aux for g in d.grads):
        parts.append('<div class="eg-muted">np.eye and np.ones count as operands of a '
                     "gradient, as its code runs them; the joint plan never builds them</div>")
    p = r.plan
    parts.append('<h4>joint backward <span class="eg-muted">every gradient along the '
                 "forward's path read backwards, intermediates shared</span></h4>")
    parts.append(_table(["backward", "FLOPs"], [
        ["joint plan (the steps below)", _count(r.backward)],
        ["separate paths (each gradient optimised alone)", _count(r.separate_backward)],
        ["naive (each gradient in one loop nest)", _count(r.naive_backward)]]))
    parts.append(f"<div>forward along the plan: {_count(p.forward_flops)} FLOPs; largest "
                 f"intermediate of the plan (results and gradients included): "
                 f"{_count(r.largest_intermediate)} elements</div>")
    rows = [[pass_, _code(s.line), shape_text(s.shape), _count(s.flops)]
            for pass_, steps in (("forward", p.forward), ("backward", p.backward))
            for s in steps]
    parts.append(_table(["pass", "step", "shape", "FLOPs"], rows))
    return "".join(parts)


def _exports(d) -> tuple[tuple[str, str, str], ...]:
    """(target, title, what its source defines) for each export target, in ``d``'s names."""
    operands = ", ".join(dict.fromkeys(d.names))
    totals = {t.wrt: t.target for t in d.totals}
    grads = ", ".join(dict.fromkeys(totals.get(g.wrt, g.target) for g in d.grads))
    grads = grads if "," in grads else f"{grads},"
    return (("numpy", "NumPy", f"backward({d.cotangent}, {operands}) returns ({grads})"),
            ("jax", "JAX", f"einsum({operands}), a jax.custom_vjp function"),
            ("torch", "PyTorch", f"class Einsum(torch.autograd.Function) and einsum({operands})"))


def export(a) -> str:
    """The backward as standalone source for NumPy, JAX and PyTorch (:mod:`einsum_magic.export`).

    Pure string generation: nothing here imports JAX or PyTorch.
    """
    from .export import export as source

    d = a.derivation
    if d.shapes is None:
        return '<div class="eg-muted">the export needs shapes</div>'
    parts = ['<div class="eg-muted">Written for these shapes; the gradients are computed '
             "together along the forward's path (see Cost). In Python, "
             f"{_code('d.export(target)')} returns this source and "
             f"{_code('d.compile(target)')} runs it (with -o NAME, d is "
             f"{_code('NAME.derivations[k]')}).</div>"]
    for target, title, what in _exports(d):
        parts.append(f'<h4>{title} <span class="eg-muted">{escape(what)}</span></h4>')
        try:
            parts.append(highlight_module(source(d, target)))
        except EinsumError as e:
            parts.append(f'<div class="eg-warn">{escape(str(e).splitlines()[0])}</div>')
    return "".join(parts)


def check(a, live: bool = True) -> str:
    """The check against ``jax.vjp``; ``live=False`` leaves out device, errors and timings."""
    r = a.check
    if r is None:
        cls = "eg-warn" if "JAX" in a.check_note else "eg-muted"
        return f'<div class="{cls}">{escape(check_line(a))}</div>'
    badge = "eg-pass" if r.passed else "eg-fail"
    summary = r.summary.split(", ", 1)[-1] if r.summary.startswith("check: ") else r.summary
    parts = [f'<div><span class="{badge}">{"PASS" if r.passed else "FAIL"}</span> '
             f"{escape(summary)}</div>"]
    setting = [["dtype", escape(r.dtype)], ["matmul precision", escape(r.precision)],
               ["operands", "your arrays" if r.user_arrays else "seeded random arrays"]]
    if live:
        setting = [["device", escape(r.device)], ["backend", escape(r.backend)]] + setting
    parts.append(_table(["setting", "value"], setting))
    if live:
        head = ["gradient", "derived einsum", "max abs error vs jax.vjp", "max rel error",
                "vs NumPy float64", "rtol", "atol", "result"]
        rows = [[escape(g.target), _code(g.equation), _num(g.max_abs_error),
                 _num(g.max_rel_error), _num(g.ref_abs_error), _num(g.rtol), _num(g.atol),
                 _verdict(g.passed, g.message)] for g in r.grads]
    else:
        head = ["gradient", "derived einsum", "rtol", "atol", "result"]
        rows = [[escape(g.target), _code(g.equation), _num(g.rtol), _num(g.atol),
                 _verdict(g.passed, "")] for g in r.grads]
    parts.append(_table(head, rows))
    if live and r.timings:
        parts.append('<div class="eg-muted">timings: ' + ", ".join(
            f"{escape(k)} {v:.3f} ms" if isinstance(v, (int, float))
            else f"{escape(k)} {escape(str(v))}" for k, v in r.timings.items()) + "</div>")
    if r.notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in r.notes) + "</ul>")
    if live and r.platform:
        parts.append('<div class="eg-muted">JAX on starting: ' + "; ".join(
            escape(w) for w in r.platform) + "</div>")
    if not live:
        parts.append('<div class="eg-muted">device, error figures and timings: see the widget '
                     "in a live notebook</div>")
    return "".join(parts)


def _num(x) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "not run"
    return f'<span class="eg-num">{x:.2e}</span>' if isinstance(x, float) else escape(str(x))


def _verdict(passed: bool, message: str) -> str:
    if passed:
        return '<span class="eg-pass">pass</span>'
    return '<span class="eg-fail">fail</span>' + (f" {escape(message)}" if message else "")


def page(a, index: int | None = None, count: int = 1) -> str:
    """The static, deterministic HTML of the whole analysis (the bundle's ``text/html``)."""
    body = [header(a, index, count)]
    for title, section in (("Backward", backward(a)), ("Loops", loops(a)),
                           ("Shapes", shapes(a)), ("Cost", cost(a)),
                           ("Check", check(a, live=False))):
        body.append(f"<h3>{title}</h3>{section}")
    return wrap("".join(body), style=True)


def progress(count: int, done: int = 0) -> str:
    """The line shown while the check runs."""
    what = "the gradients" if count == 1 else f"einsum {done + 1} of {count}"
    return wrap(f'<div class="eg-muted">checking {what} against jax.vjp …</div>')
