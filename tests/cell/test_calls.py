"""The ast layer: which calls of a cell are einsums, and how each is read (einsum_magic.cell.calls)."""

from __future__ import annotations

import ast

import numpy as np
import opt_einsum
import pytest

from einsum_magic import EinsumError, derive
from einsum_magic.cell.calls import Call, cell_equation, equation_call, find_calls
from einsum_magic.core.shapes import shapes_for


def one(source: str, namespace=None) -> Call:
    found = find_calls(source, namespace)
    assert len(found.calls) == 1, found
    return found.calls[0]


@pytest.mark.parametrize("source", [
    "C = np.einsum('ij,jk->ik', A, B)",
    "C = numpy.einsum('ij,jk->ik', A, B)",
    "C = jnp.einsum('ij,jk->ik', A, B)",
    "C = jax.numpy.einsum('ij,jk->ik', A, B)",
    "C = torch.einsum('ij,jk->ik', A, B)",
    "C = torch.einsum('ij,jk->ik', [A, B])",
    "C = opt_einsum.contract('ij,jk->ik', A, B)",
    "C = oe.contract('ij,jk->ik', A, B, optimize='greedy')",
    "C = einsum('ij,jk->ik', A, B)",
    "import numpy as xp\nC = xp.einsum('ij,jk->ik', A, B)",
    "from jax import numpy as jn\nC = jn.einsum('ij,jk->ik', A, B)",
    "from opt_einsum import contract\nC = contract('ij,jk->ik', A, B)",
    "from numpy import einsum as es\nC = es('ij,jk->ik', A, B)",
])
def test_every_spelling_of_an_einsum_call(source):
    call = one(source)
    assert (call.equation, call.names, call.output) == ("ij,jk->ik", ("A", "B"), "C")
    assert call.style == "numpy"
    assert call.line == source.count("\n") + 1


@pytest.mark.parametrize("source", [
    "C = np.dot(A, B)",
    "C = np.contract('ij,jk->ik', A, B)",       # contract belongs to opt_einsum only
    "C = oe.einsum('ij,jk->ik', A, B)",
    "C = mylib.einsum('ij,jk->ik', A, B)",      # an unknown module
    "C = contract('ij,jk->ik', A, B)",          # a bare contract not imported from opt_einsum
    "C = A.einsum('ij,jk->ik', B)",
])
def test_other_calls_are_not_einsums(source):
    found = find_calls(source)
    assert (found.calls, found.notes) == ((), ())


def test_aliases_from_the_users_namespace():
    ns = {"xp": np, "ct": opt_einsum.contract}
    assert one("C = xp.einsum('ij,jk->ik', A, B)", ns).function == "xp.einsum"
    assert one("C = ct('ij,jk->ik', A, B)", ns).function == "ct"
    assert find_calls("C = ct('ij,jk->ik', A, B)", {"ct": len}).calls == ()


def test_interleaved_form_is_read_as_one_call():
    call = one("C = np.einsum(A, [0, 1], B, [1, 2], [0, 2])")
    assert (call.names, call.output, call.style) == (("A", "B"), "C", "interleaved")


@pytest.mark.parametrize("source", [
    "np.einsum(A, [0, 1], B, [1, 2], [0, 2])",
    "np.einsum(A, [0, 26])",                        # implicit: numpy keeps the order 0, 26
    "np.einsum(A, [26, 0])",                        # implicit: numpy transposes
    "np.einsum(A, [27, 1], B, [1, 0])",             # implicit, integers on both sides of 26
    "np.einsum(A, [51, 0, 25])",
    "np.einsum(A, (30, 2), B, (2, 3))",
    "np.einsum(A, [Ellipsis, 30, 2], B, [2, 3])",   # implicit with '...'
    "np.einsum(A, [0, 26, ...], B, [26, 1], [..., 1, 0])",
])
def test_interleaved_form_maps_integers_as_numpy_does(source):
    """numpy gives 0-25 the letters A-Z and 26-51 a-z; the implicit output's order shows it."""
    call = one(source)
    rng = np.random.default_rng(0)
    shapes = shapes_for(call.equation)            # distinct sizes: a wrong order changes shape
    arrays = [rng.standard_normal(s) for s in shapes]
    want = eval(source, {"np": np, **dict(zip(call.names, arrays))})
    got = np.einsum(call.equation, *arrays)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want)


def test_einops_pattern_gets_letters_and_is_spelled_back():
    call = one('Y = einops.einsum(x, w, "batch d, d out -> batch out")')
    assert call.style == "einops"
    assert call.equation == "bd,do->bo"
    assert dict(call.axes) == {"b": "batch", "d": "d", "o": "out"}
    d = derive(call.equation, call.names, call.output)
    assert call.spell(d.grads[0].inputs, d.grads[0].output) == "batch out, d out -> batch d"
    assert call.spell(d.grads[1].inputs, d.grads[1].output) == "batch out, batch d -> d out"


def test_einops_letters_never_collide():
    call = one("einops.einsum(a, b, 'bb b, b c2 -> bb c2')")
    letters = dict(call.axes)
    assert len(set(letters)) == 3 and letters["b"] == "b"
    assert call.spell(("bc",), "b") != ""
    inverse = {n: c for c, n in call.axes}
    assert call.equation == f"{inverse['bb']}b,b{inverse['c2']}->{inverse['bb']}{inverse['c2']}"


def test_einops_bad_pattern_is_an_einsum_error_with_caret():
    with pytest.raises(EinsumError, match="needs '->'"):
        find_calls("einops.einsum(x, w, 'a b, b c')")
    with pytest.raises(EinsumError, match="not an axis name") as info:
        find_calls("einops.einsum(x, w, 'a b, b 1c -> a')")
    assert str(info.value).splitlines()[-1].strip() == "^^"
    with pytest.raises(EinsumError, match="'1' is not an axis name") as info:
        find_calls("einops.einsum(x, w, 'x1y, 1 -> x1y')")     # '1' also sits inside 'x1y'
    assert str(info.value).splitlines()[-2:] == ["    x1y, 1 -> x1y", "         ^"]


def derive_error(source: str, shapes=None) -> EinsumError:
    """The error derive() raises for the one call of ``source``, restated by the call."""
    call = one(source)
    with pytest.raises(EinsumError) as info:
        derive(call.equation, call.names, call.output, shapes)
    return call.restate(info.value)


@pytest.mark.parametrize("source, shapes, reason, quote, caret", [
    ("Y = einops.einsum(x, w, 'batch d, d out -> batch zz')", None,
     "output axis 'zz' appears in no input",
     "batch d, d out -> batch zz", "                        ^^"),
    ("Y = einops.einsum(x, w, 'batch d, d out -> batch batch')", None,
     "output axis 'batch' appears twice",
     "batch d, d out -> batch batch", "                        ^^^^^"),
    ("Y = einops.einsum(x, w, 'batch d, d out -> batch out')", ((2, 3), (4, 5)),
     "axis 'd' has size 3 in operand 1 but 4 in operand 2 (only size 1 broadcasts)",
     "batch d, d out -> batch out", "         ^"),
    ("Y = einops.einsum(x, w, 'batch d, d out -> batch out')", ((2, 3, 1), (3, 5)),
     "operand 1 has 3 dimension(s) (2, 3, 1) but axes 'batch d' name 2",
     "batch d, d out -> batch out", "^^^^^^^"),
    ("C = np.einsum(A, [0, 1], [2])", None,
     "output subscript 2 appears in no input",
     "np.einsum(A, [0, 1], [2])", "                      ^"),
    ("C = np.einsum(A, [0, 1], B, [31, 31])", ((2, 3), (3, 4)),
     "subscript 31 repeats in operand 2 with sizes 3 and 4; a diagonal needs equal sizes",
     "np.einsum(A, [0, 1], B, [31, 31])", "                             ^^"),
    ("C = np.einsum(x, [0, ...], w, [..., 1])", ((2, 3), (4, 5)),
     "the '...' of operand 2 has shape (4,), which does not broadcast with the others",
     "np.einsum(x, [0, ...], w, [..., 1])", "                           ^^^"),
])
def test_errors_quote_the_pattern_as_written(source, shapes, reason, quote, caret):
    """Not the internal letter equation ('bd,do->bz'): the user's pattern, axis names, integers."""
    error = derive_error(source, shapes)
    assert str(error).splitlines() == [reason, "    " + quote, "    " + caret]
    assert (error.reason, error.equation) == (reason, quote)


def test_errors_of_plain_equations_are_left_alone():
    error = derive_error("C = np.einsum('ij,jk->iz', A, B)")
    assert str(error).splitlines()[1:] == ["    ij,jk->iz", "            ^"]


@pytest.mark.parametrize("source, why", [
    ("np.einsum(eq, A, B)", "the equation is a variable, not a string literal"),
    ("np.einsum(f'{eq}', A, B)", "the equation is an f-string, not a string literal"),
    ("np.einsum('ij,jk', *ops)", "operands unpacked with '*'"),
    ("einops.einsum(x, w, pattern)", "the pattern is a variable"),
    ("np.einsum(A, [i, j], B, [j, k])", "not lists of integer literals"),
])
def test_unreadable_calls_are_skipped_with_a_note(source, why):
    found = find_calls(source)
    assert found.calls == ()
    (note,) = found.notes
    assert note.startswith("line 1: ") and why in note and note.endswith("skipped")
    assert "\n" not in note


def test_expressions_get_position_names_and_a_legend():
    call = one("C = np.einsum('ij,jk->ik', A.T, x[0])")
    assert call.names == ("op1", "op2")
    assert call.legend == (("op1", "A.T"), ("op2", "x[0]"))
    assert call.plain == (False, False)
    clash = one("np.einsum('ij,jk->ik', op1, B.T)")
    assert clash.names == ("op1", "op2")
    clash = one("np.einsum('ij,jk->ik', op2, B.T)")
    assert clash.names == ("op2", "op2_")


def test_the_assigned_name_is_the_output():
    assert one("C: object = np.einsum('ij->ji', A)").output == "C"
    assert one("loss = np.einsum('ij->', A).sum()").output is None
    assert one("C[0] = np.einsum('ij->j', A)").output is None


def test_an_output_named_like_an_operand_gets_out_appended():
    call = one("A = np.einsum('ij->ji', A)")
    assert call.output == "A_out"
    d = derive(call.equation, call.names, call.output)
    assert (d.output, d.code) == ("A_out", "A_out = np.einsum('ij->ji', A)")
    assert one("A = np.einsum('ij,jk->ik', A, A_out)").output == "A_out_"
    assert one("op1 = np.einsum('ij->ji', A.T)").output == "op1_out"


@pytest.mark.parametrize("source", [
    "C = np.einsum('ij,jk->ik', A, B)",
    "A = 1\nB = 2\nC = np.einsum('ij,jk->ik', A, B)",      # bound before: read after the run
    "C = np.einsum('ij,jk->ik', A, B)\nD = [A for A in range(3)]",   # a comprehension's own A
    "C = np.einsum('ij,jk->ik', A, B)\ndef f(B):\n    A = B\n    return A",  # locals of f
    "C = np.einsum('ij,jk->ik', A, B)\nx.A = 1\nB[0] = 2",   # attributes and items: same names
    "D = [x for x in np.einsum('ij,jk->ik', A, B)]",          # the first iterable: outside
    "def f(x=np.einsum('ij,jk->ik', A, B)):\n    pass",      # defaults: outside the function
])
def test_operands_looked_up_in_the_users_namespace(source):
    call = [c for c in find_calls(source).calls if c.equation == "ij,jk->ik"][0]
    assert call.lookups() == (True, True)
    assert call.unread() == ""


@pytest.mark.parametrize("source, why", [
    ("def f(A):\n    return np.einsum('ij,jk->ik', A, B)", "inside a function"),
    ("async def f(A):\n    return np.einsum('ij,jk->ik', A, B)", "inside a function"),
    ("f = lambda A: np.einsum('ij,jk->ik', A, B)", "inside a lambda"),
    ("class K:\n    C = np.einsum('ij,jk->ik', A, B)", "inside a class body"),
    ("D = [np.einsum('ij,jk->ik', A, B) for A in As]", "inside a comprehension"),
    ("D = {k: np.einsum('ij,jk->ik', A, B) for k in ks}", "inside a comprehension"),
    ("D = sum(np.einsum('ij,jk->ik', A, B) for _ in ks)", "inside a comprehension"),
])
def test_calls_in_a_nested_scope_look_nothing_up(source, why):
    call = one(source)
    assert call.lookups() == (False, False)
    assert call.unread() == f"A, B not looked up: the call is {why}"


@pytest.mark.parametrize("after", [
    "A = 2", "A += 1", "A: int = 2", "for A in range(3):\n    pass", "with f() as A:\n    pass",
    "import numpy as A", "import A.b", "from m import A", "(A := 2)",
    "[(A := k) for k in range(3)]", "del A", "def A():\n    pass", "class A:\n    pass",
    "try:\n    pass\nexcept E as A:\n    pass", "match x:\n    case [A]:\n        pass",
    "match x:\n    case {**A}:\n        pass",
    "if x:\n    A, y = 1, 2",
])
def test_an_operand_the_cell_binds_after_the_call_is_not_looked_up(after):
    call = one("C = np.einsum('ij,jk->ik', A, B)\n" + after)
    assert call.lookups() == (False, True)
    assert call.unread() == "A not looked up: the cell assigns it at or after this call"


@pytest.mark.parametrize("source", [
    "A = np.einsum('ij,jk->ik', A, B)",                       # the call's own statement
    "for k in range(3):\n    C = np.einsum('ij,jk->ik', A, B)\n    A = C",  # same statement
    "def reset():\n    global A\n    A = 0\nC = np.einsum('ij,jk->ik', A, B)",  # any time
])
def test_binding_in_the_calls_statement_or_by_global_counts_as_after(source):
    assert one(source).lookups() == (False, True)


def test_a_star_import_may_bind_any_name():
    assert one("C = np.einsum('ij,jk->ik', A, B)\nfrom m import *").lookups() == (False, False)
    assert one("from m import *\nC = np.einsum('ij,jk->ik', A, B)").lookups() == (True, True)


def test_without_a_run_nothing_the_cell_binds_is_looked_up():
    call = one("A = np.ones((5, 5))\nC = np.einsum('ij,jk->ik', A, B)\nB = 1")
    assert call.lookups(ran=True) == (True, False)
    assert call.lookups(ran=False) == (False, False)
    assert call.unread(ran=False) == \
        "A, B not looked up: the cell assigns them, and --no-run kept the cell from running"
    assert one("C = np.einsum('ij,jk->ik', A, B)").lookups(ran=False) == (True, True)
    assert one("C = np.einsum('ij,jk->ik', A.T, B)").lookups() == (False, True)


def test_same_array_twice_keeps_one_name():
    call = one("s = np.einsum('ij,ij->', A, A)")
    assert call.names == ("A", "A")
    assert len(derive(call.equation, call.names, call.output).totals) == 1


def test_several_calls_come_in_source_order_nested_ones_too():
    source = ("def f(x):\n    return np.einsum('ij->j', x)\n"
              "C = np.einsum('ij,jk->ik', np.einsum('ab->ba', X), Y)\n"
              "D = einops.einsum(C, 'i k -> k')\n")
    calls = find_calls(source).calls
    assert [c.equation for c in calls] == ["ij->j", "ij,jk->ik", "ab->ba", "ik->k"]
    assert [c.line for c in calls] == [2, 3, 3, 4]
    assert calls[1].names == ("op1", "Y")


def test_a_cell_holding_only_an_equation():
    assert cell_equation("ij,jk->ik") == "ij,jk->ik"
    assert cell_equation("# the trace\n\n  ii  \n") == "ii"
    assert cell_equation("'...ij,...jk->...ik'") == "...ij,...jk->...ik"
    assert cell_equation('"ij, jk -> ik"') == "ij, jk -> ik"
    for source in ["C = A @ B", "f(x)", "ij,jk->ik\nx = 1", "", "42", "'a' + 'b'"]:
        assert cell_equation(source) is None, source
    # not Python either: the equation, whose error says what is wrong (a caret under '1')
    assert cell_equation("ij->i1") == "ij->i1"


@pytest.mark.parametrize("source, namespace, expected", [
    ("ii", {}, "ii"),                        # one run of letters, free: an equation
    ("ij", {"x": 1}, "ij"),
    ("x", {}, "x"),
    ("...i", {}, "...i"),
    ("i,j", {"i": 1, "j": 2}, "i,j"),        # a ',' makes it an equation, names or not
    ("x->x", {"x": 1}, "x->x"),
    ("'x'", {"x": 1}, "x"),                  # quoted: always the equation
    ("pass", {}, None),                      # a keyword
    ("None", {}, None),
    ("match", {}, None),                     # a soft keyword
    ("x", {"x": 1}, None),                   # the user's variable: Python shows it
    ("sum", {}, None),                       # a builtin
    ("a.b", {}, None),                       # '.' without '...': attribute access
    ("i j", {}, None),                       # two runs of letters
])
def test_which_one_line_cells_are_equations(source, namespace, expected):
    assert cell_equation(source, namespace) == expected
    call = equation_call("ij,jk")
    assert (call.names, call.output, call.style, call.plain) == (("A", "B"), "C", "equation",
                                                                 (False, False))


def test_syntax_errors_are_left_to_python():
    with pytest.raises(SyntaxError):
        find_calls("C = np.einsum('ij', A")


def _function_of(module: str):
    def einsum(*args):
        return None

    einsum.__module__ = module
    return einsum


@pytest.mark.parametrize("module, known", [
    ("numpy", True), ("torch.functional", True), ("jax.numpy", True), ("jax._src.numpy", True),
    ("einops.einops", True), ("opt_einsum.contract", True),
    ("jaxtyping", False), ("torchvision.ops", False), ("numpy_foo", False), ("einopsx", False),
])
def test_a_bare_einsum_from_a_module_named_like_a_known_one_is_unknown(module, known):
    from einsum_magic.cell.calls import _unknown_einsum

    found = _unknown_einsum(ast.parse("C = einsum('ij,jk->ik', A, B)"),
                            {"einsum": _function_of(module)})
    assert found == (None if known else f"{module}._function_of.<locals>.einsum")
