"""How heavy a display is: bytes of each display's MIME bundle, and what the HTML is made of.

Each cell below runs under ``%%einsum_grad`` (checked, as a user runs it) in an
``InteractiveShell``; every display it publishes is captured as the bundle its
``_repr_mimebundle_`` returns (:class:`einsum_magic.views.widget.GradDisplay`, whose
``text/html`` is :func:`einsum_magic.views.html.page`, and the cell backward's
:class:`einsum_magic.views.chain.CellBackwardDisplay`). Per display:

* *text/html*, *text/plain*: UTF-8 bytes, what a notebook stores per run;
* *stylesheet*: bytes of its ``<style>`` element(s), and their share of the HTML;
* *SVG*: bytes of its ``<svg>`` elements (the Diagram tab), and their share;
* *marks*: how many elements mark a run of text (``<span>``, a painted letter ``<l-N>``, a
  code token ``<t-k>``), and *style=*: how many inline style attributes.

``FIRST`` holds the same figures measured on commit de36e4c (the page before it was made
lighter), ``BEFORE`` those of commit 31639b3 (before letters and code tokens became
elements and the forward drawing was stored once), so the table shows all three; ``after``
is measured when this runs. The last cell is the forward cell of Karpathy's makemore part 4
(``tests/chain/makemore.py``), whose display is the cell backward page alone.

Per notebook (``notebooks/*.ipynb`` as stored): file bytes, bytes of all ``text/html``
outputs and how many einsum_grad pages they hold. ``NOTEBOOKS_BEFORE`` holds the figures of
the notebooks executed with the heavier page; a notebook still stored byte for byte as then
is reported as not re-executed yet, its *after* figure pending. ``python bench_pages.py
--notebooks DIR`` reports notebooks executed into DIR instead (copies, e.g. by nbclient).

    python benchmarks/bench_pages.py           # or: python benchmarks/run.py bench_pages
"""

from __future__ import annotations

import re

#: (title, cell source under the magic, the arrays the cell reads: name -> shape, or a
#: function returning the cell's namespace)
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
    ("attention scores (gallery)", "%%einsum_grad\nscores = np.einsum('bhqd,bhkd->bhqk', q, k)",
     {"q": (2, 2, 5, 4), "k": (2, 2, 6, 4)}),
    ("3 operands `i,ij,j->` (gallery)", "%%einsum_grad\nb = np.einsum('i,ij,j->', x, W, z)",
     {"x": (4,), "W": (4, 3), "z": (3,)}),
    ("makemore part 4 forward cell", None, "makemore"),
]


def _makemore() -> tuple[str, dict]:
    """The makemore cell under the magic, and its namespace (torch, the lecture's data)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "chain"))
    import makemore
    import torch
    import torch.nn.functional as F

    return "%%einsum_grad\n" + makemore.FORWARD, {"torch": torch, "F": F, **makemore.data(0)}


#: Measured on commit de36e4c: title -> list of (text/html, text/plain, stylesheet, SVG, marks,
#: style=) per display of the cell, in order.
FIRST = {
    "matmul": [(53704, 571, 12826, 7009, 844, 0)],
    "trace `ii->`": [(40172, 540, 12826, 2625, 550, 0)],
    "row sums `ij->i`": [(38129, 559, 12826, 3328, 462, 0)],
    "4-operand chain": [(109781, 1051, 12826, 19820, 2205, 0)],
    "open exercise `--expect A=?`": [(53667, 531, 12826, 7009, 810, 0)],
    "2-step NumPy cell": [(53730, 575, 12826, 7009, 844, 0), (16745, 454, 12826, 0, 58, 0)],
}


#: Measured on commit 31639b3 (this file's ``--raw`` run with that tree's package), as FIRST.
BEFORE = {
    "matmul": [(40855, 571, 7067, 5883, 594, 0)],
    "trace `ii->`": [(28882, 540, 6666, 2437, 342, 0)],
    "row sums `ij->i`": [(27992, 559, 6882, 2944, 303, 0)],
    "4-operand chain": [(88082, 1051, 7439, 16400, 1664, 0)],
    "open exercise `--expect A=?`": [(40970, 531, 7219, 5883, 560, 0)],
    "2-step NumPy cell": [(40881, 575, 7067, 5883, 594, 0), (4944, 431, 2012, 0, 35, 0)],
    "attention scores (gallery)": [(54501, 712, 7623, 10235, 870, 0)],
    "3 operands `i,ij,j->` (gallery)": [(50207, 836, 6735, 7749, 775, 0)],
    "makemore part 4 forward cell": [(27279, 3149, 2108, 0, 317, 0)],
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


def notebook_rows(executed=None) -> list[str]:
    """Rows per notebook: as stored in notebooks/, or executed into the folder ``executed``
    (``executed/before`` and ``executed/after``: copies executed with the page before and
    after, e.g. by nbclient)."""
    from pathlib import Path

    stored = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
    if executed is not None:
        rows = ["", f"Per notebook, executed top to bottom into copies (pages: einsum_grad displays "
                "among the outputs; before: the tree of commit 31639b3, after: this tree):", "",
                "| notebook | when | file | text/html outputs | pages |", "|---|---|---|---|---|"]
        for path in stored:
            for when in ("before", "after"):
                copy = Path(executed) / when / path.name
                if copy.exists():
                    f, h, n = notebook(copy)
                    rows.append(f"| {path.name} | {when} | {_kb(f)} | {_kb(h)} | {n} |")
        return rows
    rows = ["", "Per notebook, as stored in notebooks/ (pages: einsum_grad displays among the outputs; "
            "first: as executed at de36e4c; stored: the file now):",
            "", "| notebook | when | file | text/html outputs | pages |", "|---|---|---|---|---|"]
    for path in stored:
        now = notebook(path)
        before = NOTEBOOKS_BEFORE.get(path.name)
        if before:
            rows.append(f"| {path.name} | first | {_kb(before[0])} | {_kb(before[1])} | {before[2]} |")
        if now == before:
            rows.append(f"| {path.name} | stored | pending: not re-executed since the page was made "
                        "lighter (file and text/html bytes to be measured then) | | |")
        else:
            rows.append(f"| {path.name} | stored | {_kb(now[0])} | {_kb(now[1])} | {now[2]} |")
    return rows


def measure(bundle: dict) -> tuple[int, int, int, int, int, int]:
    """(text/html, text/plain, stylesheet, SVG bytes, marks, style= attributes) of one bundle."""
    page = bundle.get("text/html", "")
    size = lambda s: len(s.encode("utf-8"))      # noqa: E731
    style = sum(size(s) for s in re.findall(r"(?s)<style>.*?</style>", page))
    svg = sum(size(s) for s in re.findall(r"(?s)<svg\b.*?</svg>", page))
    return (size(page), size(bundle.get("text/plain", "")), style, svg,
            len(re.findall(r"<(?:span\b|[lt]-\w+>)", page)), len(re.findall(r"\sstyle=", page)))


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
        if arrays == "makemore":
            cell, namespace = _makemore()
            shell.user_ns.update(namespace)
        else:
            shell.user_ns.update({n: rng.standard_normal(s) for n, s in arrays.items()})
        with capture_output() as captured:
            result = shell.run_cell(cell)
        assert result.success, result.error_in_exec
        out.append((title, [o.data for o in captured.outputs]))
    return out


def composition(page: str) -> str:
    """Where a page's bytes go: visible text, marks (painted letters, code tokens, spans),
    stylesheet, SVG, the rest of the markup."""
    from html import unescape

    size = lambda s: len(s.encode("utf-8"))      # noqa: E731
    style = sum(size(s) for s in re.findall(r"(?s)<style>.*?</style>", page))
    svg = sum(size(s) for s in re.findall(r"(?s)<svg\b.*?</svg>", page))
    rest = re.sub(r"(?s)<style>.*?</style>|<svg\b.*?</svg>", "", page)
    letters = sum(map(size, re.findall(r"</?l-\d+>", rest)))
    tokens = sum(map(size, re.findall(r"</?t-\w+>", rest)))
    spans = sum(map(size, re.findall(r"<span\b[^>]*>|</span>", rest)))
    text = size(unescape(re.sub(r"<[^>]+>", "", rest)))
    other = size(page) - style - svg - letters - tokens - spans - text
    return (f"{_kb(size(page))}: visible text {_kb(text)}, painted letters' tags {_kb(letters)} "
            f"({rest.count('<l-')}), code tokens' tags {_kb(tokens)} ({rest.count('<t-')}), "
            f"span tags {_kb(spans)} ({rest.count('<span')}), stylesheet {_kb(style)}, "
            f"SVG {_kb(svg)}, other markup {_kb(other)}")


def _kb(n: int) -> str:
    return f"{n / 1000:.1f} KB"


def _share(part: int, whole: int) -> str:
    return f"{_kb(part)} ({100 * part / whole:.0f} %)" if whole else "-"


def _row(figures) -> str:
    html, plain, style, svg, spans, styles = figures
    return f"{_kb(html)} | {plain:,} B | {_share(style, html)} | {_share(svg, html)} | {spans} | {styles}"


def run(executed=None) -> list[str]:
    rows = ["Bytes of UTF-8 per display; KB = 1000 bytes. *first*: commit de36e4c; *before*: "
            "commit 31639b3; *after*: this tree.", "",
            "| cell | display | when | text/html | text/plain | stylesheet | SVG | marks | "
            "`style=` |", "|---|---|---|---|---|---|---|---|---|"]
    pages = bundles()
    for title, published in pages:
        for k, bundle in enumerate(published):
            kind = ("cell backward" if bundle.get("text/plain", "").startswith("cell backward")
                    else f"einsum {k + 1}")
            for when, table in (("first", FIRST), ("before", BEFORE)):
                earlier = table.get(title, [])
                if k < len(earlier):
                    rows.append(f"| {title} | {kind} | {when} | {_row(earlier[k])} |")
            rows.append(f"| {title} | {kind} | after | {_row(measure(bundle))} |")
    matmul = pages[0][1][0]["text/html"]
    rows += ["", f"Where a matmul's page goes now: {composition(matmul)}."]
    return rows + notebook_rows(executed)


if __name__ == "__main__":
    import sys

    if "--raw" in sys.argv:                      # the figures as a BEFORE literal
        print({title: [measure(b) for b in published] for title, published in bundles()})
    else:
        args = sys.argv[1:]
        folder = args[args.index("--notebooks") + 1] if "--notebooks" in args else None
        print("\n".join(run(folder)))
