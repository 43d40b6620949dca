"""The views that teach: verdict line and badge, the exercise, the reveal, the swap, the cost."""

from __future__ import annotations

import re

from einsum_magic import derive
from einsum_magic.views import teaching
from einsum_magic.cell.analysis import Analysis
from einsum_magic.cell.calls import equation_call
from einsum_magic.expect import judge
from einsum_magic.views.verdict import answer_hidden, verdict


def analysis(equation="ij,jk->ik", shapes=((2, 3), (3, 4)), names=None, expects=(), note="skipped"):
    d = derive(equation, names=names, shapes=shapes)
    return Analysis(equation_call(equation), d, "defaults", check_note=note,
                    expectations=tuple(judge(d, t, p) for t, p in expects))


def test_the_verdict_says_expect_first_then_the_check():
    assert verdict(analysis()).line == "check skipped"
    assert verdict(analysis()).state == "none" and verdict(analysis()).tab is None
    blank = analysis(expects=[("dL_dA", "?")])
    assert (verdict(blank).line, verdict(blank).state, verdict(blank).tab) == \
        ("expect dL_dA unanswered · check skipped", "open", "Exercise")
    wrong = analysis(expects=[("dL_dA", "ik,kj->ij"), ("dL_dB", "ik,ij->jk")])
    assert verdict(wrong).line == "expect dL_dA wrong · expect dL_dB right · check skipped"
    assert verdict(wrong).state == "fail" and verdict(wrong).tab == "Exercise"
    right = analysis(expects=[("dL_dA", "ik,jk->ij")])
    assert verdict(right).state == "pass" and not answer_hidden(right)
    assert answer_hidden(blank) and answer_hidden(wrong)


def test_badge_and_reveal():
    blank = analysis(expects=[("dL_dA", "?")])
    assert 'class="eg-badge eg-badge-open"' in teaching.badge(blank)
    hidden = teaching.reveal(blank, "<p>ANSWER</p>")
    assert hidden.startswith('<details class="eg-reveal"><summary>') and "<details open" not in hidden
    right = analysis(expects=[("dL_dA", "ik,jk->ij")])
    assert teaching.reveal(right, "<p>ANSWER</p>") == "<p>ANSWER</p>"
    assert "eg-badge-pass" in teaching.badge(right)


def test_the_exercise_asks_and_names_each_mistake():
    blank = teaching.exercise(analysis(expects=[("dL_dA", "?")]))
    assert "the backward of A as one einsum over (dL_dC, B)" in blank and "unanswered" in blank
    assert "ik,jk->ij" not in blank
    wrong = teaching.exercise(analysis(expects=[("dL_dA", "ik,kj->ji")]))
    items = re.findall(r"<li>(.*?)</li>", wrong)
    assert len(items) == 2 and "a transpose" in items[0] and "a transpose" in items[1]


def test_the_swap_marks_result_with_cotangent_and_operand_with_gradient():
    html = teaching.swaps(analysis())
    rows = re.findall(r"<tr><td>(dL_d\w+)</td><td><code>(.*?)</code></td><td><code>(.*?)</code>", html)
    assert [r[0] for r in rows] == ["dL_dA", "dL_dB"]
    _, fwd, bwd = rows[1]
    assert '<span class="eg-swap-a">C[i, k]</span>' in fwd and '<span class="eg-swap-b">B[j, k]</span>' in fwd
    assert '<span class="eg-swap-b">dL_dB[j, k]</span>' in bwd and \
        '<span class="eg-swap-a">dL_dC[i, k]</span>' in bwd
    assert "A[i, j]" in bwd and '">A[i, j]' not in bwd          # the other factor is not marked


def test_the_cost_view_states_the_rule_names_movement_and_folds_details():
    html = teaching.cost(analysis(), details="<table>PATHS</table>")
    assert "2 × the product of its letters' sizes" in html
    assert "2 × i·j·k = 2 × 2·3·4 = 48" in html
    assert "the backward costs 2 × the forward" in html
    assert re.search(r"<details class=\"eg-fold\"><summary>[^<]*</summary><table>PATHS", html)
    diag = teaching.cost(analysis("ii->i", ((3, 3),)))
    assert "a diagonal read" in diag and "a diagonal write" in diag and "scatter" not in diag
    assert "a transpose" in teaching.cost(analysis("ij->ji", ((2, 3),)))
    hidden = teaching.cost(analysis(expects=[("dL_dA", "?")]))
    assert "ik,jk-&gt;ij" not in hidden                       # no gradient einsum while hidden


# -- the page: verdict in the header, the answer hidden, the tab that explains it -------------

def _text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped (letters are painted in spans)."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _checked_tab(page: str) -> str:
    return re.findall(r' checked><label for="[\w-]+">(\w+)<', page)[0]


def _panel(page: str, title: str) -> str:
    return re.search(rf'<div class="eg-panel" data-tab="{title}">(.*?)</div>(?=<div class="eg-panel"|</div>$)',
                     page, re.S)[1]


def _without_reveals(page: str) -> str:
    """``page`` with every Reveal fold (and what it holds, nested folds included) cut out."""
    while '<details class="eg-reveal">' in page:
        start = page.index('<details class="eg-reveal">')
        depth, at = 0, start
        for m in re.finditer(r"<details\b|</details>", page[start:]):
            depth += 1 if m.group(0) == "<details" else -1
            if depth == 0:
                at = start + m.end()
                break
        page = page[:start] + page[at:]
    return page


def test_a_blank_page_asks_and_keeps_the_answer_behind_closed_folds():
    from einsum_magic.views import html

    a = analysis(expects=[("dL_dA", "?")])
    page = html.page(a, tab=verdict(a).tab)
    header = html.header(a)
    assert "eg-badge-open" in header and "expect dL_dA unanswered · check skipped" in header
    assert _checked_tab(page) == "Exercise"
    assert "over (dL_dC, B)" in _panel(page, "Exercise")
    for title in ("Backward", "Loops", "Export"):
        panel = _panel(page, title)
        assert panel.startswith(f'<h3 class="eg-panel-title">{title}</h3><details class="eg-reveal">'
                                f"<summary>"), title
        assert "<details open" not in panel
    outside = _without_reveals(page)
    assert outside.count("<details") == outside.count("</details>") == 0
    for answer in ("ik,jk->ij", "dL_dC @ B.T", "dL_dA[i, j] +="):
        assert answer not in _text(outside), answer
        assert answer in _text(page), answer                   # behind the folds


def test_a_right_proposal_shows_the_answer_and_a_wrong_one_opens_the_exercise():
    from einsum_magic.views import html

    right = analysis(expects=[("dL_dA", "xz,yz->xy")])
    page = html.page(right, tab=verdict(right).tab)
    assert 'class="eg-badge eg-badge-pass"' in page and '<details class="eg-reveal">' not in page
    assert "ik,jk->ij" in _text(_panel(page, "Backward"))
    wrong = analysis(expects=[("dL_dA", "ik,jk->ji")])
    page = html.page(wrong, tab=verdict(wrong).tab)
    assert _checked_tab(page) == "Exercise" and 'class="eg-badge eg-badge-fail"' in page
    assert "the result must carry A's letters" in _text(_panel(page, "Exercise"))


def test_a_failed_check_opens_the_check_tab():
    import dataclasses
    import sys

    from einsum_magic.views import html

    sys.path.insert(0, "tests")
    from test_views import failing_report

    a = analysis()
    a = dataclasses.replace(a, check=failing_report(a))
    assert verdict(a).line == "check FAIL" and verdict(a).tab == "Check"
    assert _checked_tab(html.page(a, tab=verdict(a).tab)) == "Check"


def test_the_live_reveal_button_shows_the_answer_when_pressed():
    from einsum_magic.views import widget

    assert widget.live_reveal(analysis(expects=[("dL_dA", "ik,jk->ij")])) is None
    assert widget.live_reveal(analysis()) is None
    box = widget.live_reveal(analysis(expects=[("dL_dA", "?")]))
    button, answer = box.children
    assert button.description == "Reveal the answer" and answer.value == ""
    button.click()
    assert "ik,jk->ij" in _text(answer.value) and button.disabled
    box.close()


def test_the_exercise_notebook_ships_blanks_and_shows_no_answer():
    """Every exercise of 03_exercises is a blank whose stored outputs hold no answer (text/plain:
    none at all; text/html: only inside Reveal folds); 03_exercises_solutions holds the answers."""
    import json
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "notebooks"
    exercises = json.loads((folder / "03_exercises.ipynb").read_text())
    solutions = json.loads((folder / "03_exercises_solutions.ipynb").read_text())

    def expects(nb):
        return [re.search(r"--expect (\S+)=(\S+)", "".join(c["source"])).groups()
                for c in nb["cells"] if c["cell_type"] == "code" and "--expect" in "".join(c["source"])]

    answers = expects(solutions)
    assert len(answers) >= 10 and all(spec != "?" for _, spec in answers)
    blanks = expects(exercises)
    assert [spec for _, spec in blanks].count("?") >= 10
    cells = [c for c in exercises["cells"]
             if c["cell_type"] == "code" and "=?" in "".join(c.get("source", ""))]
    assert len(cells) == len(answers)
    for cell, (_, spec) in zip(cells, answers):            # each blank and its own answer
        out = next(o for o in cell["outputs"] if "data" in o and "text/html" in o["data"])
        plain, page = "".join(out["data"]["text/plain"]), "".join(out["data"]["text/html"])
        assert plain.splitlines()[0].startswith("expect dL_d") and " unanswered · " in plain
        after_forward = plain.split("forward: ", 1)[1].split("\n", 1)[1]
        assert "np.einsum(" not in after_forward and spec not in after_forward, spec
        assert spec not in _text(_without_reveals(page)), spec
