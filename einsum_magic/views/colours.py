"""One colour per letter: the palette, which letter gets which colour, and coloured HTML.

Every view paints a letter of an einsum the same colour: in equation strings, in code,
in loop bodies, in the Shapes table and in the diagrams (:mod:`einsum_magic.views.diagram`).
Colour is never the only cue: the letter stays as text inside its element.

* :data:`PALETTE` holds ten hues after Okabe & Ito's colour-blind-safe set, each with a
  variant for light backgrounds and one for dark backgrounds (each at least 4.4:1 against
  JupyterLab's light and dark layout and editor colours: the tests compute it).
* :func:`assign` gives the letters of a derivation their colours in order of first
  appearance in the forward equation; a repeat's fresh letter (``np.eye``) shares the
  colour of the letter it repeats. :func:`for_relabelled` carries them over to a
  relabelled equation, so a colour keeps meaning one axis.
* :func:`css` is the stylesheet: the colours as custom properties ``--eg-l0`` …
  ``--eg-l9`` on ``.einsum-grad``, switched to the dark variants inside JupyterLab's
  ``data-jp-theme-light="false"`` (and VS Code's ``vscode-dark``; every selector starts
  at ``.einsum-grad``, so nothing leaks out of the display), and the text colour of the
  elements ``<l-0>`` … ``<l-9>`` that hold a painted letter (:func:`letter_tag`: undefined
  custom elements, inline and unstyled without the stylesheet like a ``<span>``, at half
  its bytes; a page paints hundreds of letters).
* :func:`paint` colours the letters of an equation string; :func:`paint_code` those of
  highlighted code (the letters inside an einsum string and the loop indices);
  :func:`paint_html` both, through a whole section of the display (the one helper the
  views call).

Pure functions of strings and mappings.

>>> colours = assign(("ij", "jk"), "ik")
>>> colours
{'i': 0, 'j': 1, 'k': 2}
>>> paint("ij,jk->ik", colours)
'<l-0>i</l-0><l-1>j</l-1>,<l-1>j</l-1><l-2>k</l-2>-&gt;<l-0>i</l-0><l-2>k</l-2>'
"""

from __future__ import annotations

import functools
import re
from html import escape, unescape
from typing import Iterable, Mapping

__all__ = ["PALETTE", "assign", "of", "for_relabelled", "css", "paint", "paint_code", "paint_html",
           "class_of", "letter_tag"]

#: (name, colour on light backgrounds, colour on dark backgrounds), in the order letters take them.
PALETTE = (
    ("blue", "#0063A6", "#5DB7F0"),
    ("vermillion", "#B84A00", "#FF9155"),
    ("green", "#00795A", "#2FCF9B"),
    ("reddish purple", "#A8407F", "#EE99C8"),
    ("ochre", "#8A6200", "#E8B530"),
    ("violet", "#6A4DC4", "#B9A6FF"),
    ("teal", "#00727F", "#5FD4E3"),
    ("red", "#C0243B", "#FF8A93"),
    ("olive", "#5E6E00", "#C3D45A"),
    ("grey", "#5A5A5A", "#BDBDBD"),
)


def assign(inputs: Iterable[str], output: str = "",
           ties: Iterable[tuple[str, str]] = ()) -> dict[str, int]:
    """Palette index of every letter of ``inputs`` and ``output``, in order of first appearance.

    ``ties`` are ``(fresh, letter)`` pairs: ``fresh`` gets ``letter``'s colour (a repeat
    renamed by the generalized rule). Past ten letters the palette starts again.

    >>> assign(("ii",), "", ties=[("j", "i")])
    {'i': 0, 'j': 0}
    >>> assign(("...ij",), "...ij")["j"]
    1
    """
    out: dict[str, int] = {}
    for c in "".join(inputs) + output:
        if c.isalpha() and c not in out:
            out[c] = len(out) % len(PALETTE)
    for fresh, letter in ties:
        if fresh not in out and letter in out:
            out[fresh] = out[letter]
    return out


def of(d) -> dict[str, int]:
    """The colours of a :class:`~einsum_magic.core.derivation.Derivation`'s letters (cached per derivation).

    Forward letters in order of first appearance in its (bound) equation, then every
    gradient's fresh letters with the colour of the letter they repeat.

    >>> from einsum_magic import derive
    >>> of(derive("ii->i"))
    {'i': 0, 'j': 0}
    """
    return dict(_of(d))


@functools.lru_cache(maxsize=256)
def _of(d) -> tuple:
    ties = [(c, a.letter) for g in d.grads for a in g.aux if a.kind == "eye"
            for c in a.subscripts[1:]]
    return tuple(assign(d.inputs, d.result, ties).items())


def for_relabelled(equation: str, relabelled: str, colours: Mapping[str, int]) -> dict[str, int]:
    """The colours of ``relabelled``'s letters: each takes the colour of the letter it renames.

    >>> for_relabelled("ik,jk->ij", "ij,kj->ik", {"i": 0, "j": 1, "k": 2})
    {'i': 0, 'j': 2, 'k': 1}
    """
    out: dict[str, int] = {}
    for old, new in zip(equation, relabelled):
        if new.isalpha() and old in colours:
            out.setdefault(new, colours[old])
    return out


def class_of(letter: str, colours: Mapping[str, int]) -> str:
    """The CSS class that paints ``letter`` in a diagram's SVG (``''`` for a letter without a colour)."""
    k = colours.get(letter)
    return "" if k is None else f"eg-l{k}"


def letter_tag(k: int) -> str:
    """The element that holds a letter of palette colour ``k`` in HTML.

    >>> letter_tag(3)
    'l-3'
    """
    return f"l-{k}"


@functools.lru_cache(maxsize=64)
def css(letters: tuple | None = None) -> str:
    """CSS rules: the palette as ``--eg-l*`` properties (light, then dark) and the ``<l-*>`` elements' colour.

    ``letters``: the palette indices a page paints (default: all of them); the others are
    left out.

    >>> print(css((1,)))
    .einsum-grad { --eg-l1: #B84A00; }
    .einsum-grad:is([data-jp-theme-light="false"] *), .einsum-grad:is(.vscode-dark *), .einsum-grad.eg-dark { --eg-l1: #FF9155; }
    .einsum-grad l-1 { color: var(--eg-l1); }
    """
    ks = range(len(PALETTE)) if letters is None else letters
    if not ks:
        return ""
    light = " ".join(f"--eg-l{k}: {PALETTE[k][1]};" for k in ks)
    dark = " ".join(f"--eg-l{k}: {PALETTE[k][2]};" for k in ks)
    rules = [f".einsum-grad {{ {light} }}",
             '.einsum-grad:is([data-jp-theme-light="false"] *), .einsum-grad:is(.vscode-dark *), '
             f".einsum-grad.eg-dark {{ {dark} }}"]
    # a painted letter is an element of its own (inside a string token too): its colour wins
    rules += [f".einsum-grad {letter_tag(k)} {{ color: var(--eg-l{k}); }}" for k in ks]
    return "\n".join(rules)


def paint(text: str, colours: Mapping[str, int]) -> str:
    """``text`` as HTML, each letter that has a colour in its ``<l-N>`` element.

    >>> paint("i->", {"i": 3})
    '<l-3>i</l-3>-&gt;'
    """
    return text.translate(_table(tuple(sorted(colours.items()))))


@functools.lru_cache(maxsize=256)
def _table(colours: tuple) -> dict:
    """A ``str.translate`` table: HTML escapes, and each coloured letter in its element."""
    table = {ord(c): escape(c) for c in "&<>\"'"}
    table.update({ord(c): _letter(c, k) for c, k in colours if c.isalpha()})
    return table


def _letter(c: str, k: int) -> str:
    return f"<{letter_tag(k)}>{c}</{letter_tag(k)}>"


#: A name token of one letter, and a string token (the HTML that
#: :func:`einsum_magic.views.html.tokens_html` writes).
_NAME = re.compile(r"<t-n>([A-Za-z])</t-n>")
_STRING = re.compile(r"(<t-s>)([^<]*)(</t-s>)")
_ENTITY = re.compile(r"(&#?\w+;)")


def paint_code(highlighted: str, colours: Mapping[str, int], names: Iterable[str] = ()) -> str:
    """Pygments HTML of generated code with its letters painted.

    A one-letter name (a loop index, ``<t-n>``) gets its letter's colour unless
    it is one of ``names`` (an array called like a letter: plain text then); inside a string
    token that reads as an einsum equation (letters, ``,``, ``->``, ``.`` and spaces only)
    every letter does.

    >>> paint_code('<t-n>i</t-n> <t-s>"ij-&gt;i"</t-s>', {"i": 0})
    '<l-0>i</l-0> <t-s>"<l-0>i</l-0>j-&gt;<l-0>i</l-0>"</t-s>'
    """
    names = set(names)

    def name(m):
        c = m.group(1)
        k = colours.get(c)
        return c if k is None or c in names else _letter(c, k)

    def string(m):
        body = m.group(2)
        inner = unescape(body).strip("'\"")
        if not _is_equation(inner):
            return m.group(0)
        painted = "".join(part if part.startswith("&") else
                          re.sub(r"[A-Za-z]", lambda x: _one(x.group(0), colours), part)
                          for part in _ENTITY.split(body))
        return m.group(1) + painted + m.group(3)

    return _STRING.sub(string, _NAME.sub(name, highlighted))


def _one(c: str, colours: Mapping[str, int]) -> str:
    k = colours.get(c)
    return c if k is None else _letter(c, k)


#: An inline ``<code>`` of plain text, and a Pygments block.
_CODE = re.compile(r"<code>([^<]*)</code>")
_PRE = re.compile(r'(<pre class="eg-code">)(.*?)(</pre>)', re.S)
_EQUATION = re.compile(r"(?:[A-Za-z,\s]|\.\.\.)*(?:->(?:[A-Za-z\s]|\.\.\.)*)?")


def _is_equation(text: str) -> bool:
    """Whether ``text`` reads as einsum subscripts: letters, ``,``, ``->``, ``...``; an einops
    pattern (words between spaces, ``'batch d, d out -> batch'``) is not one letter a character.

    >>> [_is_equation(t) for t in ("ij,jk->ik", "...i", "i", "batch d -> batch", "np.eye", "")]
    [True, True, True, False, False, False]
    """
    if not text or _EQUATION.fullmatch(text) is None:
        return False
    return not (re.search(r"[A-Za-z]{2}", text) and re.search(r"[A-Za-z]\s+[A-Za-z]", text))


def paint_html(fragment: str, colours: Mapping[str, int], names: Iterable[str] = ()) -> str:
    """A section of the display with every letter painted: each inline ``<code>`` that
    holds an equation or subscripts (``ij,jk->ik``, ``ij``, ``i``; not ``names``, the
    arrays) and every highlighted block (:func:`paint_code`). Spans already painted stay.

    >>> paint_html("<td><code>ij</code></td><td><code>A</code></td>", {"i": 0, "j": 1, "A": 2},
    ...            names=("A",))
    '<td><code><l-0>i</l-0><l-1>j</l-1></code></td><td><code>A</code></td>'
    """
    names = tuple(names)

    def code(m):
        text = unescape(m.group(1))
        if text in names or not _is_equation(text):
            return m.group(0)
        return f"<code>{paint(text, colours)}</code>"

    def pre(m):
        return m.group(1) + paint_code(m.group(2), colours, names) + m.group(3)

    return _PRE.sub(pre, _CODE.sub(code, fragment))
