"""--expect: a learner's proposed backward einsum, graded strictly and explained.

The table below holds typical learner mistakes, each run through the magic as a learner
would (``%%einsum_grad --no-run --no-check --expect NAME=SPEC``): a wrong one fails the
cell with a message that names the mistake, a right one passes.
"""

from __future__ import annotations

import ast
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic import EinsumError, derive
from einsum_magic.expect import judge
from einsum_magic.magic import ExpectationFailed, load_ipython_extension

MATMUL = "C = np.einsum('ij,jk->ik', A, B)"
MATVEC = "y = np.einsum('ij,j->i', W, x)"

#: (cell, --expect, None for right, else words the failure message must hold)
TABLE = [
    # right answers, in the stated order
    (MATMUL, "A=ik,jk->ij", None),
    (MATMUL, "dL_dB=ik,ij->jk", None),
    (MATMUL, "A=ab,cb->ac", None),                                   # relabelled
    (MATMUL, "'A=ik,jk->ij'", None),                                 # quoted
    (MATMUL, '"A = ik, jk -> ij"', None),                            # quoted, with spaces
    (MATMUL, "A=ik,jk", None),                                       # implicit output
    (MATVEC, "x=i,ij->j", None),
    (MATVEC, "W=i,j->ij", None),
    ("d = np.einsum('ii->i', S)", "S=i,ij->ij", None),               # with np.eye
    ("d = np.einsum('ii->i', S)", "S=i,ij->ji", None),               # np.eye is symmetric
    ("t = np.einsum('ii->', S)", "S=,ab->ab", None),
    ("s = np.einsum('ij->j', M)", "M=j,i->ij", None),                # with np.ones
    ("Q = np.einsum('bij,bjk->bik', P1, P2)", "P2=bik,bij->bjk", None),
    ("G = np.einsum('...ij,...jk->...ik', E, F)", "E=...ik,...jk->...ij", None),
    ("s = np.einsum('i,i->', v, v)", "dL_dv_1=,i->i", None),          # the same array twice
    # wrong answers, each named
    (MATMUL, "A=ik,kj->ij", "B must keep its forward letters 'jk' (you wrote 'kj': a transpose)"),
    (MATMUL, "A=jk,ik->ij", "the operands are in the wrong order: the cotangent dL_dC comes first"),
    (MATMUL, "A=ik,jk->ji", "the result must carry A's letters 'ij' (you wrote 'ji': a transpose)"),
    (MATMUL, "A=ik,jk->i", "the result must carry A's letters 'ij' (you wrote 'i')"),
    (MATMUL, "A=ik,lk->ij", "'j' is a letter the forward summed (A shares it with B), so the "
                            "backward takes it from B; it is not broadcast"),
    (MATMUL, "A=ik,jk->il", "the result must carry A's letters 'ij' (you wrote 'il'): 'l' comes "
                            "from no operand"),
    (MATMUL, "A=ik,kj->ji", "the result must carry A's letters 'ij' (you wrote 'ji': a transpose); "
                            "B must keep its forward letters 'jk' (you wrote 'kj': a transpose)"),
    (MATMUL, "A=ik->ij", "the backward of A takes 2 operands (dL_dC, B); you wrote 1"),
    (MATMUL, "A=ik,jk,j->ij", "no np.eye or np.ones is needed here"),
    (MATMUL, "B=ik,ji->jk", "A must keep its forward letters 'ij' (you wrote 'ji': a transpose)"),
    (MATVEC, "W=i,j->ji", "the result must carry W's letters 'ij' (you wrote 'ji': a transpose)"),
    (MATVEC, "W=j,i->ij", "the operands are in the wrong order"),
    (MATVEC, "x=i,ji->j", "W must keep its forward letters 'ij' (you wrote 'ji': a transpose)"),
    ("d = np.einsum('ii->i', S)", "S=i->ii", "'i' repeats in S, so an np.eye over 'i' is needed"),
    ("t = np.einsum('ii->', S)", "S=->ii", "'i' repeats in S, so an np.eye over 'i' is needed"),
    ("d = np.einsum('ii->i', S)", "S=i,ij->ii", "the result must carry S's letters 'ij'"),
    ("s = np.einsum('ij->j', M)", "M=j->ij", "'i' is summed inside M alone, so an np.ones over "
                                             "'i' is needed"),
    ("s = np.einsum('ij->j', M)", "M=j,i->j", "'i' is summed inside M alone in the forward, so "
                                              "the backward broadcasts it back"),   # summed
    ("s = np.einsum('ij->j', M)", "M=j,j->ij", "np.ones runs over 'i'"),
    ("s = np.einsum('ij->j', M)", "M=i,j->ij", "the operands are in the wrong order"),
    ("Q = np.einsum('bij,bjk->bik', P1, P2)", "P2=bik,bij->jk",
     "the result must carry P2's letters 'bjk' (you wrote 'jk')"),
    ("Q = np.einsum('bij,bjk->bik', P1, P2)", "P1=bik,bkj->bij",
     "P2 must keep its forward letters 'bjk' (you wrote 'bkj': a transpose)"),
    ("G = np.einsum('...ij,...jk->...ik', E, F)", "E=...ik,...kj->...ij",
     "F must keep its forward letters '...jk' (you wrote '...kj': a transpose)"),
    ("D = np.einsum('ij,jk,kl->il', A, B, C)", "B=il,ji,kl->jk",
     "A must keep its forward letters 'ij' (you wrote 'ji': a transpose)"),
    ("D = np.einsum('ij,jk,kl->il', A, B, C)", "B=il,ij,kl->jk", None),
    ("s = np.einsum('i,i->', v, v)", "dL_dv_1=i,->i", "the operands are in the wrong order"),
    (MATMUL, "A=ik,j1->ij", "not a valid einsum: '1' is not a subscript letter"),
]


#: Every name the table's cells read or assign: the shared test shell must not hold
#: arrays of other tests under them (``--no-run`` reads sizes from the namespace).
NAMES = sorted({node.id for cell, _, _ in TABLE for node in ast.walk(ast.parse(cell))
                if isinstance(node, ast.Name) and node.id != "np"})


@pytest.fixture
def ip():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    saved = {name: shell.user_ns.pop(name) for name in NAMES if name in shell.user_ns}
    yield shell
    for name in NAMES:
        shell.user_ns.pop(name, None)
    shell.user_ns.update(saved)


def run(shell, source):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


@pytest.mark.parametrize("cell, spec, why", TABLE, ids=[s for _, s, _ in TABLE])
def test_a_table_of_learner_answers(ip, cell, spec, why):
    result, cap = run(ip, f"%%einsum_grad --no-run --no-check --expect {spec}\n{cell}")
    (shown,) = [o.data["text/plain"] for o in cap.outputs]
    (page,) = [o.data["text/html"] for o in cap.outputs]
    assert re.findall(r' checked><label for="[\w-]+">(\w+)<', page) == ["Exercise"]
    state = re.findall(r'class="eg-badge eg-badge-(\w+)"', page)
    assert state == (["pass"] if why is None else ["fail"])
    if why is None:
        assert result.success, result.error_in_exec
        assert shown.splitlines()[0].startswith("expect dL_d") and " right · " in shown
        assert ": correct: " in shown
    else:
        error = result.error_in_exec
        assert type(error) is ExpectationFailed, error
        assert why in str(error)
        assert shown.splitlines()[0].startswith("expect dL_d") and " wrong · " in shown
        assert "Traceback" not in cap.stdout


def test_the_table_is_large_enough():
    assert sum(w is None for *_, w in TABLE) >= 10
    assert sum(w is not None for *_, w in TABLE) >= 20


def test_a_blank_runs_asks_and_hides_the_answer(ip):
    for spec in ("A=?", "dL_dA=?", "'A = ?'"):
        result, cap = run(ip, f"%%einsum_grad --no-run --no-check --expect {spec}\n{MATMUL}")
        assert result.success
        (shown,) = [o.data["text/plain"] for o in cap.outputs]
        assert shown.splitlines()[0] == "expect dL_dA unanswered · check skipped"
        assert "exercise: propose the backward of A as one einsum over (dL_dC, B)" in shown
        assert "ik,jk->ij" not in shown and "B.T" not in shown
        (page,) = [o.data["text/html"] for o in cap.outputs]
        assert '<details class="eg-reveal">' in page and 'class="eg-badge eg-badge-open"' in page


def test_a_proposal_names_its_einsum(ip):
    cell = "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ik,kl->il', C, A)"
    result, _ = run(ip, f"%%einsum_grad --no-run --no-check --expect A=ik,jk->ij\n{cell}")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec) == ("--expect A: A is an operand of einsums 1, 2; name one, "
                                         "e.g. --expect 1:A=…")
    result, cap = run(ip, f"%%einsum_grad --no-run --no-check --expect 1:A=ik,jk->ij\n{cell}")
    assert result.success
    first, second = [o.data["text/plain"] for o in cap.outputs]
    assert "expect dL_dA = 'ik,jk->ij' (einsum 1): correct" in first
    assert "expect" not in second.splitlines()[0]
    result, cap = run(ip, f"%%einsum_grad --no-run --no-check --expect '2:A=il,kl->ik'\n{cell}")
    assert type(result.error_in_exec) is ExpectationFailed
    assert str(result.error_in_exec).startswith("--expect dL_dA = 'il,kl->ik' (einsum 2): wrong: ")
    assert "C must keep its forward letters" in str(result.error_in_exec)
    result, cap = run(ip, f"%%einsum_grad --no-run --no-check --expect 2:A=il,ik->kl\n{cell}")
    assert result.success


@pytest.mark.parametrize("spec, message", [
    ("3:A=ik,jk->ij", "--expect 3:A: the cell has 1 einsum(s), not 3"),
    ("0:A=ik,jk->ij", "before ':' comes the einsum's number"),
    ("x:A=ik,jk->ij", "before ':' comes the einsum's number"),
    ("1:Q=ik,jk->ij", "--expect names 'Q', which is no operand of einsum 1"),
    ("A=", "--expect is written [N:]NAME=EINSUM"),
])
def test_bad_expect_options(ip, spec, message):
    result, _ = run(ip, f"%%einsum_grad --no-run --no-check --expect {spec}\n{MATMUL}")
    assert type(result.error_in_exec) is UsageError
    assert message in str(result.error_in_exec)


# -- the grader alone ---------------------------------------------------------------------

def shaped(equation, shapes, names=None):
    return derive(equation, names=names, shapes=shapes)


def test_strict_order_no_reordering_passes():
    d = shaped("ij,jk->ik", ((2, 3), (3, 4)))
    for proposal in ("jk,ik->ij", "ik,jk->ji"):       # right over (B, dL_dC) only
        assert judge(d, "dL_dA", proposal).verdict == "wrong"
    w = shaped("ij,j->i", ((2, 3), (3,)), names=("W", "x"))
    assert judge(w, "dL_dW", "i,j->ji").verdict == "wrong"
    m = shaped("ij->j", ((2, 3),), names=("M",))
    assert judge(m, "dL_dM", "i,j->ij").verdict == "wrong"


def test_values_decide_only_where_letters_cannot():
    trace = shaped("ii->", ((3, 3),))
    assert judge(trace, "dL_dA", ",ab->ba").passed     # np.eye is symmetric
    assert judge(trace, "dL_dA", ",ab->ab").message == \
        "correct: dL_dA = einsum(',ab->ab', dL_dB, np.eye over i)"


def test_an_invalid_einsum_keeps_its_caret():
    d = shaped("ij,jk->ik", ((2, 3), (3, 4)))
    bad = judge(d, "dL_dA", "ik,j1->ij")
    assert bad.verdict == "invalid" and bad.failed
    assert bad.message.splitlines()[-1].strip() == "^"


def test_grading_never_builds_the_full_size_arrays():
    import tracemalloc

    d = shaped("ij,jk->ik", ((20000, 20000), (20000, 3)))
    tracemalloc.start()
    try:
        for proposal in ("ik,jk->ij", "ik,kj->ij", "jk,ik->ij", "ik,jk->i", "ik,lk->ij"):
            judge(d, "dL_dA", proposal)
        square = shaped("ij,jk->ik", ((20000, 20000), (20000, 20000)))
        assert not judge(square, "dL_dA", "ik,kj->ij").passed
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6


def test_a_bad_seed_is_an_einsum_error():
    with pytest.raises(EinsumError, match="non-negative integer"):
        judge(shaped("ij->i", ((2, 3),)), "dL_dA", "i,j->ij", seed=-1)


EQUATIONS = ["ij,jk->ik", "ij,j->i", "ii->i", "ij->j", "bij,bjk->bik", "i,i->", "ij,jk,kl->il",
             "ii->", "ijk->kji", "i,j->ij", "ij,ij->ij", "bi,ij,bj->b"]


def _mutations(equation: str):
    """Typical slips on a right answer: result reversed, two operands swapped, one reversed."""
    ins, out = equation.split("->")
    ops = ins.split(",")
    yield f"{ins}->{out[::-1]}"
    for i in range(len(ops)):
        yield ",".join(o[::-1] if k == i else o for k, o in enumerate(ops)) + "->" + out
        for j in range(i + 1, len(ops)):
            swapped = list(ops)
            swapped[i], swapped[j] = swapped[j], swapped[i]
            yield ",".join(swapped) + "->" + out


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(EQUATIONS), st.data())
def test_graded_right_exactly_when_it_matches_jax_vjp(equation, data):
    """The derived answer relabelled at random passes; each slip on it passes exactly when, over
    the operands in the stated order, it computes what jax.vjp computes."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    sizes = {c: data.draw(st.integers(1, 4), label=c) for c in "ijklb"}
    shapes = [tuple(sizes[c] for c in subs) for subs in derive(equation).inputs]
    d = derive(equation, shapes=shapes)
    g = data.draw(st.sampled_from(d.grads))
    letters = sorted(set(g.equation) - set(",->"))
    new = data.draw(st.permutations("abcdefghmnxyz"))[:len(letters)]
    renamed = g.equation.translate(str.maketrans("".join(letters), "".join(new)))
    assert judge(d, g.target, renamed).passed

    rng = np.random.default_rng(0)
    ops = [rng.standard_normal(s) for s in d.shapes]
    cot = rng.standard_normal(d.output_shape)
    _, pullback = jax.vjp(lambda *xs: jnp.einsum(d.equation, *xs), *map(jnp.asarray, ops))
    want = np.asarray(pullback(jnp.asarray(cot))[g.position])
    args = [cot] + [ops[m] for m in range(len(ops)) if m != g.position] + \
        [getattr(np, a.kind)(d.shapes[g.position][a.axis]) for a in g.aux]
    for proposal in dict.fromkeys(_mutations(g.equation)):
        try:
            got = np.einsum(proposal, *args)
            right = got.shape == want.shape and np.allclose(got, want, rtol=1e-4, atol=1e-4)
        except ValueError:
            right = False
        e = judge(d, g.target, proposal)
        assert e.passed == right, (proposal, e.message)
        assert right or e.mistakes or e.verdict == "invalid"


def test_the_cells_backward_waits_for_the_exercise(ip):
    """A cell of several steps also shows its whole backward: not while its exercise is open."""
    ip.run_cell("import numpy as np\nu = np.ones(3)")
    cell = "u2 = u + 1\ns = np.einsum('i,i->', u, u2)"
    result, cap = run(ip, f"%%einsum_grad --no-check --expect u=?\n{cell}")
    assert result.success and len(cap.outputs) == 1
    assert cap.stdout == "einsum_grad: the cell's backward is shown once its exercise is solved\n"
    result, cap = run(ip, f"%%einsum_grad --no-check --expect u=,i->i\n{cell}")
    assert result.success and len(cap.outputs) == 2 and cap.stdout == ""
    for name in ("u", "u2"):
        ip.user_ns.pop(name, None)
