"""The ast layer: which calls of a cell are einsums, and how each is read (einsum_magic.cell)."""

from __future__ import annotations

import numpy as np
import opt_einsum
import pytest

from einsum_magic import EinsumError, derive
from einsum_magic.cell import Call, cell_equation, equation_call, find_calls


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
    assert find_calls(source) == find_calls("")


def test_aliases_from_the_users_namespace():
    ns = {"xp": np, "ct": opt_einsum.contract}
    assert one("C = xp.einsum('ij,jk->ik', A, B)", ns).function == "xp.einsum"
    assert one("C = ct('ij,jk->ik', A, B)", ns).function == "ct"
    assert find_calls("C = ct('ij,jk->ik', A, B)", {"ct": len}).calls == ()


def test_interleaved_form_maps_integers_as_numpy_does():
    call = one("C = np.einsum(A, [0, 1], B, [1, 2], [0, 2])")
    assert (call.equation, call.names, call.style) == ("ab,bc->ac", ("A", "B"), "interleaved")
    A, B = np.ones((2, 3)), np.ones((3, 4))
    np.testing.assert_array_equal(np.einsum(call.equation, A, B),
                                  np.einsum(A, [0, 1], B, [1, 2], [0, 2]))
    assert one("np.einsum(A, [0, 27, Ellipsis], [27, ...])").equation == "aB...->B..."
    assert one("np.einsum(A, [1, 0])").equation == "ba"          # implicit: no output list


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


def test_the_assigned_name_is_the_output_unless_it_is_an_operand():
    assert one("C: object = np.einsum('ij->ji', A)").output == "C"
    assert one("A = np.einsum('ij->ji', A)").output is None
    assert one("loss = np.einsum('ij->', A).sum()").output is None
    assert one("C[0] = np.einsum('ij->j', A)").output is None


def test_rebound_operands_are_listed():
    assert one("A = np.einsum('ij->ji', A)").rebound == ("A",)
    assert one("C = np.einsum('ij,jk->ik', A, B)\nB = 2").rebound == ("B",)
    assert one("B = 2\nC = np.einsum('ij,jk->ik', A, B)").rebound == ()


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
    for source in ["C = A @ B", "f(x)", "ij,jk->ik\nx = 1", "", "42", "'a' + 'b'", "ij->i1"]:
        assert cell_equation(source) is None, source
    call = equation_call("ij,jk")
    assert (call.names, call.output, call.style, call.plain) == (("A", "B"), "C", "equation",
                                                                 (False, False))


def test_syntax_errors_are_left_to_python():
    with pytest.raises(SyntaxError):
        find_calls("C = np.einsum('ij', A")
