"""The display of one analysed einsum: the ipywidgets composite and the MIME bundle around it.

:class:`GradDisplay` is what the magic displays. Its ``_repr_mimebundle_`` returns

* ``text/plain``: :func:`einsum_magic.text.render`, deterministic (nbval compares it);
* ``text/html``: :func:`einsum_magic.html.page`, the static deterministic fallback for
  nbconvert and GitHub, where no widget manager exists;
* ``application/vnd.jupyter.widget-view+json``: the live widget (:func:`build`), only
  when asked for (``widgets=True``: a kernel with ipywidgets behind it).

The widget is a header (the call, the forward einsum, the shapes) over a ``Tab`` with
one tab per entry of :data:`TABS`. A tab is a function of the
:class:`~einsum_magic.analysis.Analysis` returning a widget: adding one is one function
and one line in :data:`TABS`.

A tab that is costly to fill and rarely opened returns :func:`lazy_html`: its HTML is
written when the tab is first selected (an observer on ``Tab.selected_index``, which
the frontend syncs back to the kernel), not when the cell is displayed. The Export tab
is one: highlighting three exported modules costs more than building the rest of the
widget, and only a reader who opens the tab needs it.

ipywidgets is imported when a widget is first built, never by importing this module.
"""

from __future__ import annotations

from . import html, text

__all__ = ["GradDisplay", "build", "TABS", "WIDGET_MIME", "PENDING", "progress_widget",
           "lazy_html"]

#: The MIME type of a widget view (nbval skips it when comparing outputs).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _html(value: str):
    import ipywidgets

    return ipywidgets.HTML(value=value)


#: What a lazy tab shows until it is first selected (a live kernel fills it at once).
PENDING = html.wrap('<div class="eg-muted">written when this tab is opened</div>')


def lazy_html(render):
    """An HTML widget whose value is ``render()``, written when its tab is first selected."""
    w = _html(PENDING)
    w._einsum_render = render
    return w


def _fill(tabs) -> None:
    """Write the selected tab's HTML if it is a :func:`lazy_html` not written yet."""
    index = tabs.selected_index
    if index is None or not 0 <= index < len(tabs.children):
        return
    child = tabs.children[index]
    render = getattr(child, "_einsum_render", None)
    if render is not None:
        child._einsum_render = None
        child.value = render()


def backward_tab(a):
    """Each gradient: code, the swap step by step, relabelled reading, interpretation, shape."""
    return _html(html.wrap(html.painted(a, html.backward(a))))


def diagram_tab(a):
    """Tensor networks of the forward and of each gradient beside it, as SVG."""
    return _html(html.wrap(html.diagram(a)))


def loops_tab(a):
    """The forward pass and each gradient as for-loops."""
    return _html(html.wrap(html.painted(a, html.loops(a))))


def shapes_tab(a):
    """Letters with size, role and carriers; operand, output and gradient shapes; a size
    slider per letter the arrays do not fix (:mod:`einsum_magic.sliders`)."""
    from . import sliders

    table = _html(html.wrap(html.painted(a, html.shapes(a))))
    drag = sliders.widget(a)
    if drag is None:
        return table
    import ipywidgets

    return ipywidgets.VBox([table, drag])


def cost_tab(a):
    """FLOPs of the forward and each gradient (naive, optimised, steps) and the joint plan."""
    return _html(html.wrap(html.painted(a, html.cost(a))))


def export_tab(a):
    """The backward as NumPy, JAX and PyTorch source, written when the tab is first opened."""
    return lazy_html(lambda: html.wrap(html.export(a)))


def check_tab(a):
    """PASS/FAIL, device, dtype, precision, per-gradient errors against tolerances, timings."""
    return _html(html.wrap(html.painted(a, html.check(a, live=True))))


#: The tabs, in order: (title, function of the Analysis returning a widget).
TABS = [
    ("Backward", backward_tab),
    ("Diagram", diagram_tab),
    ("Loops", loops_tab),
    ("Shapes", shapes_tab),
    ("Cost", cost_tab),
    ("Export", export_tab),
    ("Check", check_tab),
]


def build(a, index: int | None = None, count: int = 1):
    """The composite widget of analysis ``a``: a header over one tab per :data:`TABS` entry."""
    import ipywidgets

    head = _html(html.wrap(html.painted(a, html.header(a, index, count)), style=True))
    tabs = ipywidgets.Tab(children=[make(a) for _, make in TABS],
                          titles=[title for title, _ in TABS])
    tabs.observe(lambda change: _fill(tabs), names="selected_index")
    _fill(tabs)
    return ipywidgets.VBox([head, tabs])


def progress_widget(count: int):
    """The small widget shown while the check runs (its output's only compared key is '')."""
    return _html(html.progress(count))


class GradDisplay:
    """The displayable of one analysed einsum (einsum ``index`` of ``count`` in its cell)."""

    def __init__(self, analysis, index: int | None = None, count: int = 1,
                 widgets: bool = False):
        self.analysis = analysis
        self.index = index
        self.count = count
        self.widgets = widgets
        self._widget = None

    @property
    def widget(self):
        """The live widget, built on first use."""
        if self._widget is None:
            self._widget = build(self.analysis, self.index, self.count)
        return self._widget

    def text(self) -> str:
        return text.render(self.analysis, self.index, self.count)

    def html(self) -> str:
        return html.page(self.analysis, self.index, self.count)

    def _repr_mimebundle_(self, include=None, exclude=None):
        data = {"text/plain": self.text(), "text/html": self.html()}
        if self.widgets:
            data[WIDGET_MIME] = self.widget._repr_mimebundle_()[WIDGET_MIME]
        return data

    def __repr__(self) -> str:
        return self.text()
