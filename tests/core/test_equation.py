"""Parsing: explicit and implicit forms, and a caret under every kind of mistake."""

from __future__ import annotations

import pytest

from einsum_magic import EinsumError, derive
from einsum_magic.core.equation import bind, parse


def caret_at(error: EinsumError) -> int:
    """Column of the first caret under the quoted equation."""
    lines = str(error).splitlines()
    return lines[2].index("^") - 4


@pytest.mark.parametrize("text,explicit", [
    ("ij,jk->ik", "ij,jk->ik"),
    ("ij,jk", "ij,jk->ik"),
    (" i j , j k -> i k ", "ij,jk->ik"),
    ("ba", "ba->ab"),
    ("ii", "ii->"),
    ("...ij,...jk", "...ij,...jk->...ik"),
    (",ij->ij", ",ij->ij"),
    ("", "->"),
    ("zZ", "zZ->Zz"),
    ("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ->"
     "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
])
def test_explicit_form(text, explicit):
    assert parse(text).explicit == explicit


@pytest.mark.parametrize("text,shapes,message,column", [
    ("ij,j1->i", None, "'1' is not a subscript letter", 4),
    ("ij,j.->i", None, "dots must come as one '...'", 4),
    ("i....j", None, "dots must come as one '...'", 1),
    ("...i...", None, "only one '...'", 4),
    ("ij->i->", None, "a second '->'", 5),
    ("ij-i", None, "'-' must be followed by '>'", 2),
    ("ij>i", None, "'>' without '-'", 2),
    ("ij->k", None, "'k' appears in no input", 4),
    ("ij->ii", None, "'i' appears twice", 5),
    ("ij,\tjk->ik", None, "'\\t' is not a subscript letter", 3),
    ("ij,k->i,k", None, "',' after '->'", 7),
    ("ij,jk->ik", [(2, 3)], "2 operand(s) but 1 shape(s)", 3),
    ("ij,jk->ik", [(2, 3), (3,)], "operand 2 has 1 dimension(s)", 3),
    ("ij,jk->ik", [(2, 3), (4, 5)], "letter 'j' has size 3 in operand 1 but 4", 3),
    ("ij", [(-1, 2)], "must not be negative", 0),
    ("ii", [(2, 3)], "a diagonal needs equal sizes", 1),
    ("...ij->ij", [(5, 2, 3)], "leaves out '...'", 5),
    ("...i,...i->...i", [(2, 3), (4, 3)], "does not broadcast", 5),
])
def test_errors_point_at_the_offending_place(text, shapes, message, column):
    with pytest.raises(EinsumError) as info:
        derive(text, shapes=shapes)
    error = info.value
    assert isinstance(error, ValueError)
    assert message in str(error)
    assert str(error).splitlines()[1] == "    " + text
    assert caret_at(error) == column


@pytest.mark.parametrize("kwargs,message", [
    ({"names": ["1x", "B"]}, "'1x' is not a Python identifier"),
    ({"names": ["A"]}, "2 operand(s) but 1 name(s)"),
    ({"names": ["np", "B"]}, "'np' is used by the generated code"),
    ({"names": ["range", "B"]}, "'range' is used by the generated code"),
    ({"names": ["A", "B"], "output": "A"}, "also an operand's name"),
    ({"names": ["A", "A"], "shapes": [(2, 3), (3, 4)]}, "its shapes (2, 3) and (3, 4) differ"),
    ({"shapes": [(2, 3), (3, "x")]}, "sizes must be integers"),
    ({"shapes": 5}, "shapes must be a sequence"),
])
def test_bad_names_and_shapes(kwargs, message):
    with pytest.raises(EinsumError) as info:
        derive("ij,jk->ik", **kwargs)
    assert message in str(info.value)


def test_an_output_ellipsis_without_input_ellipsis_stands_for_nothing():
    assert parse("ij->...ij").explicit == "ij->ij"           # as numpy reads it


def test_not_a_string():
    with pytest.raises(EinsumError, match="is a string"):
        derive(42)


def test_size_one_broadcasts():
    b = bind(parse("i,i->i"), [(3,), (1,)])
    assert b.inputs[0] == "i" and b.inputs[1] != "i"
    assert b.sizes[b.inputs[1]] == 1
    assert b.broadcast == frozenset(b.inputs[1])


def test_error_message_has_one_line_of_reason():
    with pytest.raises(EinsumError) as info:
        derive("ij,j1->i")
    assert len(str(info.value).splitlines()) == 3
    assert info.value.reason.startswith("'1'")
