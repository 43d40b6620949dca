"""One run of the magic (einsum_magic.flow) and its options, through a real InteractiveShell."""

from __future__ import annotations

import sys
import traceback

import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic.magic import load_ipython_extension


@pytest.fixture
def ip():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.run_cell("import numpy as np\n"
                   "A = np.arange(6.0).reshape(2, 3)\nB = np.arange(12.0).reshape(3, 4) - 5\n"
                   "E, F = A + 1, B * 2")
    yield shell
    for name in ("C", "D", "Z", "maybe", "f", "r1", "r2", "res", "eq", "spellings"):
        shell.user_ns.pop(name, None)


def run(shell, source: str):
    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


def shown(cap) -> list[str]:
    return [o.data["text/plain"] for o in cap.outputs if o.data.get("text/plain")]


# -- 3. the user's error is the user's, for %tb, %debug and sys.last_* -------------------

USER_ERROR = ("%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)\n"
              "def f():\n    return 1 / 0\nZ = f()")


def test_the_users_error_is_what_sys_last_and_tb_see(ip):
    result, cap = run(ip, USER_ERROR)
    error = result.error_in_exec
    assert type(error) is ZeroDivisionError and not result.success     # the cell failed
    assert sys.last_value is error and sys.last_type is ZeroDivisionError
    frames = [frame.f_code for frame, _ in traceback.walk_tb(sys.last_traceback)]
    assert not any("einsum_magic" in code.co_filename for code in frames)
    assert frames[-1].co_name == "f"                       # where the user's code raised
    assert "CellCodeFailed" not in cap.stdout
    assert cap.stdout.splitlines()[-1] == ("einsum_grad: the cell's code raised "
                                           "ZeroDivisionError, so its einsums were not analysed")
    with capture_output() as tb:
        ip.run_line_magic("tb", "")
    assert "ZeroDivisionError" in tb.stdout and "1 / 0" in tb.stdout
    assert "einsum_magic" not in tb.stdout and "CellCodeFailed" not in tb.stdout
    assert "C" in ip.user_ns and "Z" not in ip.user_ns


def test_an_error_raised_inside_numpy_shows_the_users_frames_only(ip):
    """NumPy raising for the user's call: the traceback shown and ``%tb`` have the user's
    frames and NumPy's, as without the magic; the observer's and the recorder's frames
    are hidden (they showed ``Boxed.__array_function__`` and ``_call`` before)."""
    source = ("A2 = np.ones((2, 3))\ndef g(a, b):\n    return np.einsum('ij,jk->ik', a, b)\n"
              "Z = g(A2, np.ones((4, 5)))")
    plain, plain_cap = run(ip, source)
    result, cap = run(ip, "%%einsum_grad --no-check\n" + source)
    assert type(result.error_in_exec) is type(plain.error_in_exec) is ValueError
    for text in (cap.stdout, plain_cap.stdout):
        assert "ValueError" in text and "np.einsum('ij,jk->ik', a, b)" in text
    assert "einsum_magic" not in cap.stdout.rsplit("einsum_grad:", 1)[0]
    with capture_output() as tb:
        ip.run_line_magic("tb", "")
    assert "ValueError" in tb.stdout and "einsum_magic" not in tb.stdout
    ip.user_ns.pop("A2", None)
    ip.user_ns.pop("g", None)


def test_the_magic_twice_over_a_jax_cell_runs_it_as_once(ip):
    """Two ``%%einsum_grad`` lines: the inner one's JAX recorder patches what the outer one
    patched already, and must call JAX's own function through it (it called the outer
    patch, that is itself: a RecursionError in the user's code)."""
    pytest.importorskip("jax")
    ip.run_cell("import jax.numpy as jnp")
    source = "Z = jnp.einsum('ij,jk->ik', jnp.ones((2, 3)), jnp.ones((3, 4)))"
    result, cap = run(ip, "%%einsum_grad --no-check\n%%einsum_grad --no-check\n" + source)
    assert result.success, result.error_in_exec
    assert ip.user_ns["Z"].shape == (2, 4) and float(ip.user_ns["Z"].sum()) == 24.0
    assert "RecursionError" not in cap.stdout
    result, _ = run(ip, "%%einsum_grad --no-check\n" + source)      # and once again, alone
    assert result.success, result.error_in_exec


def test_checking_a_masked_attention_warns_of_nothing_the_cell_did_not(ip):
    """``-inf`` in a value the cell computed: the cell backward's check compares it with its
    replay and said ``RuntimeWarning: invalid value encountered in subtract`` (inf - inf),
    in the user's output, from einsum_magic's file."""
    import warnings

    ip.run_cell("rng = np.random.default_rng(0)\nx, Wq, Wk = rng.normal(size=(3, 4, 4))")
    source = ("q, k = x @ Wq, x @ Wk\ns = np.einsum('th,sh->ts', q, k)\n"
              "s = np.where(np.triu(np.ones((4, 4), dtype=bool), 1), -np.inf, s)\n"
              "a = np.exp(s - s.max(-1, keepdims=True))\nloss = (a / a.sum(-1, keepdims=True)).sum()")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, cap = run(ip, "%%einsum_grad\n" + source)
    assert result.success, result.error_in_exec
    assert "cell check: PASS" in "\n".join(shown(cap))
    assert not [w for w in caught if "einsum_magic" in w.filename], [str(w.message) for w in caught]
    assert "RuntimeWarning" not in cap.stdout + cap.stderr


def test_the_debugger_opens_on_the_users_frame(ip):
    run(ip, USER_ERROR)
    seen = []

    class Pdb:                      # stands for IPython's debugger: records what it opens on
        botframe = None

        def reset(self):
            pass

        def interaction(self, frame, exc):
            seen.append(exc)

    before = ip.InteractiveTB.pdb
    ip.InteractiveTB.pdb = Pdb()
    try:
        ip.run_line_magic("debug", "")
    finally:
        ip.InteractiveTB.pdb = before
    (exc,) = seen
    assert type(exc) is ZeroDivisionError
    codes = [frame.f_code for frame, _ in traceback.walk_tb(exc.__traceback__)]
    assert codes[-1].co_name == "f"
    assert not any("einsum_magic" in c.co_filename for c in codes)


def test_in_a_kernel_the_cell_fails_with_the_users_error(tmp_path):
    """What nbval and nbclient see: an error reply naming the user's exception, as without
    the magic, and the kernel's sys.last_value is the user's."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext einsum_magic\nimport numpy as np\n"
                                          "A, B = np.ones((2, 3)), np.ones((3, 4))"),
                nbformat.v4.new_code_cell(USER_ERROR),
                nbformat.v4.new_code_cell("import sys\nprint(type(sys.last_value).__name__)")]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ZeroDivisionError"]
    assert not any("einsum_magic" in line for line in errors[0].traceback)
    assert nb.cells[2].outputs[0].text.strip() == "ZeroDivisionError"


# -- 5. only a call the run reaches can fail the cell ------------------------------------

@pytest.mark.parametrize("cell", [
    "def maybe(flag):\n    if flag:\n        return np.einsum('ij,jk->ik', A)\n"
    "C = np.einsum('ij,jk->ik', A, B)\nmaybe(False)",
    "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ij,jk->ik', A) if False else A",
    "C = np.einsum('ij,jk->ik', A, B)\nD = C.size > 0 or np.einsum('ij,jk->ik', A)",
    "C = np.einsum('ij,jk->ik', A, B)\nfor _ in range(0):\n    np.einsum('ij,j1->i', A, B)",
])
def test_a_branch_that_never_runs_does_not_block_the_cell(ip, cell):
    result, cap = run(ip, "%%einsum_grad --no-check\n" + cell)
    assert result.success, cap.stdout
    assert len(shown(cap)) == 1 and "C" in ip.user_ns
    # the run did not reach it: said so, with what its equation would have met (it said
    # "left to the run (einsum_grad: line 3, …: …)" after the run)
    (note,) = [ln for ln in cap.stdout.splitlines() if "not analysed" in ln]
    assert ", did not run (or raised); not analysed (its equation: " in note
    assert "left to the run" not in cap.stdout and note.count("einsum_grad:") == 1


def test_two_unreached_calls_on_one_line_keep_their_own_notes(ip):
    result, cap = run(ip, "%%einsum_grad --no-check\nif False:\n"
                          "    D = (np.einsum('ij,jk', A), np.einsum('ij->k', A))\n"
                          "C = np.einsum('ij,jk->ik', A, B)")
    assert result.success, cap.stdout
    notes = [ln for ln in cap.stdout.splitlines() if "did not run (or raised)" in ln]
    assert len(notes) == 2 and "2 operand(s)" in notes[0] and "'k' appears in no" in notes[1]


def test_a_branch_the_run_reaches_fails_as_the_library_does(ip):
    result, cap = run(ip, "%%einsum_grad --no-check\n"
                          "def maybe(flag):\n    if flag:\n"
                          "        return np.einsum('ij,jk->ik', A)\nD = maybe(True)")
    assert type(result.error_in_exec) is ValueError       # numpy's own error, from the run
    assert "D" not in ip.user_ns and shown(cap) == []


def test_a_bad_equation_certain_to_run_is_still_refused_before_the_run(ip):
    result, _ = run(ip, "%%einsum_grad\nZ = 1\nC = np.einsum('ij,jk->ik', A)")
    assert type(result.error_in_exec) is UsageError
    assert "Z" not in ip.user_ns


# -- 7. spellings of one einsum are one display ------------------------------------------

def test_spellings_of_one_einsum_at_one_place_are_one_display(ip):
    """The spacing loop of numpy's einsum tests, and the implicit form, at one call site."""
    spaces = [" " * k for k in range(16)]
    result, cap = run(ip, "%%einsum_grad --no-check -o res\n"
                          f"spellings = [f'i{{sp}}j,jk->ik' for sp in {spaces!r}]\n"
                          "for eq in spellings + ['ij,jk', 'i j , j k']:\n"
                          "    C = np.einsum(eq, A, B)")
    assert result.success, cap.stdout
    (page,) = [p for p in shown(cap) if not p.startswith("cell backward")]   # one einsum display
    assert "ran 18 times" in page
    (a,) = ip.user_ns["res"].analyses
    assert a.derivation.equation == "ij,jk->ik"


# -- 8. an open exercise is not answered by its neighbour --------------------------------

def test_an_open_exercise_hides_its_answer_in_every_display_of_the_cell(ip):
    result, cap = run(ip, "%%einsum_grad --no-check --expect 1:A=? -o res\n"
                          "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ij,jk->ik', E, F)")
    assert result.success
    first, second = shown(cap)
    for page in (first, second):
        assert "hidden" in page and "dL_dE =" not in page and "dL_dA =" not in page
    html = [o.data["text/html"] for o in cap.outputs if o.data.get("text/plain")]
    assert "np.einsum(&#x27;ik,jk-&gt;ij&#x27;" not in html[1].split("eg-reveal")[0]
    a, b = ip.user_ns["res"].analyses
    assert b.hidden_by == "dL_dA of einsum 1" and not a.hidden_by
    # solved: nothing is hidden any more
    result, cap = run(ip, "%%einsum_grad --no-check --expect 1:A=ik,jk->ij\n"
                          "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ij,jk->ik', E, F)")
    assert result.success and "dL_dE = np.einsum('ik,jk->ij', dL_dD, F)" in shown(cap)[1]


def test_an_exercise_leaves_an_einsum_that_does_not_answer_it_alone(ip):
    result, cap = run(ip, "%%einsum_grad --no-check --expect 1:A=?\n"
                          "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ij->j', E)")
    assert result.success
    assert "dL_dE =" in shown(cap)[1]


# -- 9. errors in the user's words -------------------------------------------------------

@pytest.mark.parametrize("line, hint", [
    ("%einsum_grad ->", "%einsum_grad '->'"),
    ("%einsum_grad i j, j k -> i k", "%einsum_grad 'i j, j k -> i k'"),
    ("%einsum_grad i j, j k -> i k --sizes i=2", "%einsum_grad 'i j, j k -> i k' --sizes i=2"),
])
def test_an_unquoted_equation_with_spaces_is_told_to_be_quoted(ip, line, hint):
    result, _ = run(ip, line)
    assert type(result.error_in_exec) is UsageError
    message = str(result.error_in_exec)
    assert "unrecognized arguments" in message and "quote an equation" in message
    assert message.endswith(hint) and "\n" not in message
    assert run(ip, hint.replace("%einsum_grad", "%einsum_grad --no-check", 1))[0].success


def test_an_equation_on_the_cell_magics_line_is_told_to_go_in_the_cell(ip):
    result, _ = run(ip, "%%einsum_grad i j -> j i\nC = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert "put it in the cell" in str(result.error_in_exec)


def test_an_unquoted_expect_with_spaces_is_told_to_be_quoted(ip):
    """It was told that %%einsum_grad takes no equation on its line."""
    cell = "C = np.einsum('ij,jk->ik', A, B)"
    result, _ = run(ip, "%%einsum_grad --expect 1:A=i k, j k -> i j\n" + cell)
    assert type(result.error_in_exec) is UsageError
    message = str(result.error_in_exec)
    assert message.endswith("quote an --expect value that has spaces: "
                            "--expect '1:A=i k, j k -> i j'"), message
    assert "put it in the cell" not in message and "\n" not in message
    assert run(ip, "%%einsum_grad --no-check --expect '1:A=i k, j k -> i j'\n" + cell)[0].success


@pytest.mark.parametrize("cell", ["ij,jk->ik  # a matmul", "'ij,jk->ik'  # a matmul",
                                  "# first a comment\nij,jk->ik # then one at the end"])
def test_an_equation_cell_may_end_with_a_comment(ip, cell):
    result, cap = run(ip, "%%einsum_grad --no-check -o res\n" + cell)
    assert result.success, cap.stdout
    assert ip.user_ns["res"].derivation.equation == "ij,jk->ik"


@pytest.mark.parametrize("options, message", [
    ("--sizes i=2,i=3", "einsum_grad: 'i' is given twice (i=2, then i=3): give each size once"),
    ("-o r1 -o r2", "argument -o/--output: given twice ('r1', then 'r2'): give it once"),
    ("--seed 1 --seed 2", "argument --seed: given twice (1, then 2): give it once"),
    ("--dtype float32 --dtype float64", "argument --dtype: given twice"),
])
def test_an_option_given_twice_is_refused(ip, options, message):
    result, _ = run(ip, f"%%einsum_grad {options}\nZ = 1\nC = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec).splitlines()[0].startswith(message)
    assert "Z" not in ip.user_ns and "r1" not in ip.user_ns and "r2" not in ip.user_ns


def test_the_gradient_of_a_real_operand_of_a_complex_einsum_is_its_real_part(ip):
    ip.run_cell("Zc = A * (1 + 2j)")
    result, cap = run(ip, "%%einsum_grad\nR = np.einsum('ij,jk->ik', Zc, B)")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert "  B is real: its gradient is np.real(dL_dB), as jax.vjp and torch give it" in out
    assert "Zc is real" not in out
    page = cap.outputs[0].data["text/html"]
    assert "B is real: its gradient is <code>np.real(dL_dB)</code>, as jax.vjp and torch" in page
    assert out.splitlines()[-1] == ("check: PASS, 2/2 gradients match jax.vjp (complex64; B is "
                                    "real: its gradient is the real part of dL_dB)")
    ip.user_ns.pop("Zc", None)


def test_sizes_the_run_overrode_are_said_to_be_unused(ip):
    """``--sizes i=7`` over arrays that give i=2 was silently ignored."""
    cell = "C = np.einsum('ij,jk->ik', A, B)"
    result, cap = run(ip, "%%einsum_grad --no-check --sizes i=7\n" + cell)
    assert result.success and "i=2" in shown(cap)[0]
    assert cap.stdout == ("einsum_grad: --sizes i=7: not used, the run's arrays give i=2 "
                          "(--sizes sizes an einsum that does not run: an equation cell, "
                          "--no-run)\n")
    result, cap = run(ip, "%%einsum_grad --no-check --sizes i=2\n" + cell)     # the same: fine
    assert result.success and cap.stdout == ""


def test_an_einops_pattern_in_an_equation_cell_points_at_einops(ip):
    result, _ = run(ip, "%%einsum_grad\nbatch time d, d f -> batch time f")
    assert type(result.error_in_exec) is UsageError
    first, quoted, caret = str(result.error_in_exec).splitlines()
    assert first == ("einsum_grad: 'batch' is an axis name, but an equation takes one letter "
                     "per axis: write btd,df->btf, or keep the names inside "
                     "einops.einsum(..., 'batch time d, d f -> batch time f')")
    assert "appears twice" not in first
    assert quoted == "    batch time d, d f -> batch time f" and caret == "    ^^^^^"
    # commas between the operands already: no comma is suggested between the axis names
    result, _ = run(ip, "%%einsum_grad\nbatch seq, seq dim -> batch dim")
    assert str(result.error_in_exec).splitlines()[0].endswith(
        "write bs,sd->bd, or keep the names inside einops.einsum(..., "
        "'batch seq, seq dim -> batch dim')")
    # one letter per axis, spaced: an equation as numpy reads it
    result, cap = run(ip, "%%einsum_grad --no-check -o res\nb t d, d f -> b t f")
    assert result.success and ip.user_ns["res"].derivation.equation == "btd,df->btf"


@pytest.mark.parametrize("cell, message, caret", [
    # near an equation, not Python: the equation's error with its caret (was Python's
    # "SyntaxError: invalid syntax", then "the cell's code raised SyntaxError")
    ("Ωj,jk->Ωk", "'Ω' is not a subscript letter (use a-z, A-Z or '...')", "    ^"),
    ("ij,jk=>ik", "'=' is not a subscript letter (use a-z, A-Z or '...')", "         ^"),
    ("ij,jk->ik,", "the output has one subscript: ',' after '->'", "             ^"),
    # a comma left out: the suggestion is a valid equation (it was "write ij->k", none)
    ("ij jk -> ik", "operands are separated by commas: write ij,jk->ik", "      ^"),
])
def test_an_equation_cell_that_is_no_equation_says_why_with_a_caret(ip, cell, message, caret):
    result, cap = run(ip, "%%einsum_grad\n" + cell)
    assert type(result.error_in_exec) is UsageError, cap.stdout
    first, quoted, mark = str(result.error_in_exec).splitlines()
    assert first == "einsum_grad: " + message and quoted == "    " + cell and mark == caret
    assert "SyntaxError" not in cap.stdout


# -- the options object and the one reader -----------------------------------------------

def test_o_may_take_a_name_only_a_function_of_the_cell_binds(ip):
    """One binding analysis (the source reader's): a function's local is not the user's."""
    result, _ = run(ip, "%%einsum_grad --no-check -o res\n"
                        "def f(X):\n    res = 1\n    return np.einsum('ij->j', X)\nD = f(A)")
    assert result.success, result.error_in_exec
    assert type(ip.user_ns["res"]).__name__ == "EinsumGradResult"
