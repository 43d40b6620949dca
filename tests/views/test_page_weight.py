"""How much a display weighs in a notebook: the bundle's text/html, as the magic publishes it.

Every run of a magic cell stores its pages in the notebook (and in every diff of it), so
their weight is pinned here: a matmul's page and a 4-operand chain's under stated bounds,
no inline ``style=`` anywhere (a letter's colour is its element, ``<l-0>`` …, a code token's
``<t-k>`` …), a drawing shown twice stored once, and a page's one stylesheet holding the
rules that page uses and no others. ``benchmarks/bench_pages.py`` reports the figures.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic.views import html

#: Bounds on the UTF-8 bytes of text/html: the pages weigh 30.7 KB and 58.6 KB (they were
#: 53.7 KB and 109.8 KB at de36e4c, then 40.8 KB and 88.1 KB).
MATMUL_MAX = 31_500
CHAIN_MAX = 60_000
#: The goal for a matmul's page (issue 20, item 10). Its visible text alone is 7.8 KB, and its
#: content and look are kept: benchmarks/RESULTS.md says where the bytes still go.
MATMUL_GOAL = 20_000


@pytest.fixture(scope="module")
def shell():
    # IPython's test shell, as the other magic tests use it: one shell a process (a plain
    # InteractiveShell.instance() here would refuse theirs, a TerminalInteractiveShell)
    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "einsum_magic")
    ip.run_cell("import numpy as np")
    return ip


def published(shell, cell: str, **arrays) -> list[dict]:
    """The bundles the magic published for ``cell`` (checked, as a user runs it)."""
    rng = np.random.default_rng(0)
    shell.user_ns.update({n: rng.standard_normal(s) for n, s in arrays.items()})
    with capture_output() as captured:
        result = shell.run_cell("%%einsum_grad\n" + cell)
    assert result.success, result.error_in_exec
    return [o.data for o in captured.outputs]


def size(text: str) -> int:
    return len(text.encode("utf-8"))


@pytest.fixture(scope="module")
def matmul(shell):
    (bundle,) = published(shell, "C = np.einsum('ij,jk->ik', A, B)", A=(2, 3), B=(3, 4))
    return bundle


@pytest.fixture(scope="module")
def chain(shell):
    (bundle,) = published(shell, "E = np.einsum('ab,bc,cd,de->ae', P, Q, R, S)",
                          P=(2, 3), Q=(3, 4), R=(4, 5), S=(5, 6))
    return bundle


def test_a_matmul_page_stays_under_its_bound(matmul):
    page = matmul["text/html"]
    assert "check PASS" in page and page.count('class="eg-panel"') == 7     # the whole page
    assert size(page) <= MATMUL_MAX, size(page)


@pytest.mark.xfail(strict=True, reason="the matmul page weighs 30.7 KB with its whole content "
                   "and look (text 7.8 KB, stylesheet 6.5 KB, SVG 4.0 KB, one element per "
                   "painted letter and code token): benchmarks/RESULTS.md")
def test_a_matmul_page_reaches_the_goal(matmul):
    assert size(matmul["text/html"]) <= MATMUL_GOAL, size(matmul["text/html"])


def test_a_four_operand_page_stays_under_its_bound(chain):
    page = chain["text/html"]
    assert "check PASS" in page and page.count("<svg") == 1 + 2 * 4
    assert size(page) <= CHAIN_MAX, size(page)


@pytest.mark.parametrize("which", ["matmul", "chain"])
def test_no_inline_styles_letters_and_tokens_coloured_by_element(which, request):
    page = request.getfixturevalue(which)["text/html"]
    assert not re.search(r"\sstyle=", page)
    letters = re.findall(r"<(l-\d)>([A-Za-z])</\1>", page)
    assert len(letters) > 50
    assert len(re.findall(r"<t-[a-z]+>", page)) > 100           # code tokens, by element too
    # nothing paints a letter or a token with a span and a class any more
    assert not re.search(r'<span class="(eg-l\d|[a-z]{1,2})">', page)


@pytest.mark.parametrize("which", ["matmul", "chain"])
def test_the_forward_drawing_is_stored_once(which, request):
    page = request.getfixturevalue(which)["text/html"]
    grads = page.count('data-node="cot"')                       # one drawing per gradient
    assert grads >= 2 and page.count("<svg") == 1 + 2 * grads
    (ref,) = re.findall(r'<g class="eg-net" id="([\w-]+)">', page)
    assert page.count(f'<use href="#{ref}"/>') == grads         # beside each gradient
    assert page.count("<title>forward") == 1 + grads            # each still named for readers


def _selectors(css: str) -> list[str]:
    body = css.removeprefix("<style>").removesuffix("</style>")
    return [sel.strip() for block in body.split("}") if "{" in block
            for sel in block.split("{")[0].split(",")]


def _plain(selector: str) -> str:
    return re.sub(r"\((?:[^()]|\([^()]*\))*\)", "", selector)   # :is(…), :has(…) test the outside


def _classes(selector: str) -> set[str]:
    # the scope, and eg-dark: classes set on the display from outside the page
    return set(re.findall(r"\.([\w-]+)", _plain(selector))) - {"einsum-grad", "eg-dark"}


def _elements(selector: str) -> set[str]:
    return set(re.findall(r"(?:^|[\s>+~])([a-z][\w-]*)", _plain(selector)))


@pytest.mark.parametrize("which", ["matmul", "chain"])
def test_one_stylesheet_with_the_rules_the_page_uses(which, request):
    page = request.getfixturevalue(which)["text/html"]
    assert page.count("<style>") == 1
    css = re.search(r"(?s)<style>.*?</style>", page)[0]
    used = {c for attr in re.findall(r'class="([^"]*)"', page.replace(css, ""))
            for c in attr.split()}
    mine = _selectors(css)
    for sel in mine:                            # nothing the page does not use …
        assert _classes(sel) <= used, sel
    elements = set(re.findall(r"<([a-z][\w-]*)", page.replace(css, "")))
    for sel in mine:
        assert _elements(sel) <= elements, sel
    full = _selectors(html.stylesheet())        # … and everything it does
    wanted = [sel for sel in full if _classes(sel) <= used and _elements(sel) <= elements
              and "nth-of-type" not in sel]
    assert set(wanted) <= set(mine), set(wanted) - set(mine)
    tabs = page.count('type="radio"')
    assert f"input:nth-of-type({tabs}):checked~" in css
    assert f"input:nth-of-type({tabs + 1}):checked~" not in css


def test_the_cell_backward_page_carries_its_own_smaller_stylesheet(shell):
    bundles = published(shell, "H = np.einsum('ij,jk->ik', X, W)\nZ = np.maximum(H, 0)",
                        X=(4, 3), W=(3, 5))
    cell = bundles[-1]
    assert cell["text/plain"].startswith("cell backward")
    css = re.search(r"(?s)<style>.*?</style>", cell["text/html"])[0]
    assert "eg-tabs" not in css and "eg-diagram" not in css and " t-p{" in css
    assert size(css) < size(html.stylesheet()) / 3
