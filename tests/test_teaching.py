"""The views that teach: verdict line and badge, the exercise, the reveal, the swap, the cost."""

from __future__ import annotations

import re

from einsum_magic import derive, teaching
from einsum_magic.analysis import Analysis
from einsum_magic.cell import equation_call
from einsum_magic.expect import judge
from einsum_magic.verdict import answer_hidden, verdict


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
