"""Which display a kernel's frontend gets: the HTML page, with or without live widgets, or text.

Every display is the self-contained HTML page (:func:`einsum_magic.views.html.page`) with its
deterministic ``text/plain``: it reads the same in every frontend and in nbconvert's
HTML. Live ipywidgets are *added* only where a working widget manager is expected: a
Jupyter kernel with ipywidgets, except in the frontends known not to render them well,
detected from the environment their kernels run in:

* **Colab** (ipywidgets 8 ``Tab``/``titles`` unsupported): the ``google.colab`` module
  is loaded in its kernels, which also carry ``COLAB_*`` variables (``COLAB_RELEASE_TAG``,
  ``COLAB_GPU``, ``COLAB_JUPYTER_IP``);
* **VS Code** (widget titles not shown): its Jupyter extension starts kernels with
  ``VSCODE_*`` variables (``VSCODE_PID``, ``VSCODE_CWD``, ``VSCODE_IPC_HOOK_CLI``;
  microsoft/vscode-jupyter#3364; under WSL ``VSCODE_PID`` is missing but
  ``VSCODE_CWD`` is there, holoviz/panel#5200), so any ``VSCODE_`` name counts.
  A kernel started from a shell inside VS Code inherits them too and gets the HTML
  alone, which shows everything but the live extras.

The ``EinsumGradMagics.view`` setting (:data:`VIEWS`) chooses, ``auto`` by default:

* ``widget``: the page, a progress line while the check runs (it leaves nothing
  behind) and, under each page, the live widgets of :data:`einsum_magic.views.widget.LIVE`
  (what ``auto`` gives where widgets work). A notebook saved without its widget state
  (JupyterLab's default) shows those as "model not found" until it is run again;
* ``progress``: the page and the progress line only, nothing that needs a kernel later;
* ``html``: the page alone; ``text``: ``text/plain`` alone.

>>> choose("auto", kernel=True, environ={"COLAB_RELEASE_TAG": "release-colab-2024"},
...        modules={}, widgets_importable=True)
'html'
>>> choose("auto", kernel=True, environ={}, modules={}, widgets_importable=True)
'widget'
>>> choose("widget", kernel=False, environ={"VSCODE_PID": "42"}, modules={})
'widget'
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping

__all__ = ["VIEWS", "detect", "choose"]

#: The settings of ``EinsumGradMagics.view``: ``auto`` then the four displays.
VIEWS = ("auto", "widget", "progress", "html", "text")

#: Environment variables the kernels of each frontend carry (an exact name, or a prefix
#: ending in ``_``).
_MARKS = (
    ("colab", ("COLAB_RELEASE_TAG", "COLAB_GPU", "COLAB_JUPYTER_IP", "COLAB_BACKEND_VERSION")),
    ("vscode", ("VSCODE_",)),
)


def detect(environ: Mapping[str, str] | None = None,
           modules: Mapping[str, object] | None = None) -> str | None:
    """``'colab'``, ``'vscode'`` or ``None``: the frontend whose kernel this is, if known.

    >>> detect({"VSCODE_CWD": "/home/me"}, {})
    'vscode'
    >>> detect({}, {"google.colab": object()})
    'colab'
    >>> detect({"JPY_PARENT_PID": "7"}, {}) is None
    True
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "google.colab" in modules:
        return "colab"
    for frontend, marks in _MARKS:
        for key in environ:
            if any(key.startswith(m) if m.endswith("_") else key == m for m in marks):
                return frontend
    return None


def choose(view: str, kernel: bool, environ: Mapping[str, str] | None = None,
           modules: Mapping[str, object] | None = None,
           widgets_importable: bool | None = None) -> str:
    """The display to use: ``'widget'``, ``'progress'``, ``'html'`` or ``'text'``.

    ``view`` is the setting (:data:`VIEWS`, any case); ``auto`` gives ``widget`` in a
    Jupyter kernel (``kernel``) with ipywidgets installed whose frontend is not one
    :func:`detect` knows to fail them, else ``html``; ``widget`` and ``progress`` need
    ipywidgets (without it: ``html``).
    """
    view = view.lower()
    if view not in VIEWS:
        raise ValueError(f"view {view!r} is not one of {', '.join(VIEWS)}")
    if view in ("html", "text"):
        return view
    if view == "auto" and (not kernel or detect(environ, modules) is not None):
        return "html"
    if widgets_importable is None:
        widgets_importable = _importable("ipywidgets")
    if not widgets_importable:            # widget or progress forced without ipywidgets
        return "html"
    return "widget" if view == "auto" else view


def _importable(module: str) -> bool:
    """Whether ``module`` can be imported, answered without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):        # sys.modules[module] is None, or has no spec
        return False
