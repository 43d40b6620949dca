"""Which display each frontend gets: Colab and VS Code detected from their kernels' environment."""

from __future__ import annotations

import os
import sys

import pytest

from einsum_magic.views.frontend import VIEWS, choose, detect

LAB = {"JPY_PARENT_PID": "1", "JPY_SESSION_NAME": "/home/me/nb.ipynb"}
COLAB = {**LAB, "COLAB_RELEASE_TAG": "release-colab_20240626-060133_RC00", "COLAB_GPU": "1"}
VSCODE = {**LAB, "VSCODE_PID": "4242", "VSCODE_CWD": "/home/me"}


@pytest.mark.parametrize("environ, modules, frontend", [
    (LAB, {}, None),
    ({}, {}, None),
    (COLAB, {}, "colab"),
    ({"COLAB_JUPYTER_IP": "172.28.0.12"}, {}, "colab"),
    (LAB, {"google.colab": object()}, "colab"),       # its kernels load google.colab
    (VSCODE, {}, "vscode"),
    ({"VSCODE_IPC_HOOK_CLI": "/tmp/vscode-ipc.sock"}, {}, "vscode"),
    ({"MY_VSCODE_THING": "1", "COLABORATE": "1"}, {}, None),   # names, not substrings
])
def test_detect(environ, modules, frontend):
    assert detect(environ, modules) == frontend


@pytest.mark.parametrize("environ, want", [(LAB, "widget"), (COLAB, "html"), (VSCODE, "html")])
def test_auto_adds_widgets_only_where_they_render(environ, want):
    assert choose("auto", kernel=True, environ=environ, modules={}, widgets_importable=True) == want
    assert choose("AUTO", kernel=True, environ=environ, modules={}, widgets_importable=False) == "html"
    assert choose("auto", kernel=False, environ=environ, modules={}, widgets_importable=True) == "html"


@pytest.mark.parametrize("view", ["widget", "progress", "html", "text", "Widget"])
@pytest.mark.parametrize("environ", [LAB, COLAB, VSCODE])
def test_the_setting_overrides(view, environ):
    assert choose(view, kernel=True, environ=environ, modules={}, widgets_importable=True) == \
        view.lower()


def test_an_unknown_view_says_which_there_are():
    with pytest.raises(ValueError, match="view 'pretty' is not one of auto, widget, progress, "
                                         "html, text"):
        choose("pretty", kernel=True)
    assert VIEWS == ("auto", "widget", "progress", "html", "text")


def test_reads_the_process_environment_by_default(monkeypatch):
    for key in [k for k in os.environ if k.startswith(("VSCODE_", "COLAB_"))]:
        monkeypatch.delenv(key)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert detect() is None
    monkeypatch.setenv("VSCODE_PID", "1")
    assert detect() == "vscode"


@pytest.mark.parametrize("view", ["widget", "progress"])
def test_a_forced_widget_view_without_ipywidgets_falls_back_to_html(view):
    assert choose(view, kernel=True, widgets_importable=False) == "html"
    assert choose(view, kernel=True, widgets_importable=True) == view
