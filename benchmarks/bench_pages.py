"""How heavy a display is: bytes of each display's MIME bundle, and what the HTML is made of.

Each cell below runs under ``%%einsum_grad`` (checked, as a user runs it) in an
``InteractiveShell``; every display it publishes is captured as the bundle its
``_repr_mimebundle_`` returns (:class:`einsum_magic.views.widget.GradDisplay`, whose
``text/html`` is :func:`einsum_magic.views.html.page`, and the cell backward's
:class:`einsum_magic.views.chain.CellBackwardDisplay`). Per display:

* *text/html*, *text/plain*: UTF-8 bytes, what a notebook stores per run;
* *stylesheet*: bytes of its ``<style>`` element(s), and their share of the HTML;
* *SVG*: bytes of its ``<svg>`` elements (the Diagram tab), and their share;
* *spans*: how many ``<span>`` elements, and *style=*: how many inline style attributes.

``BEFORE`` holds the same figures measured on commit de36e4c (the page before it was made
lighter), so the table shows both; ``after`` is measured when this runs.

Per notebook (``notebooks/*.ipynb`` as stored): file bytes, bytes of all ``text/html``
outputs and how many einsum_grad pages they hold. ``NOTEBOOKS_BEFORE`` holds the figures of
the notebooks executed with the heavier page; a notebook still stored byte for byte as then
is reported as not re-executed yet, its *after* figure pending.
"""

from __future__ import annotations

import re

#: (title, cell source under the magic, the arrays the cell reads: name -> shape)
CELLS = [
    ("matmul", "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)", {"A": (2, 3), "B": (3, 4)}),
    ("trace `ii->`", "%%einsum_grad\nt = np.einsum('ii->', M)", {"M": (3, 3)}),
    ("row sums `ij->i`", "%%einsum_grad\nr = np.einsum('ij->i', A)", {"A": (2, 3)}),
    ("4-operand chain", "%%einsum_grad\nE = np.einsum('ab,bc,cd,de->ae', P, Q, R, S)",
     {"P": (2, 3), "Q": (3, 4), "R": (4, 5), "S": (5, 6)}),
    ("open exercise `--expect A=?`", "%%einsum_grad --expect A=?\nC = np.einsum('ij,jk->ik', A, B)",
     {"A": (2, 3), "B": (3, 4)}),
    ("2-step NumPy cell", "%%einsum_grad\nH = np.einsum('ij,jk->ik', X, W)\nZ = np.maximum(H, 0)",
     {"X": (4, 3), "W": (3, 5)}),
]

#: Measured on commit de36e4c: title -> list of (text/html, text/plain, stylesheet, SVG, spans,
#: style=) per display of the cell, in order.
BEFORE = {
    "matmul": [(53704, 571, 12826, 7009, 844, 0)],
    "trace `ii->`": [(40172, 540, 12826, 2625, 550, 0)],
    "row sums `ij->i`": [(38129, 559, 12826, 3328, 462, 0)],
    "4-operand chain": [(109781, 1051, 12826, 19820, 2205, 0)],
    "open exercise `--expect A=?`": [(53667, 531, 12826, 7009, 810, 0)],
    "2-step NumPy cell": [(53730, 575, 12826, 7009, 844, 0), (16745, 454, 12826, 0, 58, 0)],
}


#: notebooks/NAME -> (file bytes, text/html bytes, einsum_grad pages), as executed before (de36e4c).
NOTEBOOKS_BEFORE = {
    "01_backprop_trick.ipynb": (237_672, 195_542, 4),
    "02_gallery.ipynb": (1_016_066, 887_039, 17),
    "03_exercises.ipynb": (751_893, 654_915, 13),
    "03_exercises_solutions.ipynb": (695_293, 606_242, 12),
    "04_chains.ipynb": (433_497, 367_257, 9),
}


def notebook(path) -> tuple[int, int, int]:
    """(file bytes, text/html bytes of its outputs, einsum_grad pages among them) of a notebook."""
    import json

    data = path.read_bytes()
    html, pages = 0, 0
    for cell in json.loads(data)["cells"]:
        for out in cell.get("outputs", []):
            page = out.get("data", {}).get("text/html")
            if page is None:
                continue
            page = "".join(page) if isinstance(page, list) else page
            html += len(page.encode("utf-8"))
            pages += "<!-- einsum_grad meaning:" in page
    return len(data), html, pages


def notebook_rows() -> list[str]:
    from pathlib import Path

    rows = ["", "Per notebook, as stored in notebooks/ (pages: einsum_grad displays among the outputs):",
            "", "| notebook | when | file | text/html outputs | pages |", "|---|---|---|---|---|"]
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        now = notebook(path)
        before = NOTEBOOKS_BEFORE.get(path.name)
        if before:
            rows.append(f"| {path.name} | before | {_kb(before[0])} | {_kb(before[1])} | {before[2]} |")
        if now == before:
            rows.append(f"| {path.name} | after | pending: not re-executed since the page was made "
                        "lighter (file and text/html bytes to be measured then) | | |")
        else:
            rows.append(f"| {path.name} | after | {_kb(now[0])} | {_kb(now[1])} | {now[2]} |")
    return rows


def measure(bundle: dict) -> tuple[int, int, int, int, int, int]:
    """(text/html, text/plain, stylesheet, SVG bytes, spans, style= attributes) of one bundle."""
    page = bundle.get("text/html", "")
    size = lambda s: len(s.encode("utf-8"))      # noqa: E731
    style = sum(size(s) for s in re.findall(r"(?s)<style>.*?</style>", page))
    svg = sum(size(s) for s in re.findall(r"(?s)<svg\b.*?</svg>", page))
    return (size(page), size(bundle.get("text/plain", "")), style, svg,
            len(re.findall(r"<span\b", page)), len(re.findall(r"\sstyle=", page)))


def bundles() -> list[tuple[str, list[dict]]]:
    """Each cell of :data:`CELLS` and the bundles of the displays it published."""
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "einsum_magic")
    shell.run_cell("import numpy as np")
    rng = np.random.default_rng(0)
    out = []
    for title, cell, arrays in CELLS:
        shell.user_ns.update({n: rng.standard_normal(s) for n, s in arrays.items()})
        with capture_output() as captured:
            result = shell.run_cell(cell)
        assert result.success, result.error_in_exec
        out.append((title, [o.data for o in captured.outputs]))
    return out


def composition(page: str) -> str:
    """Where a page's bytes go: visible text, span tags (letters among them), stylesheet, SVG, rest."""
    from html import unescape

    size = lambda s: len(s.encode("utf-8"))      # noqa: E731
    style = sum(size(s) for s in re.findall(r"(?s)<style>.*?</style>", page))
    svg = sum(size(s) for s in re.findall(r"(?s)<svg\b.*?</svg>", page))
    rest = re.sub(r"(?s)<style>.*?</style>|<svg\b.*?</svg>", "", page)
    spans = re.findall(r'<span class="([^"]+)">', rest)
    tags = sum(len(f'<span class="{c}"></span>') for c in spans)
    letters = sum(len(f'<span class="{c}"></span>') for c in spans if re.fullmatch(r"eg-l\d", c))
    text = size(unescape(re.sub(r"<[^>]+>", "", rest)))
    other = size(page) - style - svg - tags - text
    return (f"{_kb(size(page))}: visible text {_kb(text)}, span tags {_kb(tags)} ({len(spans)} "
            f"spans; {_kb(letters)} of them one per painted letter), stylesheet {_kb(style)}, "
            f"SVG {_kb(svg)}, other markup {_kb(other)}")


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


def _share(part: int, whole: int) -> str:
    return f"{_kb(part)} ({100 * part / whole:.0f} %)" if whole else "-"


def _row(figures) -> str:
    html, plain, style, svg, spans, styles = figures
    return f"{_kb(html)} | {plain:,} B | {_share(style, html)} | {_share(svg, html)} | {spans} | {styles}"


def run() -> list[str]:
    rows = ["Bytes of UTF-8 per display; KB = 1000 bytes. *before*: commit de36e4c; *after*: "
            "this tree.", "",
            "| cell | display | when | text/html | text/plain | stylesheet | SVG | `<span>`s | "
            "`style=` |", "|---|---|---|---|---|---|---|---|---|"]
    pages = bundles()
    for title, published in pages:
        for k, bundle in enumerate(published):
            kind = ("cell backward" if bundle.get("text/plain", "").startswith("cell backward")
                    else f"einsum {k + 1}")
            before = BEFORE.get(title, [])
            if k < len(before):
                rows.append(f"| {title} | {kind} | before | {_row(before[k])} |")
            rows.append(f"| {title} | {kind} | after | {_row(measure(bundle))} |")
    matmul = pages[0][1][0]["text/html"]
    rows += ["", f"Where a matmul's page goes now: {composition(matmul)}."]
    return rows + notebook_rows()


if __name__ == "__main__":
    import sys

    if "--raw" in sys.argv:                      # the figures as a BEFORE literal
        print({title: [measure(b) for b in published] for title, published in bundles()})
    else:
        print("\n".join(run()))
