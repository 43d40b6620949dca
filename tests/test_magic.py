"""%%einsum_grad through a real InteractiveShell, captured as IPython's own magics are tested."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic.views import text
from einsum_magic.cell.analysis import EinsumGradResult
from einsum_magic.check.report import INSTALL
from einsum_magic.magic import (CheckFailed, EinsumGradMagics, ExpectationFailed,
                                load_ipython_extension)
from einsum_magic.views.widget import WIDGET_MIME

PASS2 = "check: PASS, 2/2 gradients match jax.vjp (float32)"


@pytest.fixture
def ip():
    globalipapp.start_ipython()            # once per process; later calls return None
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.run_cell("import numpy as np\n"
                   "A = np.arange(6.0).reshape(2, 3)\nB = np.arange(12.0).reshape(3, 4) - 5\n"
                   "x = np.ones((5, 3))\nw = np.ones((3, 7))")
    yield shell
    for name in ("C", "D", "Y", "Z", "S", "r", "res", "eq", "A2", "f", "ii"):
        shell.user_ns.pop(name, None)


def magics(shell) -> EinsumGradMagics:
    (m,) = [c for c in shell.configurables if isinstance(c, EinsumGradMagics)]
    return m


def run(shell, source: str, display: bool = True):
    with capture_output(display=display) as cap:
        result = shell.run_cell(source)
    return result, cap


def shown(cap) -> list[str]:
    """The text/plain of every display, in order (progress and live widgets have none)."""
    return [o.data["text/plain"] for o in cap.outputs if o.data.get("text/plain")]


# -- registration ----------------------------------------------------------------------

def test_load_ext_registers_one_configurable_instance(ip):
    ip.run_line_magic("reload_ext", "einsum_magic")
    load_ipython_extension(ip)
    assert "einsum_grad" in ip.magics_manager.magics["cell"]
    assert "einsum_grad" in ip.magics_manager.magics["line"]
    m = magics(ip)
    assert m.check is True and m.dtype == "float32" and m.seed == 0 and m.max_elements is None
    for trait in ("check", "dtype", "seed", "max_elements", "view"):
        assert m.trait_metadata(trait, "config") is True


def test_importing_and_loading_import_neither_jax_nor_ipywidgets():
    code = textwrap.dedent("""
        import sys
        import einsum_magic
        from IPython.testing.globalipapp import start_ipython
        ip = start_ipython()
        ip.run_line_magic("load_ext", "einsum_magic")
        assert "einsum_grad" in ip.magics_manager.magics["cell"]
        print(sorted(m for m in ("jax", "ipywidgets") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_help_shows_the_docstring_with_examples(ip):
    _, cap = run(ip, "%%einsum_grad?", display=False)
    for piece in ("%%einsum_grad", "C = np.einsum('ij,jk->ik', A, B)", "--expect NAME=SPEC",
                  "--sizes SIZES", "--no-run", "-o NAME", "%config EinsumGradMagics.check",
                  "one display per call", "the arrays the call received", "max_displays",
                  "A_out",
                  "no Python keyword, builtin or"):
        assert piece in cap.stdout, piece


# -- the cell --------------------------------------------------------------------------

def test_the_cell_runs_then_every_gradient_is_shown_and_checked(ip):
    result, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    assert result.success
    np.testing.assert_array_equal(ip.user_ns["C"], ip.user_ns["A"] @ ip.user_ns["B"])
    (out,) = shown(cap)
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in out
    assert "dL_dB = np.einsum('ik,ij->jk', dL_dC, A)" in out
    assert "shapes:  A (2, 3), B (3, 4) -> C (2, 4)  (from the run)" in out
    assert out.splitlines()[-1] == PASS2
    (bundle,) = cap.outputs
    assert set(bundle.data) == {"text/plain", "text/html"}       # no widget frontend here


@pytest.mark.parametrize("cell, expected", [
    ("C = numpy.einsum('ij,jk->ik', A, B)", "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"),
    ("C = jnp.einsum('ij,jk->ik', A, B)", "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"),
    ("C = jax.numpy.einsum('ij,jk->ik', A, B)", "dL_dB = np.einsum('ik,ij->jk', dL_dC, A)"),
    ("C = opt_einsum.contract('ij,jk->ik', A, B)", "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"),
    ("C = oe.contract('ij,jk->ik', A, B)", "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"),
    ("C = einsum('ij,jk->ik', A, B)", "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)"),
    ("C = np.einsum(A, [0, 1], B, [1, 2], [0, 2])", "dL_dA = np.einsum('AC,BC->AB', dL_dC, B)"),
    ("C = np.einsum(A, [26, 0])", "forward: C = np.einsum('aA->Aa', A)"),   # numpy's order
    ('Y = einops.einsum(x, w, "batch d, d out -> batch out")',
     'dL_dx = einops.einsum(dL_dY, w, "batch out, d out -> batch d")'),
    ("S = np.einsum('ij,ij->', A, A)", "product rule: dL_dA = dL_dA_1 + dL_dA_2"),
    ("C = np.einsum('ij,jk->ik', A.T.T, B)", "  op1 = A.T.T"),
    ("ij,jk->ik", "forward: C = np.einsum('ij,jk->ik', A, B)"),
    ("'ii->i'", "dL_dA = np.einsum('i,ij->ij', dL_dB, np.eye(A.shape[1]))"),
])
def test_every_cell_form(ip, cell, expected):
    ip.run_cell("import numpy, jax, jax.numpy as jnp, opt_einsum, opt_einsum as oe, einops\n"
                "from numpy import einsum")
    result, cap = run(ip, "%%einsum_grad\n" + cell)
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert expected in out.splitlines(), out
    assert out.splitlines()[-1].startswith("check: PASS")


def test_torch_calls_are_read_without_running_torch(ip):
    _, cap = run(ip, "%%einsum_grad --no-run --no-check\n"
                     "C = torch.einsum('ij,jk->ik', [A, B])")
    (out,) = shown(cap)
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in out
    assert "(sizes from your arrays)" in out
    assert "C" not in ip.user_ns


def test_several_einsums_each_get_a_display_in_order(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\n"
                     "C = np.einsum('ij,jk->ik', A, B)\nD = np.einsum('ik->k', C)")
    first, second, cell = shown(cap)
    assert cell.startswith("cell backward: ")
    assert first.splitlines()[1].endswith("(einsum 1 of 2, line 1)")
    assert second.splitlines()[1].endswith("(einsum 2 of 2, line 2)")
    assert "shapes:  C (2, 4) -> D (4,)  (from the run)" in second


def test_sizes_from_the_option_then_distinct_defaults(ip):
    _, cap = run(ip, "%%einsum_grad --sizes i=7 --no-check\n...ij,...jk->...ik")
    (out,) = shown(cap)
    # j, k and '...' get 2, 3, 4: distinct from each other and from i
    assert "shapes:  A (4, 7, 2), B (4, 2, 3) -> C (4, 7, 3)  (sizes from --sizes and defaults)" \
        in out
    _, cap = run(ip, "%%einsum_grad --no-check\nij,jk,kl->il")
    sizes = [int(s.split("=")[1].split()[0]) for s in
             shown(cap)[0].split("letters: ")[1].splitlines()[0].split(", ")]
    assert len(set(sizes)) == len(sizes) == 4


def test_einops_sizes_take_axis_names(ip):
    _, cap = run(ip, "%%einsum_grad --no-run --no-check --sizes batch=8,out=2\n"
                     'Y = einops.einsum(u, v, "batch d, d out -> batch out")')
    (out,) = shown(cap)
    assert "shapes:  u (8, 3), v (3, 2) -> Y (8, 2)" in out


def test_an_operand_the_cell_rebinds_shows_the_array_it_received_and_the_output_gets_out(ip):
    ip.run_cell("Z = np.ones((5, 7))")
    _, cap = run(ip, "%%einsum_grad\nZ = np.einsum('ij->ji', Z)")
    (out,) = shown(cap)
    assert ip.user_ns["Z"].shape == (7, 5)
    assert "forward: Z_out = np.einsum('ij->ji', Z)" in out.splitlines()
    assert "shapes:  Z (5, 7) -> Z_out (7, 5)  (from the run)" in out.splitlines()
    assert out.splitlines()[-1] == "check: PASS, 1/1 gradient matches jax.vjp (float32)"


def test_an_operand_assigned_before_and_after_the_call_is_not_misread(ip):
    """The cell's first A2 fits B; the A2 from before the run (5x5) or after it (7x7) would not."""
    ip.run_cell("A2 = np.ones((5, 5))")
    result, cap = run(ip, "%%einsum_grad\nA2 = np.ones((2, 3)); C = np.einsum('ij,jk->ik', A2, B); "
                          "A2 = np.ones((7, 7))")
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert "shapes:  A2 (2, 3), B (3, 4) -> C (2, 4)  (from the run)" in out.splitlines()
    assert out.splitlines()[-1] == PASS2
    assert ip.user_ns["A2"].shape == (7, 7)


@pytest.mark.parametrize("cell, where", [
    ("def f(A):\n    return np.einsum('ij->j', A)\nD = f(np.ones((4, 5)))", "f(), line 2"),
    ("f = lambda A: np.einsum('ij->j', A)\nD = f(np.ones((4, 5)))", "a lambda, line 1"),
    ("D = [np.einsum('ij->j', A) for A in [np.ones((4, 5))]]", "a listcomp, line 1"),
])
def test_a_call_in_a_nested_scope_shows_the_local_array_it_received(ip, cell, where):
    """There ``A`` is a local (4x5), not the user's A (2x3): the run shows the local's shape."""
    result, cap = run(ip, "%%einsum_grad\n" + cell)
    assert result.success, cap.stdout
    (out,) = shown(cap)
    assert out.splitlines()[1] == f"einsum_grad: np.einsum('ij->j', A)  ({where})"
    assert "shapes:  A (4, 5) -> out (5,)  (from the run)" in out.splitlines()
    assert out.splitlines()[-1] == "check: PASS, 1/1 gradient matches jax.vjp (float32)"


def test_no_run_looks_up_nothing_the_cell_assigns(ip):
    _, cap = run(ip, "%%einsum_grad --no-run --no-check\nA = np.ones((5, 5))\n"
                     "C = np.einsum('ij,jk->ik', A, B)")
    (out,) = shown(cap)
    assert "shapes:  A (2, 3), B (3, 4) -> C (2, 4)  (sizes from your arrays and defaults; A not " \
           "looked up: the cell assigns it, and --no-run kept the cell from running)" \
           in out.splitlines()
    assert ip.user_ns["A"].shape == (2, 3)


@pytest.mark.parametrize("cell", ["pass", "x", "sum"])
def test_a_keyword_or_a_name_of_python_is_not_an_equation(ip, cell):
    result, cap = run(ip, "%%einsum_grad\n" + cell)
    assert result.success
    assert shown(cap) == []
    assert cap.stdout.splitlines()[-1] == "einsum_grad: no einsum call found in the cell"


def test_a_free_run_of_letters_is_an_equation(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\nii")
    (out,) = shown(cap)
    assert out.splitlines()[1:3] == ["einsum_grad: 'ii'  (equation)",
                                    "forward: B = np.einsum('ii->', A)"]
    ip.run_cell("ii = 3")
    _, cap = run(ip, "%%einsum_grad --no-check\nii")
    assert shown(cap) == [] and "no einsum call found" in cap.stdout


def test_a_call_the_source_cannot_read_is_seen_when_it_runs(ip):
    _, cap = run(ip, "%%einsum_grad --no-check\neq = 'ij,jk->ik'\nC = np.einsum(eq, A, B)")
    (out,) = shown(cap)
    assert out.splitlines()[1] == "einsum_grad: np.einsum('ij,jk->ik', A, B)  (line 2)"
    assert "shapes:  A (2, 3), B (3, 4) -> out (2, 4)  (from the run)" in out.splitlines()
    assert cap.stdout == ""
    assert "C" in ip.user_ns
    _, cap = run(ip, "%%einsum_grad --no-run\neq = 'ij,jk->ik'\nC = np.einsum(eq, A, B)")
    assert cap.outputs == []
    assert cap.stdout == ("einsum_grad: line 2: np.einsum(eq, A, B): the equation is a variable, "
                          "not a string literal; skipped\n")
    assert "C" in ip.user_ns
    _, cap = run(ip, "%%einsum_grad -o res\nC = np.linalg.inv(A @ A.T)")
    assert cap.stdout == ""          # no einsum, but the cell backward of the recorded run:
    check = ip.user_ns["res"].backward.check      # never PASS across a step without a rule
    assert check.status == "PARTIAL" and "`numpy.linalg.inv`, line 1" in check.summary


def test_no_run_analyses_without_running(ip):
    _, cap = run(ip, "%%einsum_grad --no-run\nZ = 1\nC = np.einsum('ij,jk->ik', A, B)")
    assert "Z" not in ip.user_ns and "C" not in ip.user_ns
    assert shown(cap)[0].splitlines()[-1] == PASS2


# -- errors ----------------------------------------------------------------------------

def test_a_bad_equation_is_a_usage_error_and_the_code_does_not_run(ip):
    before = ip.user_ns["A"].copy()
    result, cap = run(ip, "%%einsum_grad\nZ = 1\nA[0, 0] = 99\nC = np.einsum('ij,j1->i', A, B)")
    assert type(result.error_in_exec) is UsageError
    message = str(result.error_in_exec)
    assert message.startswith("einsum_grad: line 3, np.einsum('ij,j1->i', A, B): '1' is not a "
                              "subscript letter")
    assert message.splitlines()[-2:] == ["    ij,j1->i", "        ^"]
    assert "Z" not in ip.user_ns and "C" not in ip.user_ns
    np.testing.assert_array_equal(ip.user_ns["A"], before)
    assert "Traceback" not in cap.stdout + cap.stderr
    assert cap.outputs == []


@pytest.mark.parametrize("cell, message", [
    ("%%einsum_grad\nij,j->k", "output subscript 'k' appears in no input"),
    ("%%einsum_grad\neinops.einsum(x, w, 'a b, b c')", "needs '->'"),
    ("%%einsum_grad --sizes i:2\nij", "sizes are written letter=size"),
    ("%%einsum_grad --sizes q=2\nij", "--sizes names 'q'"),
    ("%%einsum_grad --expect A\nC = np.einsum('ij,jk->ik', A, B)", "--expect is written"),
    ("%%einsum_grad --expect A=ij\nS = np.einsum('ij,ij->', A, A)", "name one position: "
                                                                      "dL_dA_1, dL_dA_2"),
    ("%%einsum_grad --dtype int8\nij", "--dtype 'int8' is not one the check supports"),
    ("%%einsum_grad -o 1x\nij", "-o takes a variable name"),
    ("%%einsum_grad ij\nC = np.einsum('ij,jk->ik', A, B)", "takes no equation on its line"),
    ("%einsum_grad", "give an equation"),
    ("%%einsum_grad --bogus\nij", "unrecognized arguments: --bogus"),
])
def test_usage_errors(ip, cell, message):
    result, _ = run(ip, cell)
    assert type(result.error_in_exec) is UsageError
    assert message in str(result.error_in_exec)
    assert "C" not in ip.user_ns


def test_expect_is_matched_against_the_einsums_that_ran_in_the_order_shown(ip):
    """--expect N:NAME counts the displays (execution order), also for a function's einsum."""
    body = ("def f(X, Y):\n    return np.einsum('ij,jk->ik', X, Y)\n"
            "C = np.einsum('ij,jk->ik', A, B)\nD = f(A, B)")
    result, cap = run(ip, f"%%einsum_grad --no-check --expect 2:X=ij,jk->ik\n{body}")
    assert type(result.error_in_exec) is ExpectationFailed      # wrong, and graded: no note
    assert "(einsum 2)" in str(result.error_in_exec)
    result, cap = run(ip, f"%%einsum_grad --no-check --expect 1:A=ik,jk->ij\n{body}")
    assert result.success, result.error_in_exec
    result, _ = run(ip, "%%einsum_grad --expect Q=ij\nC = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert "--expect names 'Q'" in str(result.error_in_exec)
    for name in ("C", "D", "f"):
        ip.user_ns.pop(name, None)


@pytest.mark.parametrize("cell", ["C = np.einsum(A, [0, 52], B, [52, 2])",
                                  "C = np.einsum(A, [0, 1], B, [1, 2], [0, -1])"])
def test_an_interleaved_integer_out_of_range_is_named_with_a_caret(ip, cell):
    result, _ = run(ip, "%%einsum_grad\n" + cell)
    assert type(result.error_in_exec) is UsageError
    value = "52" if "52" in cell else "-1"
    first, quoted, marks = str(result.error_in_exec).splitlines()
    assert first == (f"einsum_grad: the interleaved subscript {value} is out of numpy's range "
                     "0..51 (0-25 stand for A-Z, 26-51 for a-z)")
    assert quoted == "    " + cell[4:]
    assert marks == " " * (4 + cell[4:].index(value)) + "^" * len(value)   # the first one
    assert "C" not in ip.user_ns


@pytest.mark.parametrize("cell, message", [
    ('Y = einops.einsum(x, w, "batch d, d out -> batch zz")',
     ["einsum_grad: line 1, einops.einsum(x, w, \"batch d, d out -> batch zz\"): output axis "
      "'zz' appears in no input", "    batch d, d out -> batch zz",
      "                            ^^"]),
    ("C = np.einsum(A, [0, 1], B, [1, 2], [0, 30])",
     ["einsum_grad: line 1, np.einsum(A, [0, 1], B, [1, 2], [0, 30]): output subscript 30 appears "
      "in no input", "    np.einsum(A, [0, 1], B, [1, 2], [0, 30])",
      "                                        ^^"]),
])
def test_einops_and_interleaved_errors_are_in_the_users_words(ip, cell, message):
    result, _ = run(ip, "%%einsum_grad\n" + cell)
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec).splitlines() == message
    assert "C" not in ip.user_ns and "Y" not in ip.user_ns


@pytest.mark.parametrize("option, message", [
    ("--seed -1", "--seed -1 is not a seed: give a non-negative integer"),
    ("--seed x", "argument --seed: invalid int value: 'x'"),
    ("-o class", "-o takes a variable name, not 'class'"),
    ("-o None", "-o takes a variable name, not 'None'"),
])
def test_options_are_checked_before_anything_runs(ip, option, message):
    result, cap = run(ip, f"%%einsum_grad --expect A=ik,jk->ij {option}\nZ = 1\n"
                          "C = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec) == message
    assert "Z" not in ip.user_ns and "C" not in ip.user_ns
    assert "Traceback" not in cap.stdout + cap.stderr


def test_a_bad_configured_seed_or_dtype_is_a_usage_error(ip):
    m = magics(ip)
    try:
        m.seed = -1
        result, _ = run(ip, "%%einsum_grad --expect A=ik,jk->ij\nij,jk->ik")
        assert type(result.error_in_exec) is UsageError
        assert str(result.error_in_exec) == \
            "EinsumGradMagics.seed = -1 is not a seed: give a non-negative integer"
        result, _ = run(ip, "%%einsum_grad --seed 3 --expect A=ik,jk->ij\nij,jk->ik")
        assert result.success
        m.seed, m.dtype = 0, "int8"
        result, _ = run(ip, "%%einsum_grad\nij,jk->ik")
        assert str(result.error_in_exec).startswith(
            "EinsumGradMagics.dtype = 'int8' is not one the check supports")
    finally:
        m.seed, m.dtype = 0, "float32"


def test_the_users_error_stops_the_analysis(ip):
    result, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)\nZ = 1 / 0")
    assert "ZeroDivisionError" in cap.stdout
    assert cap.outputs == []
    assert "C" in ip.user_ns and "Z" not in ip.user_ns     # as IPython runs it
    assert type(result.error_in_exec) is ZeroDivisionError  # the cell fails, as it would have
    assert "einsum_grad: the cell's code raised ZeroDivisionError" in cap.stdout


# -- the namespace and determinism -----------------------------------------------------

def test_nothing_of_the_users_is_lost_or_added(ip):
    A, B = ip.user_ns["A"], ip.user_ns["B"]
    copies = A.copy(), B.copy()
    before = set(ip.user_ns)
    result, _ = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    assert result.success
    assert set(ip.user_ns) == before | {"C"}
    assert ip.user_ns["A"] is A and ip.user_ns["B"] is B
    np.testing.assert_array_equal(A, copies[0])
    np.testing.assert_array_equal(B, copies[1])
    run(ip, "%einsum_grad ij,jk->ik")
    assert set(ip.user_ns) == before | {"C"}


def test_text_plain_is_identical_across_runs(ip):
    cell = "%%einsum_grad\nC = np.einsum('bij,bjk->bik', np.ones((2, 3, 4)), np.ones((2, 4, 5)))"
    first = run(ip, cell)[1]
    second = run(ip, cell)[1]
    assert shown(first) == shown(second)
    assert [o.data["text/html"] for o in first.outputs] == \
        [o.data["text/html"] for o in second.outputs]


# -- --expect, -o, the line magic, %config ---------------------------------------------

def test_expect_right(ip):
    result, cap = run(ip, "%%einsum_grad --expect A=xz,yz->xy --expect dL_dB=ik,ij->jk\n"
                          "C = np.einsum('ij,jk->ik', A, B)")
    assert result.success
    out = shown(cap)[0]
    assert "expect dL_dA = 'xz,yz->xy': correct: dL_dA = einsum('xz,yz->xy', dL_dC, B)" in out
    assert "expect dL_dB = 'ik,ij->jk': correct" in out


@pytest.mark.parametrize("proposal, why", [
    ("ik,jk->i", "wrong: the result must carry A's letters 'ij' (you wrote 'i')"),
    ("ik,jl->ij", "wrong: B must keep its forward letters 'jk' (you wrote 'jl')"),
    ("ik,j1->ij", "not a valid einsum: '1' is not a subscript letter"),
])
def test_expect_wrong_fails_the_cell_with_one_line(ip, proposal, why):
    A = ip.user_ns["A"]
    result, cap = run(ip, f"%%einsum_grad --no-check --expect A={proposal}\n"
                          "C = np.einsum('ij,jk->ik', A, B)")
    error = result.error_in_exec
    assert type(error) is ExpectationFailed and isinstance(error, AssertionError)
    assert str(error).startswith(f"--expect dL_dA = {proposal!r}: ")
    assert why in str(error)
    assert cap.stdout.strip() == f"ExpectationFailed: {error}"
    assert "Traceback" not in cap.stdout
    (out,) = shown(cap)                               # the display came first
    assert f"expect dL_dA = {proposal!r}: " in out
    assert "C" in ip.user_ns and ip.user_ns["A"] is A


def test_o_stores_the_derivations_and_reports(ip):
    result, _ = run(ip, "%%einsum_grad -o res\nC = np.einsum('ij,jk->ik', A, B)\n"
                        "D = np.einsum('ik->', C)")
    assert result.success
    res = ip.user_ns["res"]
    assert isinstance(res, EinsumGradResult)
    assert [d.equation for d in res.derivations] == ["ij,jk->ik", "ik->"]
    assert all(r.passed and r.user_arrays for r in res.reports)
    assert res.derivation is res.derivations[0] and res.report is res.reports[0]
    with pytest.raises(Exception):
        res.analyses = ()                             # frozen


@pytest.mark.parametrize("name, kind", [("C", "ndarray"), ("A", "ndarray"), ("np", "module"),
                                        ("get_ipython", "method")])
def test_o_refuses_a_name_that_holds_anything_else_before_the_cell_runs(ip, name, kind):
    ip.run_cell("C = np.einsum('ij,jk->ik', A, B)")
    before = ip.user_ns[name]
    result, cap = run(ip, f"%%einsum_grad -o {name}\nZ = 1\nD = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec) == (f"-o {name}: {name} already holds a value of type {kind}, "
                                         "which the result would overwrite: choose a free name")
    assert ip.user_ns[name] is before or ip.user_ns[name] == before
    assert "Z" not in ip.user_ns and "D" not in ip.user_ns       # nothing ran
    assert cap.outputs == []
    ip.user_ns.pop("Z", None)


def test_o_refuses_a_builtin_and_a_name_the_cell_assigns(ip):
    result, _ = run(ip, "%%einsum_grad -o print\nC = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert "print is a Python builtin" in str(result.error_in_exec)
    assert "print" not in ip.user_ns
    result, _ = run(ip, "%%einsum_grad -o C --no-check\nZ = 1\nC = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec) == ("-o C: the cell assigns C, which the result would "
                                         "overwrite: choose another name")
    assert "C" not in ip.user_ns and "Z" not in ip.user_ns          # refused before the run
    # bound where the source does not say (exec): refused after the run, nothing stored
    result, _ = run(ip, "%%einsum_grad -o C --no-check\nexec('C = 1')\n"
                        "D = np.einsum('ij,jk->ik', A, B)")
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec).startswith("-o C: the cell assigned C a value of type int")
    assert ip.user_ns["C"] == 1


def test_o_replaces_an_earlier_result_and_takes_a_free_name(ip):
    assert "res" not in ip.user_ns
    assert run(ip, "%%einsum_grad -o res --no-check\nij,jk->ik")[0].success
    first = ip.user_ns["res"]
    assert run(ip, "%%einsum_grad -o res --no-check\nii->")[0].success
    assert ip.user_ns["res"] is not first and ip.user_ns["res"].derivation.equation == "ii->"


@pytest.mark.parametrize("options", ["--sizes 'i=2' -o 'res' --dtype 'float64'",
                                     '--sizes "i=2" -o "res"', "--sizes i=2 -o res"])
def test_quoted_option_values_are_accepted(ip, options):
    result, cap = run(ip, f"%%einsum_grad {options} --no-check\nij->")
    assert result.success, result.error_in_exec
    assert "shapes:  A (2, 3) -> B ()  (sizes from --sizes" in shown(cap)[0]
    assert isinstance(ip.user_ns["res"], EinsumGradResult)


def test_line_magic(ip):
    result, cap = run(ip, "%einsum_grad ii-> --sizes i=3 -o r")
    assert result.success
    (out,) = shown(cap)
    assert "shapes:  A (3, 3) -> B ()  (sizes from --sizes)" in out
    assert out.splitlines()[-1] == "check: PASS, 1/1 gradient matches jax.vjp (float32)"
    assert ip.user_ns["r"].derivation.shapes == ((3, 3),)
    _, cap = run(ip, "%einsum_grad 'ij, jk -> ik' --no-check")
    assert "forward: C = np.einsum('ij,jk->ik', A, B)" in shown(cap)[0]


def test_config_sets_the_defaults(ip):
    m = magics(ip)
    try:
        ip.run_line_magic("config", "EinsumGradMagics.check = False")
        assert m.check is False
        _, cap = run(ip, "%%einsum_grad\nij,jk->ik")
        assert shown(cap)[0].splitlines()[-1] == "check: skipped (EinsumGradMagics.check = False)"
        ip.run_line_magic("config", "EinsumGradMagics.check = True")
        ip.run_line_magic("config", "EinsumGradMagics.dtype = 'float64'")
        _, cap = run(ip, "%%einsum_grad\nij,jk->ik")
        assert shown(cap)[0].splitlines()[-1] == \
            "check: PASS, 2/2 gradients match jax.vjp (float64)"
        _, cap = run(ip, "%%einsum_grad --dtype complex64 --no-check\nij,jk->ik")
        assert shown(cap)[0].splitlines()[-1] == "check: skipped (--no-check)"
    finally:                              # %config also set the shell's config: undo both
        ip.run_line_magic("config", "EinsumGradMagics.check = True")
        ip.run_line_magic("config", "EinsumGradMagics.dtype = 'float32'")


# -- the displays: text without a widget frontend, widgets with one ---------------------

def test_terminal_prints_the_text_view(ip):
    result, cap = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij,jk->ik', A, B)",
                      display=False)
    assert result.success
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in cap.stdout
    assert "check: skipped (--no-check)" in cap.stdout
    assert "<div" not in cap.stdout


def test_widget_frontend_progress_leaves_nothing_nbval_compares(ip):
    m = magics(ip)
    m.view = "widget"
    try:
        _, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    finally:
        m.view = "auto"
    progress, update = cap.outputs[:2]
    display_id = progress.transient["display_id"]
    assert update.update and update.transient["display_id"] == display_id
    compared = {k: v for k, v in progress.data.items() if k != WIDGET_MIME}
    assert compared == update.data == {"text/html": ""}
    assert WIDGET_MIME in progress.data
    page, live = cap.outputs[2:]
    assert set(page.data) == {"text/plain", "text/html"} and not page.update
    assert page.data["text/plain"].splitlines()[-1] == PASS2
    assert set(live.data) == {WIDGET_MIME}               # nothing nbval compares


def test_without_jax_numpy_checks_and_says_how_to_install_jax(ip, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    result, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    assert result.success
    (bundle,) = cap.outputs
    assert bundle.data["text/plain"].splitlines()[-1] == (
        "check: PASS, 2/2 gradients pass the adjoint test (float64); checked with NumPy "
        f"(adjoint test), JAX not available: not installed ({INSTALL})")
    assert "pip install jax" in bundle.data["text/html"]
    assert "checked with NumPy (adjoint test)" in bundle.data["text/html"]
    assert "dL_dA = np.einsum('ik,jk->ij', dL_dC, B)" in bundle.data["text/plain"]


def test_a_failed_check_fails_the_cell(ip, monkeypatch):
    """A wrong derived gradient (here transposed on purpose) is a FAIL and the cell fails."""
    import dataclasses
    import importlib

    checking = importlib.import_module("einsum_magic.check.report")
    real = checking.check

    def transposed(d, *operands, **options):
        g = d.grads[0]
        return real(dataclasses.replace(d, grads=(dataclasses.replace(g, equation="ik,jk->ji"),
                                                  *d.grads[1:])), *operands, **options)

    monkeypatch.setattr(checking, "check", transposed)
    result, cap = run(ip, "%%einsum_grad --sizes i=3,j=3,k=3\nij,jk->ik")
    assert type(result.error_in_exec) is CheckFailed
    assert "check: FAIL, 1/2 gradients match jax.vjp (float32); wrong: dL_dA" in cap.stdout
    (bundle,) = [o for o in cap.outputs if "text/plain" in o.data]
    assert bundle.data["text/plain"].splitlines()[-1].startswith("check: FAIL")


def test_display_text_equals_the_text_view(ip):
    _, cap = run(ip, "%%einsum_grad -o res --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    (a,) = ip.user_ns["res"].analyses
    assert shown(cap) == [text.render(a, 0, 1)]


def test_a_kernel_with_ipywidgets_gets_the_page_alone_without_a_check(ip, monkeypatch):
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    _, cap = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    (bundle,) = cap.outputs                     # no check: no progress, no live details
    assert set(bundle.data) == {"text/plain", "text/html"}
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    _, cap = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    (bundle,) = cap.outputs
    assert set(bundle.data) == {"text/plain", "text/html"}


@pytest.mark.parametrize("environ", [{"COLAB_RELEASE_TAG": "release-colab"},
                                     {"VSCODE_PID": "4242"}])
def test_colab_and_vs_code_kernels_get_no_widgets(ip, monkeypatch, environ):
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    _, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    assert any(WIDGET_MIME in o.data for o in cap.outputs)       # a plain kernel: widgets
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    _, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    slot, bundle = cap.outputs                   # the progress's place, empty, then the page
    assert slot.data == {"text/html": ""}
    assert set(bundle.data) == {"text/plain", "text/html"}
    assert bundle.data["text/plain"].splitlines()[-1] == PASS2
    m = magics(ip)
    m.view = "widget"                                            # the setting overrides
    try:
        _, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    finally:
        m.view = "auto"
    assert any(WIDGET_MIME in o.data for o in cap.outputs)


def compared(cap) -> dict:
    """What nbval compares of a cell's outputs: every data key but the widget view, in order,
    of each output's first message (updates are the frontend's, not nbval's)."""
    out: dict = {}
    for o in cap.outputs:
        if o.update:
            continue
        for key, value in o.data.items():
            if key != WIDGET_MIME:
                out.setdefault(key, []).append(value)
    return out


def test_what_nbval_compares_does_not_depend_on_the_frontend(ip, monkeypatch):
    """A notebook saved from Colab or VS Code (no widgets) passes nbval where widgets show."""
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    cell = ("%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)\n"
            "D = np.einsum('ik,k->i', C, np.ones(4))")
    _, lab = run(ip, cell)
    assert any(WIDGET_MIME in o.data for o in lab.outputs)
    for environ in ({"COLAB_RELEASE_TAG": "release-colab"}, {"VSCODE_PID": "4242"}):
        with monkeypatch.context() as m:
            for key, value in environ.items():
                m.setenv(key, value)
            _, other = run(ip, cell)
        assert not any(WIDGET_MIME in o.data for o in other.outputs)
        assert compared(other) == compared(lab)


def test_view_progress_leaves_no_widget_behind(ip, monkeypatch):
    """Saved without widget state, a widget output reads 'model not found': with view =
    'progress' only the progress line shows, and its output ends as empty HTML."""
    monkeypatch.setattr(ip, "kernel", object(), raising=False)
    cell = "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)"
    _, cap = run(ip, cell)
    assert set(cap.outputs[-1].data) == {WIDGET_MIME}              # auto: the live details
    m = magics(ip)
    m.view = "progress"
    try:
        _, cap = run(ip, cell)
    finally:
        m.view = "auto"
    progress, update, page = cap.outputs
    assert WIDGET_MIME in progress.data and update.update and update.data == {"text/html": ""}
    assert set(page.data) == {"text/plain", "text/html"}


def test_view_text_shows_text_plain_alone(ip):
    m = magics(ip)
    m.view = "text"
    try:
        _, cap = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    finally:
        m.view = "auto"
    (bundle,) = cap.outputs
    assert set(bundle.data) == {"text/plain"}


# -- the cost line and the Cost and Export tabs (issue 7) ------------------------------

def test_text_plain_holds_the_cost_line_before_the_check_line(ip):
    from einsum_magic.compute.cost import lesson

    result, cap = run(ip, "%%einsum_grad -o res\nC = np.einsum('ij,jk->ik', A, B)\n"
                          "D = np.einsum('ik,k->i', C, np.ones(4))")
    assert result.success
    *outputs, cell = shown(cap)            # the einsums', then the whole cell's backward
    assert cell.startswith("cell backward: cell check: PASS")
    for out, d in zip(outputs, ip.user_ns["res"].derivations, strict=True):
        lines = out.splitlines()
        assert lines[-2] == lesson(d) and lines[-1].startswith("check: PASS")
        assert "custom_vjp" not in out and "def backward(" not in out
    assert outputs == shown(run(ip, "%%einsum_grad -o res\nC = np.einsum('ij,jk->ik', A, B)\n"
                                    "D = np.einsum('ik,k->i', C, np.ones(4))")[1])[:-1]
    for bundle in cap.outputs[:-1]:
        assert '<h3 class="eg-panel-title">Cost</h3>' in bundle.data["text/html"]
        assert "custom_vjp" in bundle.data["text/html"]        # the Export tab, folded


def test_the_page_has_cost_and_export_tabs_between_shapes_and_check(ip):
    import re

    _, cap = run(ip, "%%einsum_grad -o res --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    (bundle,) = cap.outputs
    titles = re.findall(r'<label for="[\w-]+">(\w+)</label>', bundle.data["text/html"])
    assert titles == ["Backward", "Diagram", "Loops", "Shapes", "Cost", "Export", "Check"]


def test_the_text_view_says_when_random_arrays_stood_in_for_the_users(ip):
    ip.run_cell("A2 = np.full((2, 3), np.nan)")
    result, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A2, B)")
    assert result.success
    (out,) = shown(cap)
    assert out.splitlines()[-1] == ("check: PASS, 2/2 gradients match jax.vjp (float32) on seeded "
                                    "random arrays, not yours (NaN or inf in A2)")
    html = [o.data["text/html"] for o in cap.outputs if "text/html" in o.data][-1]
    assert "not yours (NaN or inf in A2)" in html


def test_a_torch_cell_on_complex_tensors_exports_pytorchs_convention(ip):
    torch = pytest.importorskip("torch")
    from einsum_magic.views import html

    ip.run_cell("import torch\ng = torch.Generator().manual_seed(0)\n"
                "X = torch.randn(2, 3, dtype=torch.complex128, generator=g)\n"
                "W = torch.randn(3, 4, dtype=torch.complex128, generator=g)")
    try:
        result, _ = run(ip, "%%einsum_grad -o res\nY = torch.einsum('ij,jk->ik', X, W)")
        assert result.success, result.error_in_exec
        (a,) = ip.user_ns["res"].analyses
        assert a.check.passed and a.check.dtype == "complex64"
        import html as markup
        import re

        shown = markup.unescape(re.sub(r"<[^>]+>", "", html.export(a)))
        assert "A, B = (t.conj() for t in ctx.saved_tensors)" in shown.replace("X, W", "A, B")
        fn = a.derivation.compile("torch")
        xs = tuple(ip.user_ns[n].clone().requires_grad_(True) for n in ("X", "W"))
        assert torch.autograd.gradcheck(fn, xs)
    finally:
        for name in ("torch", "g", "X", "W"):
            ip.user_ns.pop(name, None)


@pytest.mark.parametrize("trait, value", [("max_displays", 0), ("max_displays", -1),
                                          ("max_elements", 0)])
def test_a_limit_that_is_not_positive_is_a_usage_error(ip, trait, value):
    magics = next(m for m in ip.configurables if type(m).__name__ == "EinsumGradMagics")
    old = getattr(magics, trait)
    setattr(magics, trait, value)
    try:
        result, _ = run(ip, "%%einsum_grad --no-check\nC = np.einsum('ij,jk->ik', A, B)")
    finally:
        setattr(magics, trait, old)
    assert type(result.error_in_exec) is UsageError
    assert str(result.error_in_exec) == (f"EinsumGradMagics.{trait} = {value} is not a limit: "
                                         "give a positive integer")


def test_the_check_says_when_the_runs_arrays_were_too_large_to_keep(ip):
    magics = next(m for m in ip.configurables if type(m).__name__ == "EinsumGradMagics")
    old, magics.max_elements = magics.max_elements, 4
    try:
        result, cap = run(ip, "%%einsum_grad\nC = np.einsum('ij,jk->ik', A, B)")
    finally:
        magics.max_elements = old
    assert result.success, result.error_in_exec
    (out,) = shown(cap)
    assert out.splitlines()[-1].endswith("on seeded random arrays, not yours (the run's arrays "
                                         "were not kept: over the element budget, or not "
                                         "copyable)")
