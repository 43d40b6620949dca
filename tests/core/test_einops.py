"""core.einops: einops patterns and interleaved sublists read into one equation in letters."""

from __future__ import annotations

import ast

import pytest

from einsum_magic import EinsumError
from einsum_magic.core.einops import INTERLEAVED_LETTERS, read_einops, read_interleaved, sublist


def test_axis_names_get_letters_and_the_pattern_is_kept_for_carets():
    r = read_einops("batch head q d, batch head k d -> batch head q k", ())
    assert r.equation == "bhqd,bhkd->bhqk"
    assert dict(r.axes) == {"b": "batch", "h": "head", "q": "q", "d": "d", "k": "k"}
    assert r.quote == "batch head q d, batch head k d -> batch head q k" and r.style == "einops"
    # one span per letter (and per separator), pointing at the word it came from
    start, end = r.spans[r.equation.index("k")]
    assert r.quote[start:end] == "k"


def test_clashing_first_letters_take_the_next_free_letter():
    r = read_einops("bar baz -> bar", ())
    assert r.equation[0] == "b" and r.equation[1] != "b" and r.equation.endswith("->b")


@pytest.mark.parametrize("pattern,message,caret", [
    ("a b, b c", "needs '->'", None),
    ("a 1b -> a", "'1b' is not an axis name", "1b"),
])
def test_bad_patterns_say_where(pattern, message, caret):
    with pytest.raises(EinsumError) as info:
        read_einops(pattern, ())
    text = str(info.value)
    assert message in text
    if caret:
        line, marks = text.splitlines()[-2:]
        assert line.strip() == pattern
        assert line[marks.index("^"):marks.rindex("^") + 1] == caret


def test_interleaved_sublists_map_integers_as_numpy_does():
    args = ast.parse("f(A, [0, 27], B, [27, Ellipsis], [0])").body[0].value.args
    r = read_interleaved(args, "f")
    assert r.equation == "Ab,b...->A" and r.quote.startswith("f(A, [0, 27]")
    assert INTERLEAVED_LETTERS[27] == "b"


def test_a_sublist_of_names_is_not_read_and_an_integer_out_of_range_is_an_error():
    assert sublist(ast.parse("[i, j]").body[0].value, 0) is None
    with pytest.raises(EinsumError, match="out of numpy's range"):
        sublist(ast.parse("[0, 60]").body[0].value, 13, "np.einsum(A, [0, 60])")
