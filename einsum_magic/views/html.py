"""The HTML display of one analysed einsum: the page (every bundle's ``text/html``) and its tabs.

Every function here is a pure function of an :class:`~einsum_magic.cell.analysis.Analysis`
returning an HTML string. Styling is one scoped stylesheet (:func:`stylesheet`, every
rule under ``.einsum-grad``; each page carries the rules it uses, written compactly, as
every run of a cell stores its pages in the notebook) written with JupyterLab's CSS variables
(``var(--jp-ui-font-color1)``, ``var(--jp-layout-color1)``, ``var(--jp-border-color2)``,
``var(--jp-code-font-family)``, the ``--jp-mirror-editor-*`` token colours, …) with
plain fallbacks, so it reads in light and dark themes and outside JupyterLab. Code is
tokenised by Pygments (:func:`highlight`, :func:`highlight_module` for whole exported
modules) and coloured by that stylesheet. Each letter keeps one colour in every tab:
:func:`painted` (:mod:`einsum_magic.views.colours`) paints every panel and the header; the
Diagram tab is :mod:`einsum_magic.views.diagram`'s SVG.

:func:`page` is the whole display, the ``text/html`` of every display bundle: the
header over one tab per entry of :data:`TABS` (a title and a function of the Analysis
returning HTML: adding a tab is one function and one line). The tabs switch with CSS
alone (radio inputs and their labels: click or arrow keys; no script, no network), so
the page reads the same in JupyterLab, VS Code, Colab, nbviewer, GitHub and
nbconvert's HTML; every code block is a ``<pre>`` (monospace with no stylesheet at
all, where every panel then shows in turn under its title), each panel is
height-limited, and the long Export is folded in ``<details>``. nbval compares the
page, so it is deterministic: its Check tab shows PASS/FAIL, dtype, precision and
tolerances but no device, error figures or timings (:func:`check` with ``live=True``
shows those, in a live widget). Its Cost tab (:func:`cost`) holds FLOP counts, which
depend on the shapes only.

>>> from einsum_magic import derive
>>> from einsum_magic.cell.analysis import Analysis
>>> from einsum_magic.cell.calls import equation_call
>>> a = Analysis(equation_call("ij,jk->ik"), derive("ij,jk->ik", shapes=((2, 3), (3, 4))),
...              "defaults", check_note="skipped (--no-check)")
>>> "var(--jp-border-color2" in page(a) and "dL_dC" in backward(a)
True
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from html import escape

from . import teaching
from . import colours as _colours, diagram as _diagram
from ..compute.cost import cost as cost_report
from ..errors import EinsumError
from .text import check_line, forward_code, grad_code, shape_text
from .verdict import EXPECT_WORDS, answer_hidden

__all__ = ["stylesheet", "highlight", "highlight_module", "tokens_html", "token_tag", "header",
           "verdict", "backward", "diagram", "loops", "shapes", "cost", "export", "check",
           "check_static", "TABS", "tabs", "page", "meaning", "progress", "wrap", "painted"]

#: Pygments token type → its short class (Pygments' own), the JupyterLab editor colour variable,
#: a light-theme fallback and a font. A token takes the most specific entry that holds it
#: (``Keyword.Constant`` is ``k``, ``Operator.Word`` is ``ow``); a token of none (plain names,
#: spaces) is plain text, with no element.
_TOKEN_COLOURS = (
    ("Keyword", "k", "keyword", "#008000", "bold"),
    ("Operator.Word", "ow", "keyword", "#aa22ff", "bold"),
    ("Name.Builtin", "nb", "builtin", "#008000", ""),
    ("Name.Function", "nf", "def", "#0000ff", ""),
    ("Name.Class", "nc", "def", "#0000ff", "bold"),
    ("Name.Attribute", "na", "property", "#7d9029", ""),
    ("Name.Decorator", "nd", "meta", "#aa22ff", ""),
    ("String", "s", "string", "#ba2121", ""),
    ("Number", "m", "number", "#008800", ""),
    ("Comment", "c", "comment", "#408080", "italic"),
    ("Operator", "o", "operator", "#aa22ff", ""),
    ("Punctuation", "p", "punctuation", "inherit", ""),
)

#: Custom properties the rules below share: JupyterLab's variable with a plain fallback,
#: written once (the fallbacks are never CSS-wide keywords, which a custom property would
#: take as its own).
_SHARED = """
.einsum-grad { --eg-bd: var(--jp-border-color2, rgba(127, 127, 127, 0.35));
  --eg-bg2: var(--jp-layout-color2, rgba(127, 127, 127, 0.14));
  --eg-fg2: var(--jp-ui-font-color2, color-mix(in srgb, currentColor 70%, transparent)); }
"""

_BASE_CSS = """
.einsum-grad { font-family: var(--jp-ui-font-family, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, inherit);
  background: var(--jp-layout-color1, transparent); line-height: 1.4; margin-bottom: 10px; }
.einsum-grad .eg-title { font-weight: bold; margin: 2px 0; }
.einsum-grad h3 { font-size: var(--jp-content-font-size3, 1.25em); margin: 14px 0 4px 0;
  color: var(--jp-ui-font-color1, inherit); border-bottom: 1px solid var(--eg-bd); }
.einsum-grad h4 { font-size: var(--jp-content-font-size2, 1.1em); margin: 10px 0 4px 0;
  color: var(--jp-ui-font-color1, inherit); }
.einsum-grad code, .einsum-grad pre { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 13px); }
.einsum-grad code { background: var(--eg-bg2); padding: 0 3px; border-radius: 2px; }
.einsum-grad pre.eg-code { background: var(--jp-cell-editor-background, rgba(127, 127, 127, 0.08));
  color: var(--jp-content-font-color1, inherit); border: 1px solid var(--eg-bd); border-radius: 2px;
  padding: 4px 8px; margin: 3px 0; white-space: pre; overflow-x: auto; }
.einsum-grad table.eg-table { border-collapse: collapse; margin: 4px 0; }
.einsum-grad table.eg-table th, .einsum-grad table.eg-table td { border: 1px solid var(--eg-bd);
  padding: 2px 8px; text-align: left; vertical-align: top; }
.einsum-grad table.eg-table th { background: var(--eg-bg2); font-weight: 600; }
.einsum-grad .eg-num { white-space: nowrap; }
.einsum-grad .eg-muted { color: var(--eg-fg2); }
.einsum-grad .eg-pass { color: var(--jp-success-color1, #388e3c); font-weight: bold; }
.einsum-grad .eg-fail { color: var(--jp-error-color1, #d32f2f); font-weight: bold; }
.einsum-grad .eg-warn { color: var(--jp-warn-color1, #f57c00); font-weight: bold; }
.einsum-grad ol, .einsum-grad ul { margin: 2px 0; padding-left: 22px; }
.einsum-grad details > summary { cursor: pointer; margin: 6px 0 2px 0; }
.einsum-grad .eg-tabs { position: relative; margin-top: 6px; }
.einsum-grad .eg-tabs > input { position: absolute; opacity: 0; width: 1px; height: 1px;
  margin: 0; pointer-events: none; }
.einsum-grad .eg-tabs > label { display: inline-block; padding: 3px 12px; margin: 0 2px -1px 0;
  cursor: pointer; user-select: none; color: var(--eg-fg2); background: var(--eg-bg2);
  border: 1px solid var(--eg-bd); border-radius: 3px 3px 0 0; }
.einsum-grad .eg-tabs > input:checked + label { color: var(--jp-ui-font-color1, inherit);
  background: var(--jp-layout-color1, transparent); font-weight: 600;
  border-bottom-color: var(--jp-layout-color1, transparent); }
.einsum-grad .eg-tabs > input:focus-visible + label {
  outline: 2px solid var(--jp-brand-color1, #1976d2); outline-offset: -2px; }
.einsum-grad .eg-tabs > .eg-panel { display: none; max-height: 30em; overflow: auto;
  padding: 2px 8px 6px 8px; border: 1px solid var(--eg-bd); }
.einsum-grad .eg-tabs > .eg-panel > h3.eg-panel-title { display: none; }
.einsum-grad .eg-tabs:not(:has(> input)) > .eg-panel { display: block; }
.einsum-grad .eg-tabs:not(:has(> input)) > .eg-panel > h3.eg-panel-title { display: block; }
"""

#: Tabs the stylesheet can switch (one rule each); :data:`TABS` may hold up to this many.
MAX_TABS = 16


def stylesheet(page: str | None = None) -> str:
    """The scoped ``<style>`` element: layout, token and letter colours, in --jp- variables.

    With ``page`` (the HTML it will style), only the rules that page needs: a selector
    whose classes or elements the page does not hold is left out, and so is the colour of
    a letter it does not paint; the tabs switch up to the page's count. Written compactly:
    every page carries its own stylesheet (an output must read alone: cleared neighbours,
    nbviewer, GitHub), so what it does not need is weight in every notebook.

    >>> css = stylesheet('<div class="einsum-grad"><code>x</code></div>')
    >>> ".einsum-grad code{" in css and "eg-tabs" not in css and "eg-l0" not in css
    True
    """
    if page is None:
        return _stylesheet(None, None, MAX_TABS)
    attrs = {part.split('"', 1)[0] for part in page.split(' class="')[1:]}
    classes = frozenset(c for attr in attrs for c in attr.split())
    # an element a selector names is in the page if its tag opens there (a longer tag
    # that starts alike only keeps a rule in: never one too few)
    tags = frozenset(t for t in _selector_tags() if f"<{t}" in page)
    return _stylesheet(classes, tags, page.count('type="radio"'))


@functools.lru_cache(maxsize=1)
def _selector_tags() -> frozenset:
    """Every element name a selector of the full stylesheet needs."""
    css = _stylesheet(None, None, MAX_TABS).removeprefix("<style>")
    return frozenset(t for block in css.split("}") if "{" in block
                     for sel in block.split("{")[0].split(",") for t in _needs(sel)[1])

#: What a selector needs: its classes and elements, outside :is()/:not()/:has() (which
#: test the page's surroundings: a theme, a frontend).
_SELECTOR_CLASS = re.compile(r"\.([\w-]+)")
_SELECTOR_TAG = re.compile(r"(?:^|[\s>+~])([a-z][\w-]*)")
_PAREN = re.compile(r"\([^()]*(?:\([^()]*\)[^()]*)*\)")
#: Classes set on the display from outside the page: the scope, and eg-dark (dark variants
#: on request, where a frontend's theme says nothing).
_OUTSIDE = frozenset({"einsum-grad", "eg-dark"})


def _needs(selector: str) -> tuple[frozenset, frozenset]:
    plain = _PAREN.sub("", selector)
    return (frozenset(_SELECTOR_CLASS.findall(plain)) - _OUTSIDE,
            frozenset(_SELECTOR_TAG.findall(plain)))


@functools.lru_cache(maxsize=256)
def _stylesheet(classes: frozenset | None, tags: frozenset | None, count: int) -> str:
    letters = None if classes is None else tuple(sorted(
        {int(c[4:]) for c in classes if re.fullmatch(r"eg-[lsf]\d+", c)}
        | {int(t[2:]) for t in tags if re.fullmatch(r"l-\d+", t)}))
    # the panel of the k-th radio shows while that radio is checked: CSS alone, no script
    # (the panels are the only divs among the tabs' children)
    switch = (",\n".join(f".einsum-grad .eg-tabs > input:nth-of-type({k}):checked ~ "
                         f"div:nth-of-type({k})" for k in range(1, count + 1))
              + " { display: block; }") if count else ""
    rules = "\n".join([_SHARED, _BASE_CSS, teaching.CSS, switch, _token_css(),
                       _colours.css(letters), _diagram.css(letters)])
    out = []
    for block in rules.split("}"):
        if "{" not in block:
            continue
        head, body = block.split("{", 1)
        selectors = [" ".join(sel.split()) for sel in head.split(",")]
        if classes is not None:
            selectors = [sel for sel in selectors if _needed(_needs(sel), classes, tags)]
        body = "".join(f"{p.strip()}:{_compact(v)};" for p, v in
                       (d.split(":", 1) for d in body.split(";") if d.strip()))
        if selectors and body:
            out.append(",".join(re.sub(r"\s*([>+~])\s*", r"\1", sel) for sel in selectors)
                       + "{" + body.rstrip(";") + "}")
    return "<style>" + "\n".join(out) + "</style>"


def _compact(value: str) -> str:
    """A declaration's value in fewer bytes, meaning the same.

    >>> _compact(" var(--x, rgba(127, 127, 127, 0.35))  1px  solid")
    'var(--x,rgba(127,127,127,.35)) 1px solid'
    """
    value = re.sub(r"\s*,\s*", ",", " ".join(value.split()))
    return re.sub(r"(?<![\w.])0\.(?=\d)", ".", value)


def _needed(need, classes, tags) -> bool:
    return need[0] <= classes and need[1] <= tags


@functools.lru_cache(maxsize=1)
def _token_css() -> str:
    rules = []
    for _, cls, var, fallback, font in _TOKEN_COLOURS:
        weight = {"bold": "font-weight: bold; ", "italic": "font-style: italic; "}.get(font, "")
        rules.append(f".einsum-grad {token_tag(cls)} {{ color: var(--jp-mirror-editor-{var}-color, "
                     f"{fallback}); {weight}}}")
    return "\n".join(rules)


@functools.lru_cache(maxsize=2048)
def highlight(code: str) -> str:
    """``code`` as a ``<pre class="eg-code">`` block of Pygments token spans (cached)."""
    body = tokens_html(_lexer().get_tokens(code)).rstrip("\n")
    return f'<pre class="eg-code">{body}</pre>'


@functools.lru_cache(maxsize=64)
def highlight_module(code: str) -> str:
    """A whole module of Python (an export) as a ``<pre class="eg-code">`` block (cached).

    Exported modules hold what the lexer of :func:`highlight` does not know (docstrings,
    decorators, classes, imports); :func:`_module_lexer` adds those, and on exported
    modules yields the same HTML as Pygments' ``PythonLexer`` (the tests compare the
    two) about 10x faster: every page holds its Export, so every display pays for it.
    """
    body = tokens_html(_module_lexer().get_tokens(code)).rstrip("\n")
    return f'<pre class="eg-code">{body}</pre>'


@functools.lru_cache(maxsize=None)
def _token_class(ttype) -> str:
    """The short class of a Pygments token type (:data:`_TOKEN_COLOURS`), ``""`` for none."""
    from pygments.token import string_to_tokentype

    held = [(string_to_tokentype(name), cls) for name, cls, *_ in _TOKEN_COLOURS]
    held = [(root, cls) for root, cls in held if ttype in root]
    return max(held, key=lambda h: len(h[0]))[1] if held else ""


def tokens_html(tokens) -> str:
    """Pygments ``(type, text)`` tokens as HTML: an element per run of one colour class.

    The element of Pygments' short class ``k`` is ``<t-k>`` (:func:`token_tag`): an
    autonomous custom element that nothing defines, so it is inline, unstyled text
    without the stylesheet, as a ``<span>`` is, at half the bytes of
    ``<span class="k">…</span>`` (every run of a cell stores its pages). A token of no
    colour is plain text, except a one-letter name (``<t-n>``, which :func:`painted`
    colours as a loop index); a run of tokens of one class is one element, spaces between
    them included; only ``&``, ``<`` and ``>`` are escaped.

    >>> from pygments.token import Name, Operator, Punctuation, Text
    >>> tokens_html([(Name, "x"), (Text, " "), (Operator, "="), (Text, " "), (Name, "f"),
    ...              (Punctuation, "("), (Name, "ab"), (Punctuation, ")"), (Text, " "),
    ...              (Punctuation, "[")])
    '<t-n>x</t-n> <t-o>=</t-o> <t-n>f</t-n><t-p>(</t-p>ab<t-p>) [</t-p>'
    """
    from pygments.token import Name

    runs: list = []                              # [class, text], merged as they come
    for ttype, value in tokens:
        cls = _token_class(ttype)
        if not cls and ttype in Name and len(value) == 1 and value.isascii() and value.isalpha():
            cls = "n"
        if runs and cls != "n" and runs[-1][0] == cls:
            runs[-1][1] += value
        elif (len(runs) > 1 and cls and cls != "n" and runs[-2][0] == cls
              and not runs[-1][0] and runs[-1][1].isspace()):
            space = runs.pop()[1]                # spaces between two runs of one class
            runs[-1][1] += space + value
        else:
            runs.append([cls, value])
    return "".join(f"<t-{cls}>{escape(text, quote=False)}</t-{cls}>" if cls
                   else escape(text, quote=False) for cls, text in runs)


def token_tag(cls: str) -> str:
    """The element that carries Pygments' short class ``cls`` in highlighted code.

    >>> token_tag("ow")
    't-ow'
    """
    return f"t-{cls}"


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


@functools.lru_cache(maxsize=None)
def _module_lexer():
    """:func:`_lexer` plus what exported modules add: docstrings, def, class, decorators, imports."""
    from pygments.lexer import bygroups, default, include
    from pygments.token import Keyword, Name, Operator, String, Text

    base = type(_lexer())

    class ExportedModuleLexer(base):
        name = "einsum_magic exported module"
        tokens = {
            "root": [
                (r"\n", Text.Whitespace),
                (r'^(\s*)("""[\s\S]*?""")', bygroups(Text.Whitespace, String.Doc)),
                (r"(def)(\s+)", bygroups(Keyword, Text.Whitespace), "funcname"),
                (r"(class)(\s+)", bygroups(Keyword, Text.Whitespace), "classname"),
                (r"(from)(\s+)", bygroups(Keyword.Namespace, Text.Whitespace), "fromimport"),
                (r"(import)(\s+)", bygroups(Keyword.Namespace, Text.Whitespace), "import"),
                (r"(raise|try|except|finally|class|assert|yield|with|global|break|continue)\b",
                 Keyword),
                (r"@[A-Za-z_]\w*", Name.Decorator),
                include("generated"),
            ],
            "generated": base.tokens["root"],
            "funcname": [(r"[A-Za-z_]\w*", Name.Function, "#pop")],
            "classname": [(r"[A-Za-z_]\w*", Name.Class, "#pop")],
            "import": [
                (r"(\s+)(as)(\s+)", bygroups(Text.Whitespace, Keyword, Text.Whitespace)),
                (r"\.", Name.Namespace),
                (r"[A-Za-z_]\w*", Name.Namespace),
                (r"(\s*)(,)(\s*)", bygroups(Text.Whitespace, Operator, Text.Whitespace)),
                default("#pop"),
            ],
            "fromimport": [
                (r"(\s+)(import)\b", bygroups(Text.Whitespace, Keyword.Namespace), "#pop"),
                (r"\.", Name.Namespace),
                (r"[A-Za-z_]\w*", Name.Namespace),
                default("#pop"),
            ],
        }

    return ExportedModuleLexer(stripnl=False, ensurenl=False)


def wrap(body: str, style: bool = False) -> str:
    """``body`` inside the ``.einsum-grad`` scope (with the stylesheet it needs when ``style``)."""
    inner = f'<div class="einsum-grad">{body}</div>'
    return (stylesheet(inner) if style else "") + inner


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def painted(a, fragment: str) -> str:
    """``fragment`` of ``a``'s display with every letter in its colour (:mod:`einsum_magic.views.colours`)."""
    d = a.derivation
    return _colours.paint_html(fragment, _colours.of(d), d.names + (d.output,))


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
             f"{verdict(a)}</div>", highlight(forward_code(a))]
    written = forward_code(a).split(" = ", 1)[-1]
    if a.equals:                    # a product: which einsum it is
        parts.append(f'<div class="eg-muted">{_code(call.source)} is {escape(a.equals)}</div>')
    elif call.style != "equation" and " ".join(call.source.split()) != written:
        parts.append(f'<div class="eg-muted">as written: {_code(call.source)}</div>')
    if call.legend:
        parts.append('<div class="eg-muted">' + ", ".join(
            f"{_code(n)} is {_code(e)}" for n, e in call.legend) + "</div>")
    shapes = ", ".join(f"{escape(n)} {shape_text(s)}"
                       for n, s in zip(d.names, d.shapes or (None,) * len(d.names)))
    parts.append(f"<div>shapes: {shapes} → {escape(d.output)} {shape_text(d.output_shape)} "
                 f'<span class="eg-muted">({escape(a.sizes_from)})</span></div>')
    return "".join(parts)


def verdict(a) -> str:
    """The verdict badge at the right of the header's title (the check, ``--expect``):
    :func:`einsum_magic.views.teaching.badge`."""
    return " " + teaching.badge(a)


def backward(a) -> str:
    """Each gradient: its code, the swap spelled out step by step, readings and shape."""
    d = a.derivation
    parts = []
    for g in d.grads:
        parts.append(f"<h4>{escape(g.target)} <span class=\"eg-muted\">shape "
                     f"{shape_text(g.shape)} = {escape(g.wrt)}'s shape</span></h4>")
        parts.append(highlight(grad_code(a, g)))
        parts.append("<ol>" + "".join(f"<li>{escape(s)}</li>" for s in g.steps) + "</ol>")
        relabelled = _colours.for_relabelled(g.equation, g.relabelled, _colours.of(d))
        reading = f"relabelled <code>{_colours.paint(g.relabelled, relabelled)}</code>"
        if g.interpretation:
            reading += f", reads {_code(f'{g.target} = {g.interpretation}')}"
        parts.append(f"<div>{_code(g.equation)}: {reading}</div>")
        if a.check is not None and g.wrt in a.check.real:
            parts.append(f"<div>{escape(g.wrt)} is real: its gradient is "
                         f"{_code(f'np.real({g.target})')}, as jax.vjp and torch give it</div>")
    for t in d.totals:
        parts.append(f"<h4>product rule <span class=\"eg-muted\">{escape(t.wrt)} is passed "
                     f"{len(t.parts)} times</span></h4>")
        parts.append(highlight(t.code))
    return "".join(parts)


def diagram(a) -> str:
    """Tensor networks: the forward, and each gradient's beside it (:mod:`einsum_magic.views.diagram`)."""
    call = a.call
    return _diagram.section(a.derivation, call.axes if call.style == "einops" else ())


def loops(a) -> str:
    """The forward pass and each gradient as for-loops (every backward is the plain swap)."""
    d, call = a.derivation, a.call
    parts = []
    if call.style == "einops" and any(c != n for c, n in call.axes):
        parts.append('<div class="eg-muted">loop indices are letters: ' + ", ".join(
            f"{escape(c)} = {escape(n)}" for c, n in call.axes) + "</div>")
    parts.insert(0, teaching.swaps(a))
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
    return f"{n:,}"             # digits and commas never break a line: no nowrap span needed


def cost(a) -> str:
    """The Cost tab: FLOPs by one rule in plain words (:func:`einsum_magic.views.teaching.cost`),
    with :func:`cost_details` folded in."""
    if a.derivation.shapes is None:
        return cost_details(a)
    return teaching.cost(a, cost_details(a))


def cost_details(a) -> str:
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
    rows = [[pass_, _step(s), shape_text(s.shape), _count(s.flops)]
            for pass_, steps in (("forward", p.forward), ("backward", p.backward))
            for s in steps]
    parts.append(_table(["pass", "step", "shape", "FLOPs"], rows))
    return "".join(parts)


def _step(s) -> str:
    """One step of the joint plan: an einsum as code, data movement by its name."""
    if s.kind in ("einsum", "add"):
        return _code(s.line)
    word = {"diagonal": "diagonal read", "scatter": "diagonal write"}.get(s.kind, s.kind)
    return (f"{_code(s.target)} ← {escape(word)} of {_code(', '.join(s.inputs))} "
            f"{_code(s.equation)}")


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
    """The backward as standalone source for NumPy, JAX and PyTorch (:mod:`einsum_magic.compute.export`).

    Pure string generation: nothing here imports JAX or PyTorch.
    """
    from ..compute.export import export as source

    d = a.derivation
    if d.shapes is None:
        return '<div class="eg-muted">the export needs shapes</div>'
    parts = ['<div class="eg-muted">Written for these shapes; the gradients are computed '
             "together along the forward's path (see Cost). In Python, "
             f"{_code('d.export(target)')} returns this source and "
             f"{_code('d.compile(target)')} runs it (with -o NAME, d is "
             f"{_code('NAME.derivations[k]')}).</div>"]
    for target, title, what in _exports(d):
        try:
            body = highlight_module(source(d, target))
        except EinsumError as e:
            body = f'<div class="eg-warn">{escape(str(e).splitlines()[0])}</div>'
        parts.append(f'<details><summary><strong>{title}</strong> <span class="eg-muted">'
                     f"{escape(what)}</span></summary>{body}</details>")
    return "".join(parts)


def check(a, live: bool = True) -> str:
    """The check against ``jax.vjp``; ``live=False`` leaves out device, errors and timings."""
    r = a.check
    if r is None:
        cls = "eg-warn" if "JAX" in a.check_note else "eg-muted"
        return f'<div class="{cls}">{escape(check_line(a))}</div>'
    badge = "eg-pass" if r.passed else "eg-fail"
    summary = r.summary.split(", ", 1)[-1] if r.summary.startswith("check: ") else r.summary
    parts = [f'<div><span class="{badge}">{r.status}</span> '
             f"{escape(summary)}</div>"]
    operands = "your arrays" if r.user_arrays else "seeded random arrays"
    if r.reference == "adjoint":       # NumPy's adjoint test stood in for JAX
        setting = [["checked with", "NumPy: exact adjoint test &lt;g, einsum(…, dX, …)&gt; = "
                    "&lt;dL_dX, dX&gt;, random dX and g"],
                   ["why not JAX", escape(r.fallback) or "not asked for"],
                   ["dtype", escape(r.dtype)], ["operands", operands]]
        if live and r.fallback_detail:     # JAX's own words: versions, paths, devices
            setting.insert(2, ["JAX said", f"<pre>{escape(r.fallback_detail)}</pre>"])
    else:
        setting = [["dtype", escape(r.dtype)], ["matmul precision", escape(r.precision)],
                   ["operands", operands]]
        if live:
            setting = [["device", escape(r.device)], ["backend", escape(r.backend)]] + setting
    parts.append(_table(["setting", "value"], setting))
    hidden = answer_hidden(a)           # an open exercise: no derived einsum, live or not
    derived = [('<span class="eg-muted">hidden</span>' if hidden else _code(g.equation))
               for g in r.grads]
    if live and r.reference == "adjoint":
        head = ["gradient", "derived einsum", "adjoint test: |left - right|",
                "relative to the scale", "rtol", "result"]
        rows = [[escape(g.target), eq, _num(g.max_abs_error),
                 _num(g.max_rel_error), _num(g.rtol), _verdict(g.passed, g.message)]
                for g, eq in zip(r.grads, derived)]
    elif live:
        head = ["gradient", "derived einsum", "max abs error vs jax.vjp", "max rel error",
                "vs NumPy float64", "rtol", "atol", "result"]
        rows = [[escape(g.target), eq, _num(g.max_abs_error),
                 _num(g.max_rel_error), _num(g.ref_abs_error), _num(g.rtol), _num(g.atol),
                 _verdict(g.passed, g.message)] for g, eq in zip(r.grads, derived)]
    else:
        head = ["gradient", "derived einsum", "rtol", "atol", "result"]
        rows = [[escape(g.target), eq, _num(g.rtol), _num(g.atol),
                 _verdict(g.passed, "")] for g, eq in zip(r.grads, derived)]
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
        parts.append('<div class="eg-muted">device, error figures and timings: live under '
                     "this display in JupyterLab, or in the report of -o NAME</div>")
    return "".join(parts)


def _num(x) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "not run"
    return f'<span class="eg-num">{x:.2e}</span>' if isinstance(x, float) else escape(str(x))


def _verdict(passed: bool, message: str) -> str:
    if passed:
        return '<span class="eg-pass">pass</span>'
    return '<span class="eg-fail">fail</span>' + (f" {escape(message)}" if message else "")


def check_static(a) -> str:
    """The Check tab of the page: :func:`check` without device, error figures or timings."""
    return check(a, live=False)


def exercise(a) -> str | None:
    """The Exercise tab (:func:`einsum_magic.views.teaching.exercise`); ``None``, no tab, without
    ``--expect``."""
    return teaching.exercise(a) if a.expectations else None


#: The tabs of the page, in order: (title, function of the Analysis returning HTML, or
#: ``None`` for no tab). While an exercise is open or wrong, what shows the derived answer
#: sits behind a closed Reveal fold (:func:`einsum_magic.views.teaching.reveal`).
#: Adding a tab is one function and one line here; the stylesheet switches up to
#: :data:`MAX_TABS` of them.
TABS = [
    ("Exercise", exercise),
    ("Backward", lambda a: teaching.reveal(a, backward(a))),
    ("Diagram", lambda a: teaching.reveal(a, diagram(a))),
    ("Loops", lambda a: teaching.reveal(a, loops(a))),
    ("Shapes", shapes),
    ("Cost", cost),
    ("Export", lambda a: teaching.reveal(a, export(a))),
    ("Check", check_static),
]


def tabs(a, tab: str | None = None, key: str = "") -> str:
    r"""The tabs of :data:`TABS` for analysis ``a``, switched by CSS alone.

    Each tab is a radio input and its label (a click or the arrow keys switch them, as
    any radio group), each panel a ``<div>`` shown while its radio is checked. ``tab``
    names the tab open initially (default: the first). Without a stylesheet every
    panel shows, one after the other, under its own ``<h3>`` title. The radios' group
    name is a digest of the content and ``key``: deterministic (a re-run cell writes
    the same page), and two displays on one page share it only when everything they
    show is the same (pass a ``key`` to tell such twins apart).

    >>> from einsum_magic import derive
    >>> from einsum_magic.cell.analysis import Analysis
    >>> from einsum_magic.cell.calls import equation_call
    >>> a = Analysis(equation_call("ij->"), derive("ij->", shapes=((2, 3),)), "defaults")
    >>> import re
    >>> re.findall(r' checked><label for="[\w-]+">(\w+)<', tabs(a, tab="Shapes"))
    ['Shapes']
    >>> tabs(a, tab="Nope")
    Traceback (most recent call last):
    ValueError: no tab 'Nope'; the tabs are Backward, Diagram, Loops, Shapes, Cost, Export, Check
    """
    shown = [(title, panel) for title, panel in ((t, make(a)) for t, make in TABS)
             if panel is not None]
    titles = [title for title, _ in shown]
    panels = [panel for _, panel in shown]
    if tab is None:
        tab = titles[0]
    if tab not in titles:
        raise ValueError(f"no tab {tab!r}; the tabs are {', '.join(titles)}")
    if len(TABS) > MAX_TABS:
        raise ValueError(f"the stylesheet switches at most {MAX_TABS} tabs, not {len(TABS)}")
    panels = [painted(a, panel) for panel in panels]
    digest = hashlib.sha1("\0".join([key, *titles, *panels]).encode()).hexdigest()[:12]
    group = f"eg-{digest}"
    radios = []
    for k, title in enumerate(titles):
        checked = " checked" if title == tab else ""
        radios.append(f'<input type="radio" name="{group}" id="{group}-{k}"{checked}>'
                      f'<label for="{group}-{k}">{escape(title)}</label>')
    body = [f'<div class="eg-panel" data-tab="{escape(title)}"><h3 class="eg-panel-title">'
            f"{escape(title)}</h3>{panel}</div>" for title, panel in zip(titles, panels)]
    return '<div class="eg-tabs">' + "".join(radios) + "".join(body) + "</div>"


def page(a, index: int | None = None, count: int = 1, tab: str | None = None,
         key: str = "") -> str:
    """The self-contained HTML display of the analysis (the bundle's ``text/html``).

    The header over the CSS-only :func:`tabs` (``tab`` open initially), with its
    stylesheet: no script, no network, deterministic (nbval compares it).
    """
    return wrap(meaning_comment(meaning(a, index, count)) + painted(a, header(a, index, count))
                + tabs(a, tab, key=f"{key}\0{index}\0{count}"),
                style=True)


def meaning_comment(said: str) -> str:
    """The comment that carries a display's meaning line, to which the sanitize file reduces it.

    Nothing in the line may end the comment early:

    >>> meaning_comment("a --> b <!-- c")
    '<!-- einsum_grad meaning: a -&#45;> b &lt;!-- c -->'
    """
    for end, safe in (("<!--", "&lt;!--"), ("--!>", "-&#45;!>"), ("-->", "-&#45;>")):
        said = said.replace(end, safe)
    return f"<!-- einsum_grad meaning: {said} -->"


def meaning(a, index: int | None = None, count: int = 1) -> str:
    r"""What the display says, in one deterministic line: verdicts, equations, shapes.

    The page carries it in a comment, ``<!-- einsum_grad meaning: … -->``, to which the
    nbval sanitize file shipped with the package (:mod:`einsum_magic.sanitize`) reduces
    the whole page: stored notebooks then compare what the display means, not its
    markup (styles, highlighting, tabs), which changes between releases.

    >>> from einsum_magic import derive
    >>> from einsum_magic.cell.analysis import Analysis
    >>> from einsum_magic.cell.calls import equation_call
    >>> a = Analysis(equation_call("ij->i"), derive("ij->i", shapes=((2, 3),)), "defaults",
    ...              check_note="skipped (--no-check)")
    >>> print(meaning(a).replace(" | ", "\n"))
    equation
    check: skipped (--no-check)
    B = np.einsum('ij->i', A)
    A (2, 3) -> B (2,)
    dL_dA = np.einsum('i,j->ij', dL_dB, np.ones(A.shape[1]))
    """
    d = a.derivation
    call = a.call                   # where the header says it is: a function's line, a library
    where = call.where or (f"line {call.line}" if call.style != "equation" else "equation")
    if count > 1 and index is not None:
        where = f"einsum {index + 1} of {count}, {where}"
    shapes = ", ".join(f"{n} {shape_text(s)}"
                       for n, s in zip(d.names, d.shapes or (None,) * len(d.names)))
    parts = [where, check_line(a)]
    parts += [f"expect {e.target} = {e.proposal!r}: {EXPECT_WORDS.get(e.verdict, e.verdict)}"
              for e in a.expectations]
    parts += [forward_code(a), f"{shapes} -> {d.output} {shape_text(d.output_shape)}"]
    if answer_hidden(a):            # an open exercise: the answer stays out of the page
        parts.append("backward hidden until the proposal is right")
    else:
        parts += [grad_code(a, g) for g in d.grads] + [t.code for t in d.totals]
    return " | ".join(" ".join(str(p).split()) for p in parts)


def progress(count: int, done: int = 0) -> str:
    """The line shown while the check runs."""
    what = "the gradients" if count == 1 else f"einsum {done + 1} of {count}"
    return wrap(f'<div class="eg-muted">checking {what} against jax.vjp …</div>')
