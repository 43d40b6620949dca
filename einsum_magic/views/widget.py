"""The display of one analysed einsum (its MIME bundle) and the live widgets added to it.

:class:`GradDisplay` is what the magic displays. Its ``_repr_mimebundle_`` returns

* ``text/plain``: :func:`einsum_magic.views.text.render`, deterministic (nbval compares it);
* ``text/html``: :func:`einsum_magic.views.html.page`, the whole display (tabs switched by CSS
  alone), deterministic too, left out with ``view="text"``.

Live ipywidgets add only what HTML cannot, in outputs of their own, and only in a
frontend with a working widget manager (:mod:`einsum_magic.views.frontend` decides): the
progress line while the check runs (:func:`progress_widget`) and, after the page,
:func:`live`: one widget per entry of :data:`LIVE` (a title and a function of the
Analysis returning a widget, or ``None`` when it has nothing to add). The page is
never carried in the same bundle as a widget view: nbconvert (and any renderer with
the notebook's widget state) would then show the widget and drop the HTML.

ipywidgets is imported when a widget is first built, never by importing this module.
"""

from __future__ import annotations

from . import html, text

__all__ = ["GradDisplay", "LIVE", "live", "live_bundle", "WIDGET_MIME", "progress_widget"]

#: The MIME type of a widget view (nbval skips it when comparing outputs).
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _html(value: str):
    import ipywidgets

    return ipywidgets.HTML(value=value)


def live_check(a):
    """The check's live figures: device, backend, errors against tolerances, timings.

    The page's Check tab leaves them out to stay deterministic; a live kernel shows
    them folded under the page. ``None`` when the check did not run.
    """
    if a.check is None:
        return None
    r = a.check
    summary = (f'<summary>check details <span class="eg-muted">{html.escape(r.device)}, '
               "errors against tolerances, timings</span></summary>")
    return _html(html.wrap(f"<details>{summary}{html.check(a, live=True)}</details>"))


def live_reveal(a):
    """A *Reveal* button for an exercise that is open or wrong; ``None`` otherwise.

    Pressed, it shows the derived answer (Backward and Loops) under it: what the page
    keeps behind its closed Reveal folds.
    """
    from .verdict import answer_hidden

    if not answer_hidden(a):
        return None
    import ipywidgets

    answer = _html("")
    button = ipywidgets.Button(description="Reveal the answer", icon="eye",
                               tooltip="show the derived backward of this einsum",
                               layout=ipywidgets.Layout(width="auto"))

    def show(_):
        answer.value = html.wrap(html.backward(a) + html.loops(a))
        button.disabled = True

    button.on_click(show)
    return ipywidgets.VBox([button, answer])


def live_sizes(a):
    """A slider per letter the arrays do not fix, over the shapes, FLOPs and forward diagram
    at those sizes (:func:`einsum_magic.views.sliders.widget`); ``None`` when the arrays fix all."""
    from .sliders import widget

    return widget(a)


#: What the live widget adds under the page, in order: (title, function of the Analysis
#: returning a widget or ``None``). Adding one is one function and one line.
LIVE = [
    ("Reveal", live_reveal),
    ("Sizes", live_sizes),
    ("Check details", live_check),
]


def live(a):
    """The live widgets of :data:`LIVE` for ``a`` in one ``VBox``, or ``None`` if none adds anything."""
    children = [w for w in (make(a) for _, make in LIVE) if w is not None]
    if not children:
        return None
    import ipywidgets

    return ipywidgets.VBox(children)


def live_bundle(widget) -> dict:
    """The raw bundle displaying ``widget``: its view alone, which nbval does not compare.

    So a notebook saved where the live widgets were shown and one saved where they were
    not (Colab, VS Code) hold the same outputs for nbval.
    """
    return {WIDGET_MIME: widget._repr_mimebundle_()[WIDGET_MIME]}


def progress_widget(count: int):
    """The small widget shown while the check runs (its output's only compared key is '')."""
    return _html(html.progress(count))


class GradDisplay:
    """The displayable of one analysed einsum (einsum ``index`` of ``count`` in its cell).

    ``tab`` is the tab open initially (default: the first); ``view="text"`` leaves the
    HTML out.
    """

    def __init__(self, analysis, index: int | None = None, count: int = 1,
                 tab: str | None = None, view: str = "html"):
        self.analysis = analysis
        self.index = index
        self.count = count
        self.tab = tab
        self.view = view
        self._html = None

    def text(self) -> str:
        return text.render(self.analysis, self.index, self.count)

    def html(self) -> str:
        """The page (:func:`einsum_magic.views.html.page`), written once per display."""
        if self._html is None:
            self._html = html.page(self.analysis, self.index, self.count, self.tab)
        return self._html

    def _repr_mimebundle_(self, include=None, exclude=None):
        if self.view == "text":
            return {"text/plain": self.text()}
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()
