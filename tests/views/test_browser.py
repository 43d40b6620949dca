"""The displays as their users see them: JupyterLab, a static page without JavaScript, nbconvert's HTML.

``test_widget_renders_in_jupyterlab`` serves a temporary copy of the repository with this environment's
JupyterLab (see ``lab_server.py``), opens ``notebooks/01_backprop_trick.ipynb`` in Debian's Chromium
through Playwright, clears the stored outputs, runs every cell from the Run menu and checks the
``%%einsum_grad`` display of ``ij,jk->ik``: its CSS tabs Backward, Diagram, Loops, Shapes, Cost, Export
and Check each show what they should when clicked (the Diagram's forward SVG with a node per operand
and an edge label per letter; a key press on the size slider of the equation-only cell rewrites its
diagram's size label), Export unfolds, its text is readable, the live widget (check details) renders
under it and no widget failed to display; once in the JupyterLab Light theme and once in JupyterLab
Dark (chosen from Settings > Theme, as a user would). Screenshots land in ``artifacts/browser/``
(ignored by git); the README's picture, ``docs/widget.png``, is ``light-widget.png`` from a run of
this test.

The ``test_static_*`` tests open two displays' HTML as a file with JavaScript disabled: every tab opens by
click and by the arrow keys, shows its content and fits a screen, and Export unfolds; with the stylesheet
stripped (as GitHub does) every panel shows in turn and code stays monospace. The gallery executed by
``jupyter nbconvert --to html --execute`` takes at most 1.5 screen heights per einsum, and a small
notebook converted that way shows every backward equation and the verdict as text.

``test_widget_frontend_is_a_lab_extension`` checks, without a browser, that ipywidgets' JupyterLab
frontend is installed and enabled, the first thing to look at when no widget renders.

``test_stored_tutorial_shows_text_fallback`` needs no kernel and no browser: the stored tutorial
converted with ``jupyter nbconvert --to html`` must show the backward specs in its output areas, as
GitHub or an untrusted notebook on Binder would show them.

Environment variables: ``EINSUM_MAGIC_CHROMIUM`` (the browser, default ``/usr/bin/chromium``; never
downloaded), ``EINSUM_MAGIC_NOTEBOOK`` (a notebook to drive in place of the tutorial, for developing these
tests), ``CI=true`` (a missing browser or Playwright fails instead of skipping).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab_server import KERNEL_DISPLAY_NAME, running_lab

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = Path("notebooks/01_backprop_trick.ipynb")
ARTIFACTS = REPO / "artifacts" / "browser"
CHROMIUM = os.environ.get("EINSUM_MAGIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ON_CI = os.environ.get("CI", "").lower() in ("true", "1")

EQUATION = "ij,jk->ik"          # the widget under test is the one of this forward einsum
SPEC = "ik,jk->ij"              # dL_dA, shown on the Backward tab
LOOP = "for i in range"         # the loop code, shown on the Loops tab
ROLE = "contracted"             # j's role, shown on the Shapes tab
TABS = ("Backward", "Diagram", "Loops", "Shapes", "Cost", "Export", "Check")
OPERANDS, LETTERS = 2, "ijk"    # the forward diagram of ij,jk->ik: two nodes, an edge label per letter
THEMES = ("JupyterLab Light", "JupyterLab Dark")
MIN_CONTRAST = 3.0              # WCAG's minimum for large text and UI components

# Bounded but generous: the CI machine has 2 cores and the tutorial imports JAX.
UI_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000

COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "artifacts", "__pycache__", ".hypothesis",
                                     ".pytest_cache", "*.egg-info", "build", "dist",
                                     ".ipynb_checkpoints", ".benchmarks", ".whl")


def _unavailable(reason: str) -> None:
    """Skip for a missing tool, except on CI, where the browser test must run."""
    if ON_CI:
        pytest.fail(f"{reason} (CI=true: the browser test must run, not skip)")
    pytest.skip(reason)


def _notebook_source() -> Path:
    """The notebook to check: $EINSUM_MAGIC_NOTEBOOK when set, else the tutorial."""
    override = os.environ.get("EINSUM_MAGIC_NOTEBOOK")
    if override:
        path = Path(override)
        if not path.is_file():
            pytest.fail(f"EINSUM_MAGIC_NOTEBOOK={override} is not a file")
        return path
    if not (REPO / TUTORIAL).is_file():
        pytest.skip("tutorial notebook not written yet")
    return REPO / TUTORIAL


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the static, no-kernel path

class _OutputText:
    """Text of the output areas of an nbconvert HTML page, scripts left out (what a reader sees)."""

    def __init__(self, html: str):
        from bs4 import BeautifulSoup  # nbconvert's own dependency

        soup = BeautifulSoup(html, "html.parser")
        areas = soup.select(".jp-OutputArea-output")
        for area in areas:
            for script in area.find_all(["script", "style"]):
                script.decompose()
        self.areas = len(areas)
        self.text = "\n".join(area.get_text() for area in areas)


def test_stored_tutorial_shows_text_fallback(tmp_path):
    source = _notebook_source()
    notebook = tmp_path / TUTORIAL.name
    shutil.copyfile(source, notebook)
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html",
                          "--output-dir", str(tmp_path), str(notebook)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    page = _OutputText((tmp_path / f"{notebook.stem}.html").read_text(encoding="utf-8"))
    assert page.areas, "the stored tutorial has no outputs: commit it executed"
    assert SPEC in page.text, (
        f"no output area of the stored tutorial shows {SPEC!r} as text. If its metadata holds a widget "
        "state (nbconvert --execute stores one unless --ExecutePreprocessor.store_widget_state=False; "
        "JupyterLab when 'Save Widget State Automatically' is on), nbconvert shows the widget's script "
        "instead of the text fallback.")


EXECUTED_CELLS = ("import numpy as np\n%load_ext einsum_magic\n"
                  "%config EinsumGradMagics.view = 'widget'   # live widgets too, state stored\n"
                  "A = np.arange(6.0).reshape(2, 3)\nB = np.ones((3, 4))\nM = np.eye(3) + 1",
                  "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)",
                  "%%einsum_grad\nt = np.einsum('ii,ij->j', M, B)")


def test_nbconvert_execute_shows_the_analysis_as_text(tmp_path):
    """``jupyter nbconvert --to html --execute``, offline, with the widget state stored (its default):
    each backward equation and the verdict are in the page's text, outside any script."""
    import nbformat

    from einsum_magic import derive

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in EXECUTED_CELLS])
    notebook = tmp_path / "executed.ipynb"
    nbformat.write(nb, notebook)
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                          "--output-dir", str(tmp_path), str(notebook)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert run.returncode == 0, run.stderr
    html = (tmp_path / "executed.html").read_text(encoding="utf-8")
    assert "application/vnd.jupyter.widget-view+json" in html    # live widgets were there too
    page = _OutputText(html)
    for equation, shapes in (("ij,jk->ik", ((2, 3), (3, 4))), ("ii,ij->j", ((3, 3), (3, 4)))):
        for g in derive(equation, shapes=shapes).grads:
            assert g.equation in page.text, (equation, g.equation)
    assert page.text.count("PASS 2/2 gradients") == 2, page.text[:2000]


def test_widget_frontend_is_a_lab_extension():
    if importlib.util.find_spec("jupyterlab") is None:
        _unavailable("JupyterLab is not installed (pip install -e '.[lab]')")
    run = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                         capture_output=True, text=True, timeout=120)
    listing = run.stdout + run.stderr
    line = next((line for line in listing.splitlines() if "@jupyter-widgets/jupyterlab-manager" in line), "")
    assert "enabled" in line and "OK" in line, (
        f"ipywidgets' JupyterLab frontend (jupyterlab_widgets) is not an enabled lab extension:\n{listing}")


# --------------------------------------------------------------------------- JupyterLab in Chromium

@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright; no browser download needed)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set EINSUM_MAGIC_CHROMIUM)")
    with sync_playwright() as playwright:
        expect.set_options(timeout=UI_TIMEOUT_MS)
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def notebook_page(browser, tmp_path_factory):
    """The notebook open in JupyterLab, every cell run from the Run menu after clearing the stored outputs."""
    from playwright.sync_api import expect

    source = _notebook_source()
    checkout_digest = _digest(source)
    work = tmp_path_factory.mktemp("lab")
    root, state = work / "repo", work / "state"
    shutil.copytree(REPO, root, ignore=COPY_IGNORE)
    (root / TUTORIAL).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, root / TUTORIAL)
    state.mkdir()
    with running_lab(root, state) as lab:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(lab.address(f"lab/tree/{TUTORIAL.as_posix()}"))
            expect(page.locator(".jp-NotebookPanel .jp-Notebook .jp-CodeCell").first).to_be_visible()
            # The kernel of our kernelspec, started (before that the toolbar says 'No Kernel', and
            # running cells then asks which kernel to start).
            expect(page.locator(".jp-NotebookPanel .jp-Toolbar-kernelName")).to_have_text(
                KERNEL_DISPLAY_NAME, timeout=RUN_TIMEOUT_MS)
            expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
                "data-status", "idle", timeout=RUN_TIMEOUT_MS)
            _menu(page, "Edit", "editmenu:clear-all")
            expect(page.locator(".jp-CodeCell .jp-OutputArea-output")).to_have_count(0)
            _menu(page, "Run", "runmenu:run-all")
            page.wait_for_function(ALL_CELLS_RAN_OR_DIALOG, timeout=RUN_TIMEOUT_MS)
            expect(page.locator(".jp-Dialog"), "a dialog interrupted Run All").to_have_count(0, timeout=1)
            expect(page.locator(".jp-NotebookPanel .jp-Notebook-ExecutionIndicator")).to_have_attribute(
                "data-status", "idle", timeout=RUN_TIMEOUT_MS)
            yield page
        except Exception:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=ARTIFACTS / "failure.png", full_page=True)
            print(lab.log_tail())
            raise
        finally:
            page.close()
    assert _digest(source) == checkout_digest, f"{source} changed while JupyterLab served a copy of it"


# Every code cell numbered ('[3]:', not '[ ]:' or '[*]:'), or a dialog waits for an answer.
ALL_CELLS_RAN_OR_DIALOG = """() => {
    if (document.querySelector('.jp-Dialog')) return true;
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')]
        .map(p => p.textContent.trim());
    return prompts.length > 0 && prompts.every(p => /^\\[\\d+\\]:$/.test(p));
}"""


def _menu(page, top: str, command: str, label: str | None = None, submenu: str | None = None) -> None:
    """Click menu bar ``top`` (then hover ``submenu``) and the item running ``command`` (labelled ``label``)."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{re.escape(top)}$")).click()
    if submenu:
        page.locator(".lm-Menu-item[data-type='submenu']",
                     has_text=re.compile(f"^{re.escape(submenu)}$")).hover()
    item = page.locator(f".lm-Menu-item[data-command='{command}']")
    if label:
        item = item.filter(has=page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(label)}$")))
    item.click()


def _set_theme(page, theme: str) -> None:
    """Settings > Theme > ``theme``, then wait until the page wears it."""
    from playwright.sync_api import expect

    body = page.locator("body")
    if body.get_attribute("data-jp-theme-name") != theme:
        _menu(page, "Settings", "apputils:change-theme", label=theme, submenu="Theme")
    expect(body).to_have_attribute("data-jp-theme-name", theme)
    expect(body).to_have_attribute("data-jp-theme-light", "false" if "Dark" in theme else "true")


# The least readable text in an element: WCAG contrast of each visible text run against the
# background it is painted on (ancestors' backgrounds composited, the page white underneath).
LEAST_CONTRAST = """(root) => {
    const rgba = s => { const m = s.match(/rgba?\\(([^)]*)\\)/); if (!m) return null;
        const v = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [v[0], v[1], v[2], v.length > 3 ? v[3] : 1]; };
    const over = (top, below) => [0, 1, 2].map(i => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
    const backdrop = el => { const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const c = rgba(getComputedStyle(e).backgroundColor);
            if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
        return layers.reverse().reduce((below, top) => over(top, below), [255, 255, 255, 1]); };
    const lum = c => c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
        .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
    let worst = null;
    for (const el of [root, ...root.querySelectorAll('*')]) {
        const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
        if (!own || !el.getClientRects().length) continue;
        const style = getComputedStyle(el);
        if (style.visibility !== 'visible' || Number(style.opacity) === 0) continue;
        const fg = rgba(style.color); if (!fg) continue;
        const bg = backdrop(el), a = lum(over(fg, bg)), b = lum(bg);
        const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
        if (!worst || ratio < worst.ratio) worst = {ratio, text: own.slice(0, 60), color: style.color,
            background: `rgb(${bg.slice(0, 3).map(Math.round).join(', ')})`};
    }
    return worst;
}"""


@pytest.mark.browser
@pytest.mark.parametrize("theme", THEMES)
def test_widget_renders_in_jupyterlab(notebook_page, theme):
    page = notebook_page
    slug = theme.split()[-1].lower()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        _check_widget(page, theme, slug)
    except Exception:
        page.screenshot(path=ARTIFACTS / f"{slug}-failure.png")
        raise


def _check_widget(page, theme: str, slug: str) -> None:
    from playwright.sync_api import expect

    _set_theme(page, theme)
    expect(page.get_by_text("Loading widget...")).to_have_count(0)   # every widget output has settled
    _assert_no_widget_errors(page)
    expect(page.locator(".jp-OutputArea-output .jupyter-widgets").first,
           "no widget rendered at all: is ipywidgets' frontend (jupyterlab_widgets) among the lab "
           "extensions (jupyter labextension list)?").to_be_visible()
    errors = [text for text in page.locator(
        ".jp-CodeCell .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
        if re.search(r"Traceback|Error\b", text)]
    assert not errors, f"cells failed in the browser:\n{errors[0]}"

    # The display of ij,jk->ik: the HTML page whose (possibly hidden) text holds its dL_dA spec, and of
    # those (a tutorial may show one with --no-check first) the first whose Check tab holds a verdict.
    of_equation = page.locator(".jp-OutputArea-output .einsum-grad").filter(has_text=SPEC)
    expect(of_equation.first, f"no display shows {SPEC!r}").to_be_visible()
    widget = of_equation.filter(has_text=re.compile(r"(PASS|FAIL) \d+/\d+ gradient")).first
    expect(widget, f"no display of {EQUATION} ran its check (PASS or FAIL)").to_be_visible()
    widget.evaluate("element => element.scrollIntoView({block: 'center'})")
    tabs = widget.locator(".eg-tabs > label")
    expect(tabs).to_have_text(list(TABS))
    # The live widget under the page: the check's device, errors and timings, folded.
    output = widget.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-child')][1]")
    live = output.locator("xpath=following-sibling::div[1]").locator(".jupyter-widgets")
    expect(live.first, "no live widget under the display").to_contain_text("check details")

    def show(tab: str, text: str) -> None:
        """Click ``tab``; ``text`` is then visible (innerText skips the hidden tabs) and readable."""
        tabs.filter(has_text=re.compile(f"^{tab}$")).click()
        expect(widget.locator(".eg-tabs > input:checked + label")).to_have_text(tab)
        expect(widget).to_contain_text(text, use_inner_text=True)
        worst = widget.evaluate(LEAST_CONTRAST)
        assert worst is not None, f"{theme}, tab {tab}: no visible text in the display"
        print(f"{theme}, tab {tab}: least contrast {worst['ratio']:.2f} for {worst['text']!r}")
        assert worst["ratio"] >= MIN_CONTRAST, (
            f"{theme}, tab {tab}: text {worst['text']!r} has contrast {worst['ratio']:.2f} "
            f"({worst['color']} on {worst['background']}), below {MIN_CONTRAST}")
        widget.screenshot(path=ARTIFACTS / f"{slug}-{tab.lower()}.png")

    show("Backward", SPEC)
    expect(widget).not_to_contain_text(LOOP, use_inner_text=True)   # the loops are on their own tab
    page.screenshot(path=ARTIFACTS / f"{slug}-notebook.png")
    # The whole display (the header above the tabs): the picture for the README.
    widget.screenshot(path=ARTIFACTS / f"{slug}-widget.png")
    show("Diagram", "forward C")
    _check_diagram(widget)
    show("Loops", LOOP)
    show("Shapes", ROLE)
    show("Cost", "FLOPs")
    show("Export", "NumPy")
    widget.locator("details").evaluate_all("ds => ds.forEach(d => { d.open = false; })")  # as shown
    numpy = widget.locator("summary", has_text="NumPy")
    expect(widget).not_to_contain_text("def backward(", use_inner_text=True)   # folded
    numpy.click()
    expect(widget).to_contain_text("def backward(", use_inner_text=True)
    show("Check", "PASS")
    expect(widget).not_to_contain_text("FAIL", use_inner_text=True)
    show("Backward", SPEC)                                             # leave it as it opened
    _check_sliders(page, slug)
    _assert_no_widget_errors(page)


def _check_diagram(widget) -> None:
    """The Diagram tab's SVG: the forward has a node per operand and one edge label per letter,
    each gradient's picture an open slot and the cotangent; every picture has a size."""
    from playwright.sync_api import expect

    panel = widget.locator(".eg-tabs > div.eg-panel[data-tab='Diagram']")
    expect(panel).to_be_visible()
    pictures = panel.locator("svg.eg-diagram")
    expect(pictures).to_have_count(1 + 2 * OPERANDS)      # the forward, then (forward, backward) each
    forward = pictures.first
    expect(forward.locator(".eg-node.eg-operand")).to_have_count(OPERANDS)
    labels = forward.locator(".eg-edge-label")
    expect(labels).to_have_count(len(LETTERS))
    assert sorted(t.strip()[0] for t in labels.all_text_contents()) == sorted(LETTERS)
    backward = pictures.nth(2)
    expect(backward.locator(".eg-node.eg-slot")).to_have_count(1)
    expect(backward.locator(".eg-node.eg-cotangent")).to_have_count(1)
    box = forward.bounding_box()
    assert box and box["width"] > 50 and box["height"] > 50, f"the forward diagram is {box}"


def _check_sliders(page, slug: str) -> None:
    """The tutorial's equation-only cell has a size slider per letter; a key press on one rewrites
    the shapes and the diagram's size label under it (one round-trip, no re-run)."""
    from playwright.sync_api import expect

    box = page.locator(".jp-OutputArea-output .widget-vbox:has(.widget-slider)").last
    expect(box, "no size sliders under the equation-only display").to_be_visible()
    box.evaluate("element => element.scrollIntoView({block: 'center'})")
    slider = box.locator(".widget-slider").first
    size = int(slider.locator(".widget-readout").inner_text())
    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    expect(slider.locator(".widget-readout")).to_have_text(str(size + 1))
    expect(box.locator("svg.eg-diagram .eg-size").first).to_have_text(f"={size + 1}")
    box.screenshot(path=ARTIFACTS / f"{slug}-sliders.png")


def _assert_no_widget_errors(page) -> None:
    """No widget in the notebook failed: ipywidgets' two ways of saying so, anywhere on the page."""
    missing = page.get_by_text("Error displaying widget").all_inner_texts()
    assert not missing, f"a widget did not display: {missing[0]!r}"
    broken = page.locator(".jupyter-widgets-error-widget")
    if broken.count():
        broken.first.click()  # the error view shows its JavaScript error when clicked
        pytest.fail(f"{broken.count()} widget(s) failed to render: {broken.first.inner_text()[:500]}")


# --------------------------------------------------------------------------- the static page, no JavaScript

def _static_analyses():
    """Displays of the hard shapes a reader meets: a matmul checked against JAX, a diagonal (eye)."""
    from einsum_magic import check, derive
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import find_calls

    out = []
    for source, shapes in (("C = np.einsum('ij,jk->ik', A, B)", ((2, 3), (3, 4))),
                           ("t = np.einsum('ii,ij->j', M, v)", ((3, 3), (3, 4)))):
        call = find_calls(source).calls[0]
        d = derive(call.equation, call.names, call.output, shapes)
        out.append(Analysis(call, d, "sizes from your arrays", check=check(d)))
    return out


@pytest.fixture(scope="module")
def static_page(browser, tmp_path_factory):
    """Two displays on one static page, opened in Chromium with JavaScript disabled."""
    from einsum_magic.views import html

    analyses = _static_analyses()
    body = "".join(html.page(a, k, len(analyses)) for k, a in enumerate(analyses))
    path = tmp_path_factory.mktemp("static") / "page.html"
    path.write_text(f"<!doctype html><html><body>{body}</body></html>", encoding="utf-8")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(path.as_uri())
    yield page, analyses
    context.close()


def _panels(display):
    return display.locator(".eg-tabs > .eg-panel")


@pytest.mark.browser
def test_static_tabs_open_by_click_without_javascript(static_page):
    from playwright.sync_api import expect

    page, analyses = static_page
    contents = {"Backward": lambda a: a.derivation.grads[0].equation,
                "Diagram": lambda a: f"forward {a.derivation.output}", "Loops": lambda a: LOOP,
                "Shapes": lambda a: "carried by", "Cost": lambda a: "FLOPs", "Export": lambda a: "NumPy",
                "Check": lambda a: "PASS"}
    for k, a in enumerate(analyses):
        display = page.locator(".einsum-grad").nth(k)
        expect(_panels(display)).to_have_count(len(TABS))
        for tab in TABS:
            display.locator(".eg-tabs > label", has_text=re.compile(f"^{tab}$")).click()
            shown = display.locator(".eg-tabs > .eg-panel:visible")
            expect(shown).to_have_count(1)
            expect(shown).to_have_attribute("data-tab", tab)
            expect(shown).to_contain_text(contents[tab](a), use_inner_text=True)
        other = page.locator(".einsum-grad").nth(1 - k)        # the other display kept its tab
        expect(other.locator(".eg-tabs > .eg-panel:visible")).to_have_count(1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "static-page.png", full_page=True)


@pytest.mark.browser
def test_static_tabs_open_by_keyboard_without_javascript(static_page):
    from playwright.sync_api import expect

    page, _ = static_page
    display = page.locator(".einsum-grad").first
    page.reload()                                             # every display on its first tab
    page.keyboard.press("Tab")                                # the Tab key reaches the tabs
    assert display.locator(".eg-tabs > input").first.evaluate("i => i === document.activeElement")
    for tab in TABS[1:]:
        page.keyboard.press("ArrowRight")                     # a radio group's own keys
        expect(display.locator(".eg-tabs > input:checked + label")).to_have_text(tab)
        expect(display.locator(".eg-tabs > .eg-panel:visible")).to_have_attribute("data-tab", tab)
        outline = display.locator(".eg-tabs > input:checked + label").evaluate(
            "label => getComputedStyle(label).outlineStyle")
        assert outline != "none", f"the focused tab {tab} shows no focus ring"
    page.keyboard.press("ArrowLeft")
    expect(display.locator(".eg-tabs > input:checked + label")).to_have_text(TABS[-2])


@pytest.mark.browser
def test_static_export_unfolds_by_click_and_keyboard(static_page):
    from playwright.sync_api import expect

    page, _ = static_page
    display = page.locator(".einsum-grad").first
    display.locator(".eg-tabs > label", has_text=re.compile("^Export$")).click()
    panel = display.locator(".eg-panel[data-tab='Export']")
    expect(panel).not_to_contain_text("def backward(", use_inner_text=True)        # folded
    panel.locator("summary", has_text="NumPy").click()
    expect(panel).to_contain_text("def backward(dL_dC, A, B):", use_inner_text=True)
    panel.locator("summary", has_text="JAX").focus()
    page.keyboard.press("Enter")
    expect(panel).to_contain_text("@jax.custom_vjp", use_inner_text=True)


@pytest.mark.browser
def test_static_panels_fit_a_screen(static_page):
    page, _ = static_page
    for k in range(2):
        display = page.locator(".einsum-grad").nth(k)
        for tab in TABS:
            display.locator(".eg-tabs > label", has_text=re.compile(f"^{tab}$")).click()
            height = display.bounding_box()["height"]
            assert height <= 900, f"display {k}, tab {tab}: {height:.0f} px, more than a screen"


@pytest.mark.browser
def test_without_a_stylesheet_code_stays_monospace_and_every_panel_shows(browser, tmp_path):
    """As sanitizers leave it (GitHub strips <style>): readable in order, code in a fixed font."""
    from playwright.sync_api import expect

    from einsum_magic.views import html

    (a,) = _static_analyses()[:1]
    bare = re.sub(r"(?s)<style>.*?</style>", "", html.page(a))
    path = tmp_path / "bare.html"
    path.write_text(f"<!doctype html><html><body>{bare}</body></html>", encoding="utf-8")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 900})
    page = context.new_page()
    page.goto(path.as_uri())
    for tab in TABS:
        expect(page.locator(f"h3.eg-panel-title:text-is('{tab}')")).to_be_visible()
    fonts = page.locator("pre").evaluate_all("els => els.map(e => getComputedStyle(e).fontFamily)")
    assert fonts and all("monospace" in f for f in fonts), fonts
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "static-no-stylesheet.png")
    context.close()


GALLERY = Path("notebooks/02_gallery.ipynb")


@pytest.mark.browser
def test_gallery_rendered_by_nbconvert_fits_one_and_a_half_screens_per_einsum(browser, tmp_path):
    from playwright.sync_api import expect

    notebook = tmp_path / GALLERY.name
    shutil.copyfile(REPO / GALLERY, notebook)
    run = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                          "--output-dir", str(tmp_path), str(notebook)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert run.returncode == 0, run.stderr[-3000:]
    screen = {"width": 1280, "height": 800}
    context = browser.new_context(java_script_enabled=False, viewport=screen)
    page = context.new_page()
    page.goto((tmp_path / f"{GALLERY.stem}.html").as_uri())
    displays = page.locator(".jp-OutputArea-output .einsum-grad")
    expect(displays.first).to_be_visible()
    count = displays.count()
    height = page.evaluate("document.documentElement.scrollHeight")
    print(f"gallery: {height} px for {count} einsums, {height / count / screen['height']:.2f} "
          "screens each")
    assert count >= 14
    assert height <= 1.5 * screen["height"] * count
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / "gallery-nbconvert.png")
    context.close()
