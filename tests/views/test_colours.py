"""One colour per letter: the palette reads on JupyterLab's light and dark backgrounds, letters
keep their colour across views, and the painted HTML keeps every letter as text."""

from __future__ import annotations

import re
from html import unescape

import pytest

from einsum_magic import derive
from einsum_magic.views import html
from einsum_magic.views.colours import PALETTE, assign, css, for_relabelled, of, paint, paint_code, paint_html

# JupyterLab's layout-color1/2 and cell editor backgrounds, light and dark themes.
LIGHT = ("#ffffff", "#eeeeee", "#f7f7f7")
DARK = ("#111111", "#212121", "#303030", "#424242")


def _luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def _contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("name, light, dark", PALETTE)
def test_palette_reads_on_light_and_dark_backgrounds(name, light, dark):
    assert min(_contrast(light, bg) for bg in LIGHT) >= 4.4, name
    assert min(_contrast(dark, bg) for bg in DARK) >= 4.4, name


def test_palette_hues_are_distinct():
    assert len({c for _, c, _ in PALETTE}) == len({c for _, _, c in PALETTE}) == len(PALETTE)


def test_css_switches_to_dark_variants_with_jupyterlab_theme():
    rules = css()
    light, dark = rules.splitlines()[:2]
    assert all(c in light for _, c, _ in PALETTE)
    assert '.einsum-grad:is([data-jp-theme-light="false"] *)' in dark
    assert all(c in dark for _, _, c in PALETTE)


def test_assignment_follows_first_appearance_and_wraps():
    assert assign(("ba", "ac"), "bc") == {"b": 0, "a": 1, "c": 2}
    many = assign(("abcdefghijkl",))
    assert many["a"] == many["k"] == 0 and len(set(many.values())) == len(PALETTE)


def test_fresh_letter_of_a_repeat_shares_its_colour():
    d = derive("iij,jk->ik")
    colours = of(d)
    (eye,) = d.grads[0].aux
    assert colours[eye.subscripts[1]] == colours[eye.letter]


def test_relabelled_keeps_the_colour_of_each_axis():
    d = derive("ij,jk->ik")
    g = d.grads[0]
    colours = of(d)
    mapped = for_relabelled(g.equation, g.relabelled, colours)
    assert g.relabelled == "ij,kj->ik"
    assert mapped == {"i": colours["i"], "j": colours["k"], "k": colours["j"]}


def test_paint_keeps_the_text():
    s = paint("...ij,jk->...ik", {"i": 0, "j": 1, "k": 2})
    assert unescape(re.sub(r"<[^>]+>", "", s)) == "...ij,jk->...ik"
    assert s.count("<l-1>") == 2


def test_paint_code_colours_loop_indices_and_einsum_strings_only():
    d = derive("ij,jk->ik", names=("i", "B"))    # an operand named like a letter stays plain
    colours = of(d)
    code = paint_code(html.highlight(d.loops + "\n" + d.grads[1].code), colours, names=d.names)
    assert unescape(re.sub(r"<[^>]+>", "", code)) == d.loops + "\n" + d.grads[1].code
    assert "<t-k>for</t-k> <l-1>j</l-1> <t-ow>in" in code
    assert "<l-0>i</l-0><l-2>k</l-2>," in code
    assert "<t-o>+=</t-o> i<t-p>[" in code         # the array 'i': plain
    assert "<t-n>" not in code                     # every one-letter name painted or plain
    plain = paint_code(html.highlight("x = 'not an equation!'"), colours)
    assert "<l-" not in plain


def test_einops_patterns_are_not_painted_letter_by_letter():
    colours = {c: 0 for c in "abcdhotu"}
    assert paint_html("<code>batch d, d out -&gt; batch</code>", colours) == \
        "<code>batch d, d out -&gt; batch</code>"
    source = 'Y = einops.einsum(x, w, "batch d, d out -> batch out")'
    painted = paint_code(html.highlight(source), colours)
    assert "<l-" not in painted and unescape(re.sub(r"<[^>]+>", "", painted)) == source
