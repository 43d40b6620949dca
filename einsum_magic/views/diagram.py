"""Tensor-network diagrams of an einsum's forward and of each gradient, and their SVG.

In a tensor network each operand is a node and each letter an edge between the nodes
that carry it. The swap trick is a picture there: the backward of ``A`` is the forward
network with ``A``'s node taken out (an open slot, whose edges are the gradient's axes)
and the cotangent plugged into the output's open edges.

The model (:func:`forward`, :func:`backward`) is pure and immutable: a :class:`Diagram`
of :class:`Node` and :class:`Edge` records built from a
:class:`~einsum_magic.core.derivation.Derivation`.

* an operand is a node of kind ``operand`` (id ``op<k>``: the same array passed twice
  is two nodes); in a gradient's diagram operand ``k`` becomes a ``slot`` of the same id;
* the cotangent is a node of kind ``cotangent``; ``np.eye`` a ``copy`` tensor (a dot
  joining its two letters), ``np.ones`` a ``cap``; a letter summed inside one operand of
  the forward ends in a ``cap`` too (labelled ``sum``: summing is contracting with ones);
* a letter with exactly two ends is one edge; a letter with one end in the forward's
  output is an open edge (``ends`` holds one node); a letter with three or more ends
  (a batch letter, a diagonal, a letter of three operands) gets a ``dot`` node (a
  hyper-edge) and one edge from each end to the dot.

:func:`svg` draws a diagram as inline SVG (no JavaScript, fonts or network) with a
deterministic layout: operands in a row, letters between them as arcs above, the
output's open edges (or the cotangent that fills them) below, every letter's colour
from :mod:`einsum_magic.views.colours` through CSS variables, so JupyterLab's light and dark
themes both read. The same diagram gives the same bytes.

>>> from einsum_magic import derive
>>> f = forward(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
>>> [(e.letter, e.size, e.ends) for e in f.edges]
[('i', 2, ('op0',)), ('j', 3, ('op0', 'op1')), ('k', 4, ('op1',))]
>>> b = backward(derive("ij,jk->ik"), 0)
>>> [(n.id, n.kind, n.label) for n in b.nodes]
[('op0', 'slot', 'dL_dA'), ('op1', 'operand', 'B'), ('cot', 'cotangent', 'dL_dC')]
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from html import escape

from . import colours as _colours
from ..core.equation import spell

__all__ = ["Node", "Edge", "Diagram", "forward", "backward", "svg", "defined", "reused", "section"]


@dataclass(frozen=True)
class Node:
    """One node: ``kind`` is operand, slot, cotangent, copy, cap or dot."""

    id: str
    kind: str
    label: str
    subscripts: str = ""      # its letters in axis order (a dot's: its one letter)
    column: int = -1          # the operand's place in the row; -1 for the others
    attach: str = ""          # a copy tensor's or cap's node (drawn next to it)


@dataclass(frozen=True)
class Edge:
    """One edge of ``letter``: two node ids, or one for an open edge of the forward's output."""

    letter: str
    size: int | None
    ends: tuple[str, ...]

    @property
    def open(self) -> bool:
        return len(self.ends) == 1


@dataclass(frozen=True)
class Diagram:
    """A tensor network: nodes, edges, the letters in order, and what it computes."""

    title: str                # e.g. 'forward C' or 'dL_dA'
    equation: str             # the einsum it draws
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    letters: tuple[str, ...]  # every letter once, in order of first appearance
    output: str               # letters of the forward's open edges ('' in a gradient)
    columns: int              # how many operands the row holds

    def node(self, id: str) -> Node:
        return next(n for n in self.nodes if n.id == id)

    def kinds(self, kind: str) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.kind == kind)


#: Presentation attributes of every stroked shape: the stylesheet overrides them, and where
#: a sanitizer strips the stylesheet the lines and boxes still read (no black-filled nodes).
#: The edges share them through the group that holds them all (:data:`_EDGES`).
_PLAIN = ' fill="none" stroke="currentColor"'
_EDGES = f'<g class="eg-edges"{_PLAIN}>'
#: The group that holds a whole drawing: the diagrams' rules select from it (:data:`CSS`), so
#: that they reach the copy a ``<use>`` draws (:func:`reused`), whose only ancestors within
#: reach of a selector are its own.
_NET = '<g class="eg-net">'

def _sizes(d) -> dict:
    return d.sizes or {}


def _network(title, equation, terms, output, out_node, sizes, columns, extra=()) -> Diagram:
    """Nodes and edges of a network: ``terms`` are (Node, subscripts) with their letters;
    ``output`` ends at ``out_node`` (a slot) or, with ``out_node`` None, in open edges."""
    nodes = [n for n, _ in terms] + list(extra)
    ends: dict[str, list] = {}
    for node, subs in terms:
        for c in subs:
            ends.setdefault(c, []).append(node.id)
    for c in output:
        ends.setdefault(c, []).append(None if out_node is None else out_node)
    edges = []
    for c, where in ends.items():
        size = sizes.get(c)
        real = [w for w in where if w is not None]
        if len(where) == 1:                      # summed inside one operand: a cap
            cap = Node(f"sum:{c}", "cap", "sum", c, attach=real[0])
            nodes.append(cap)
            edges.append(Edge(c, size, (real[0], cap.id)))
        elif len(where) == 2 and len(set(where)) == 2:
            edges.append(Edge(c, size, tuple(real)))
        else:                                    # three or more ends, or twice on one node
            dot = Node(f"dot:{c}", "dot", c, c)
            nodes.append(dot)
            edges += [Edge(c, size, (w, dot.id) if w is not None else (dot.id,)) for w in where]
    return Diagram(title, equation, tuple(nodes), tuple(edges), tuple(ends), output if out_node is None
                   else "", columns)


def forward(d) -> Diagram:
    """The forward network of derivation ``d``: operands, open edges for the output's letters."""
    return _forward(d)


@functools.lru_cache(maxsize=256)
def _forward(d) -> Diagram:
    terms = [(Node(f"op{k}", "operand", name, subs, k), subs)
             for k, (name, subs) in enumerate(zip(d.names, d.inputs))]
    return _network(f"forward {d.output}", d.equation, terms, d.result, None, _sizes(d), len(terms))


def backward(d, k: int) -> Diagram:
    """The network of gradient ``k``: the forward with operand ``k`` an open slot, the
    cotangent in the output's place, ``np.eye`` as copy tensors and ``np.ones`` as caps."""
    return _backward(d, k)


@functools.lru_cache(maxsize=512)
def _backward(d, k: int) -> Diagram:
    g = d.grads[k]
    sizes = dict(_sizes(d))
    slot = Node(f"op{k}", "slot", g.target, g.output, k)
    terms = [(Node("cot", "cotangent", d.cotangent, d.result), d.result)]
    others = [m for m in range(len(d.names)) if m != k]
    terms += [(Node(f"op{m}", "operand", d.names[m], d.inputs[m], m), d.inputs[m]) for m in others]
    for j, a in enumerate(g.aux):
        kind = "copy" if a.kind == "eye" else "cap"
        terms.append((Node(f"aux{j}", kind, f"np.{a.kind}", a.subscripts, attach=slot.id),
                      a.subscripts))
        for c in a.subscripts:
            if c in sizes or a.letter not in sizes:
                continue
            sizes[c] = sizes[a.letter]
    terms.sort(key=lambda t: {"operand": 0, "cotangent": 1}.get(t[0].kind, 2))
    diagram = _network(g.target, g.equation, terms, g.output, slot.id, sizes, len(d.names),
                       extra=(slot,))
    order = {n.id: i for i, n in enumerate(diagram.nodes)}
    nodes = sorted(diagram.nodes, key=lambda n: (n.column if n.column >= 0 else len(order),
                                                 order[n.id]))
    return Diagram(diagram.title, diagram.equation, tuple(nodes), diagram.edges, diagram.letters,
                   diagram.output, diagram.columns)


# -- SVG ---------------------------------------------------------------------------------

GAP = 96            # between operand columns
MARGIN = 28
ROW_H = 34          # node height
OPEN_GAP = 50       # between the output's open edges
CHAR_W = 7.5        # width of one label character at the node font
ARC = 26            # height of an arc between neighbours, per extra column and per repeat
DOT_GAP = 48        # between hyper-edge dots that would share a place
DOWN = 96           # from the row to the output's open ends / the cotangent


def _fmt(x: float) -> str:
    return str(round(x))                        # whole pixels: short, and the same bytes


@functools.lru_cache(maxsize=4096)
def _width(n: Node) -> float:
    w = max(34.0, CHAR_W * max(len(n.label), 2) + 16, 12.0 * len(n.subscripts) + 12)
    if n.kind == "cotangent":                  # wide enough for every open edge it fills
        w = max(w, (len(n.subscripts) - 1) * OPEN_GAP + 24)
    return w


def svg(diagram: Diagram, colours: dict | None = None, axes=()) -> str:
    """The diagram as an inline ``<svg>``: nodes with their names, one label per letter
    (``letter=size``), each letter's edges in its colour (``colours``: palette indices,
    default in order of first appearance). ``axes`` are (letter, name) pairs: an einops
    call's axis names, shown in place of their letters.

    >>> from einsum_magic import derive
    >>> s = svg(forward(derive("ij,jk->ik")))
    >>> s.startswith("<svg") and s.count('class="eg-edge-label') == 3
    True
    """
    colours = _colours.assign(diagram.letters) if colours is None else colours
    return _svg(diagram, tuple(sorted(colours.items())), tuple(axes))


@functools.lru_cache(maxsize=512)
def _svg(diagram: Diagram, colours: tuple, axes: tuple = ()) -> str:
    colours, names = dict(colours), dict(axes)
    cols = max(diagram.columns, 1)
    row_w = (cols - 1) * GAP
    bottom = [c for c in diagram.output]
    cot = next((n for n in diagram.nodes if n.kind == "cotangent"), None)
    if cot is not None:
        bottom = list(cot.subscripts)
    span = max(len(bottom) - 1, 0) * OPEN_GAP
    inner = max(row_w + max(_width(n) for n in diagram.nodes if n.column >= 0) if cols else 0,
                span + 40, (_width(cot) if cot else 0) + 20, 120)
    # a copy tensor beside the first or last column, and its labels, need room
    by_id = {n.id: n for n in diagram.nodes}
    hosts_of_copies = {by_id[n.attach].column for n in diagram.nodes if n.kind == "copy"}
    left = 64 if 0 in hosts_of_copies else 0
    right = 64 if cols - 1 in hosts_of_copies else 0
    width = inner + 2 * MARGIN + left + right
    centre = MARGIN + left + inner / 2
    xs = {n.id: MARGIN + left + (inner - row_w) / 2 + n.column * GAP for n in diagram.nodes
          if n.column >= 0}

    # arcs between operands in the row: their heights decide the top margin
    pair_count: dict = {}
    arcs = {}
    top_need = 0.0
    for i, e in enumerate(diagram.edges):
        if len(e.ends) == 2 and all(by_id[x].column >= 0 for x in e.ends):
            a, b = sorted(e.ends, key=lambda x: by_id[x].column)
            rank = pair_count.get((a, b), 0)
            pair_count[(a, b)] = rank + 1
            h = ARC + ARC * (by_id[b].column - by_id[a].column - 1) * 0.8 + 16 * rank
            arcs[i] = h
            top_need = max(top_need, h)
    attached = [n for n in diagram.nodes if n.attach]
    dots = [n for n in diagram.nodes if n.kind == "dot"]
    upper_dots = [n for n in dots if _dot_level(diagram, n, by_id) == "up"]
    if attached:
        top_need = max(top_need, 64)
    if upper_dots:
        top_need = max(top_need, 44 + 24 * min(len(upper_dots) - 1, 2))
    row_y = MARGIN + top_need + 12 + ROW_H / 2
    bottom_y = row_y + (DOWN if bottom else 56)     # a 0-d cotangent joins no edge: closer
    height = bottom_y + (ROW_H + 26 if cot is not None else 34) + MARGIN / 2
    if cot is None and not diagram.output:       # nothing below the row (a 0-d output)
        height = row_y + ROW_H / 2 + MARGIN

    pos = {n: (x, row_y) for n, x in xs.items()}
    # the output's letters below, ordered by where their carriers stand (fewer crossings)
    hosts = {n.id: by_id[n.attach].column if n.attach else n.column for n in diagram.nodes}
    at = {c: [hosts[n.id] for n in diagram.nodes if c in n.subscripts and hosts[n.id] >= 0]
          for c in bottom}
    order = sorted(bottom, key=lambda c: (sum(at[c]) / len(at[c]) if at[c] else 0, bottom.index(c)))
    # under the operands that carry them, kept inside the picture
    means = [sum(at[c]) / len(at[c]) for c in bottom if at[c]]
    below = centre
    if means:
        half = max(span, _width(cot) if cot else 0) / 2 + 6
        below = MARGIN + left + (inner - row_w) / 2 + GAP * sum(means) / len(means)
        below = min(max(below, MARGIN + half), width - MARGIN - half)
    bottom_x = {c: below + (i - (len(bottom) - 1) / 2) * OPEN_GAP for i, c in enumerate(order)}
    if cot is not None:
        pos[cot.id] = (below, bottom_y + ROW_H / 2)
    # copy tensors and caps above the node they belong to
    groups: dict = {}
    for n in attached:
        groups.setdefault(n.attach, []).append(n)
    for host, members in groups.items():
        hx = pos[host][0]
        caps = [n for n in members if n.kind == "cap"]
        for i, n in enumerate(caps):                 # caps above their node
            pos[n.id] = (hx + (i - (len(caps) - 1) / 2) * 34, row_y - ROW_H / 2 - 40)
        copies = [n for n in members if n.kind == "copy"]
        sign = 1 if _arcs_beside(diagram, arcs, by_id, host) else -1
        for i, n in enumerate(copies):               # copy tensors above, the side with fewer arcs
            pos[n.id] = (hx + sign * (_width(by_id[host]) / 2 + 12 + 26 * i),
                         row_y - ROW_H / 2 - 34)
    # hyper-edge dots: between their ends, spread apart when several share a place
    places = []
    for n in dots:
        ends = [x for e in diagram.edges if n.id in e.ends for x in e.ends if x != n.id]
        opened = any(e.open for e in diagram.edges if e.ends == (n.id,))
        px = [pos[x][0] for x in ends if x in pos and x != "cot"]
        if opened or "cot" in ends:
            px.append(bottom_x[n.label])
        level = _dot_level(diagram, n, by_id)
        x = sum(px) / len(px) if px else centre
        copies = [pos[x][0] for x in ends if by_id[x].kind == "copy"]
        if copies and level == "down":           # beside the copy tensor, clear of its host
            x = max(copies) + 14
        places.append((n, round(x), level))
    for level in ("up", "down"):                 # at least DOT_GAP apart, centred as placed
        row = sorted(((x, i, n) for i, (n, x, lv) in enumerate(places) if lv == level),
                     key=lambda t: (t[0], t[1]))
        placed: list = []
        for x, _, n in row:
            placed.append(max(x, placed[-1] + DOT_GAP) if placed else x)
        shift = (sum(x for x, _, _ in row) - sum(placed)) / len(row) if row else 0
        for rank, ((_, _, n), x) in enumerate(zip(row, placed)):
            y = row_y + DOWN * 0.45 if level == "down" else row_y - ROW_H / 2 - 34 - 24 * (rank % 3)
            pos[n.id] = (x + shift, y)

    # labels centre on their point unless they say otherwise; the <title> names the picture
    out = [f'<svg class="eg-diagram" width="{_fmt(width)}" '
           f'height="{_fmt(height)}" viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" '
           'text-anchor="middle">',
           f"<title>{escape(diagram.title)}: {escape(diagram.equation)}</title>", _NET, _EDGES]
    labels = []
    labelled: set = set()
    side: dict = {}
    copy_labels: list = []

    used: dict = {}

    def port(node_id, towards_y, letter):
        """Where an edge of ``letter`` leaves node ``node_id`` (top or bottom, by its axis)."""
        n = by_id[node_id]
        x, y = pos[node_id]
        if n.kind in ("dot", "copy", "cap"):
            return x, y
        if n.kind == "cotangent":
            return bottom_x.get(letter, x), y - ROW_H / 2
        subs = n.subscripts or letter
        axes = [i for i, c in enumerate(subs) if c == letter] or [0]
        nth = used.get((node_id, letter), 0)     # a repeated letter: its next axis
        used[(node_id, letter)] = nth + 1
        i = axes[nth % len(axes)]
        w = _width(n) - 12
        px = x - w / 2 + w * (i + 0.5) / max(len(subs), 1)
        return px, (y - ROW_H / 2 if towards_y < y else y + ROW_H / 2)

    for i, e in enumerate(diagram.edges):
        cls = _colours.class_of(e.letter, colours).replace("eg-l", "eg-s")
        if e.open:
            x0, y0 = pos[e.ends[0]] if by_id[e.ends[0]].kind == "dot" else port(e.ends[0], bottom_y,
                                                                                  e.letter)
            x1, y1 = bottom_x[e.letter], bottom_y
            path = _curve(x0, y0, x1, y1)
            out.append(f'<path class="eg-edge eg-open {cls}" d="{path}"/>')
            out.append(f'<circle class="eg-end {cls}" cx="{_fmt(x1)}" cy="{_fmt(y1)}" r="3"/>')
            mid = (x1, y1 - 12)
        elif i in arcs:
            a, b = sorted(e.ends, key=lambda x: by_id[x].column)
            (x0, y0), (x1, y1) = port(a, 0, e.letter), port(b, 0, e.letter)
            h = arcs[i]
            path = (f"M{_fmt(x0)},{_fmt(y0)} C{_fmt(x0)},{_fmt(y0 - h * 1.33)} "
                    f"{_fmt(x1)},{_fmt(y1 - h * 1.33)} {_fmt(x1)},{_fmt(y1)}")
            out.append(f'<path class="eg-edge {cls}" d="{path}"/>')
            mid = ((x0 + x1) / 2, y0 - h)
        else:
            a, b = e.ends
            if by_id[a].kind in ("dot", "copy", "cap") and by_id[b].kind not in ("dot", "copy", "cap"):
                a, b = b, a
            pb = pos[b]
            x0, y0 = port(a, pb[1], e.letter)
            x1, y1 = port(b, y0, e.letter) if by_id[b].kind not in ("dot", "copy", "cap") else pb
            out.append(f'<path class="eg-edge {cls}" d="{_curve(x0, y0, x1, y1)}"/>')
            if by_id[b].kind == "cotangent":
                mid = (x1, y1 - 12)
            elif by_id[b].kind == "copy":            # beside the copy tensor, outwards
                right = x1 >= pos[by_id[b].attach][0]
                side[e.letter] = "start" if right else "end"
                rank = sum(1 for c in copy_labels if c == b)
                copy_labels.append(b)
                mid = (x1 + (9 if right else -9), y1 + 1 + 13 * rank)
            elif by_id[b].kind == "cap":             # the side with fewer arcs
                right = _arcs_beside(diagram, arcs, by_id, by_id[b].attach)
                side[e.letter] = "start" if right else "end"
                mid = ((x0 + x1) / 2 + (6 if right else -6), (y0 + y1) / 2 + 8)
            else:
                mid = ((x0 + x1) / 2, (y0 + y1) / 2)
        dot = f"dot:{e.letter}"
        if e.letter not in labelled and (dot not in by_id or dot in e.ends):
            labelled.add(e.letter)
            if dot in by_id:
                mid = (pos[dot][0] + 7, pos[dot][1] - 2)
                side[e.letter] = "start"
            size = "" if e.size is None else f"={e.size}"
            tcls = _colours.class_of(e.letter, colours)
            anchor = side.get(e.letter, "middle")
            anchor = "" if anchor == "middle" else f' text-anchor="{anchor}"'
            labels.append(f'<text class="eg-edge-label {tcls}" x="{_fmt(mid[0])}" '
                          f'y="{_fmt(mid[1] - 3)}"{anchor}>{escape(names.get(e.letter, spell(e.letter)))}'
                          f'<tspan class="eg-size">{escape(size)}</tspan></text>')
    out.append("</g>")
    for n in diagram.nodes:
        x, y = pos[n.id]
        nid = escape(n.id)
        if n.kind == "dot":
            cls = _colours.class_of(n.label, colours).replace("eg-l", "eg-f")
            out.append(f'<circle class="eg-node eg-dot {cls}" data-node="{nid}" cx="{_fmt(x)}" '
                       f'cy="{_fmt(y)}" r="4.5"/>')
        elif n.kind == "copy":
            out.append(f'<g class="eg-node eg-copy" data-node="{nid}"><circle cx="{_fmt(x)}" '
                       f'cy="{_fmt(y)}" r="6"/><text x="{_fmt(x)}" y="{_fmt(y - 10)}" '
                       'class="eg-small">eye</text></g>')
        elif n.kind == "cap":
            out.append(f'<g class="eg-node eg-cap" data-node="{nid}"><path{_PLAIN} '
                       f'd="M{_fmt(x - 9)},{_fmt(y)} H{_fmt(x + 9)}"/>'
                       f'<text x="{_fmt(x)}" y="{_fmt(y - 6)}" '
                       f'class="eg-small">{escape(n.label)}</text></g>')
        else:
            w = _width(n)
            out.append(f'<g class="eg-node eg-{n.kind}" data-node="{nid}"><rect{_PLAIN} '
                       f'x="{_fmt(x - w / 2)}" y="{_fmt(y - ROW_H / 2)}" width="{_fmt(w)}" '
                       f'height="{ROW_H}" rx="6"/>'
                       f'<text x="{_fmt(x)}" y="{_fmt(y + 5)}">{escape(n.label)}</text></g>')
    if cot is not None and not bottom:
        out.append(f'<text class="eg-small eg-caption" x="{_fmt(centre)}" '
                   f'y="{_fmt(bottom_y + ROW_H + 12)}">0-d: scales every term'
                   "</text>")
    if cot is None and bottom:
        out.append(f'<text class="eg-small eg-caption" x="{_fmt(below)}" y="{_fmt(bottom_y + 18)}">'
                   f'open: {escape(diagram.title.split()[-1])}'
                   f"[{escape(','.join(names.get(c, spell(c)) for c in bottom))}]</text>")
    out += labels
    out.append("</g></svg>")
    return "".join(out)


def _arcs_beside(diagram: Diagram, arcs, by_id, host: str) -> bool:
    """Whether fewer arcs leave ``host`` to its right than to its left (ties: the right if
    nothing is to its left, for a first column)."""
    column = by_id[host].column
    sides = [by_id[x].column > column for i in arcs for x in diagram.edges[i].ends
             if host in diagram.edges[i].ends and x != host]
    if sides.count(True) == sides.count(False):
        return column == 0
    return sides.count(True) < sides.count(False)


def _dot_level(diagram: Diagram, dot: Node, by_id) -> str:
    """``down`` for a dot joined to the output (open edge or cotangent), else ``up``."""
    for e in diagram.edges:
        if dot.id in e.ends and (e.open or any(by_id[x].kind == "cotangent" for x in e.ends)):
            return "down"
    return "up"


def _curve(x0, y0, x1, y1) -> str:
    dy = (y1 - y0) * 0.5
    return (f"M{_fmt(x0)},{_fmt(y0)} C{_fmt(x0)},{_fmt(y0 + dy)} {_fmt(x1)},{_fmt(y1 - dy)} "
            f"{_fmt(x1)},{_fmt(y1)}")


#: The diagrams' rules. Those of a drawing's parts start at its group ``.eg-net`` rather than at
#: ``.einsum-grad``: a drawing shown again through ``<use>`` is a copy in a shadow tree, which
#: selectors reach only from ancestors inside the copy (the class is the package's own, so
#: nothing outside a display matches).
CSS = """
.einsum-grad .eg-figures { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.einsum-grad .eg-figures figure { margin: 0; }
.einsum-grad .eg-figures figcaption { font-size: var(--jp-ui-font-size1, 13px); }
.einsum-grad svg.eg-diagram { font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  overflow: visible; }
.eg-net text { fill: var(--jp-ui-font-color1, #212121); }
.eg-net .eg-edge { fill: none; stroke-width: 2.2;
  stroke: var(--jp-ui-font-color2, #616161); }
.eg-net .eg-dot { fill: var(--jp-ui-font-color2, #616161); }
.eg-net .eg-open { stroke-dasharray: 5 3; }
.eg-net .eg-end { fill: var(--jp-layout-color1, #fff); stroke-width: 2; }
.eg-net rect { fill: var(--jp-layout-color2, #eeeeee);
  stroke: var(--jp-ui-font-color2, #616161); stroke-width: 1.5; }
.eg-net .eg-slot rect { fill: none; stroke-dasharray: 4 3; }
.eg-net .eg-cotangent rect { stroke: var(--jp-ui-font-color1, #212121);
  stroke-width: 2.5; }
.eg-net .eg-copy circle { fill: var(--jp-ui-font-color1, #212121); }
.eg-net .eg-cap path { stroke: var(--jp-ui-font-color1, #212121);
  stroke-width: 3; }
.eg-net .eg-small { font-size: 10px; fill: var(--jp-ui-font-color2, #616161); }
.eg-net .eg-edge-label { font-weight: bold; paint-order: stroke;
  stroke: var(--jp-layout-color1, #fff); stroke-width: 3px; stroke-linejoin: round; }
.eg-net .eg-size { font-weight: normal; }
"""


@functools.lru_cache(maxsize=64)
def css(letters: tuple | None = None) -> str:
    """The diagrams' CSS: layout, nodes, and per palette colour a stroke (``eg-s*``) and fill
    (``eg-f*``) class; the colours themselves are :mod:`einsum_magic.views.colours`' variables.
    ``letters``: the palette indices a page paints (default: all)."""
    ks = range(len(_colours.PALETTE)) if letters is None else letters
    rules = [CSS.strip()]
    rules += [f".eg-net .eg-s{k} {{ stroke: var(--eg-l{k}); }}" for k in ks]
    rules += [f".eg-net .eg-f{k} {{ fill: var(--eg-l{k}); }}" for k in ks]
    rules += [f".eg-net text.eg-l{k} {{ fill: var(--eg-l{k}); }}" for k in ks]
    return "\n".join(rules)


def defined(drawn: str, ref: str) -> str:
    """An :func:`svg` drawing whose group is named ``ref``, for :func:`reused`.

    >>> defined('<svg><title>t</title><g class="eg-net"><path/></g></svg>', "x")
    '<svg><title>t</title><g class="eg-net" id="x"><path/></g></svg>'
    """
    return drawn.replace(_NET, f'<g class="eg-net" id="{escape(ref)}">', 1)


def reused(drawn: str, ref: str) -> str:
    """The same picture as the :func:`defined` drawing ``ref`` of ``drawn``, by reference.

    Its own ``<svg>`` (size, title) holds a ``<use>`` of the group: the drawing's bytes are
    in the page once, however often it shows. An id is a digest of the drawing, so two
    pages that define it draw the same picture, whichever the reference finds first.

    >>> reused('<svg width="9"><title>t</title><g class="eg-net"><path/></g></svg>', "x")
    '<svg width="9"><title>t</title><use href="#x"/></svg>'
    """
    head = drawn.split("</title>", 1)[0]
    return f'{head}</title><use href="#{escape(ref)}"/></svg>'


def section(d, axes=()) -> str:
    """The Diagram tab's HTML: the forward network, then each gradient's beside the forward
    (the forward's drawing :func:`reused` there).

    ``axes``: (letter, name) pairs of an einops call; its edges are labelled with the names.

    >>> from einsum_magic import derive
    >>> html = section(derive("ij,jk->ik"))
    >>> html.count("<svg"), html.count('data-node="cot"')
    (5, 2)
    """
    colours = _colours.of(d)
    fwd = forward(d)

    def figure(diagram, caption):
        return (f"<figure><figcaption>{caption} <code>{_colours.paint(diagram.equation, colours)}"
                f"</code></figcaption>{svg(diagram, colours, axes)}</figure>")

    forward_figure = figure(fwd, f"forward {escape(d.output)}")
    # the forward is drawn once; beside each gradient it is that drawing again, by reference
    drawn = svg(fwd, colours, axes)
    ref = "eg-" + hashlib.sha1(drawn.encode()).hexdigest()[:12]
    parts = ['<div class="eg-muted">Each operand is a node, each letter an edge (letter=size); '
             "the output's letters are open edges. The backward of an operand is the forward "
             "with that operand taken out (dashed slot) and the cotangent plugged into the open "
             "edges.</div>",
             f'<div class="eg-figures">{forward_figure.replace(drawn, defined(drawn, ref))}</div>']
    again = forward_figure.replace(drawn, reused(drawn, ref))
    for k, g in enumerate(d.grads):
        parts.append(f"<h4>{escape(g.target)}</h4>")
        parts.append(f'<div class="eg-figures">{again}'
                     f"{figure(backward(d, k), escape(g.target))}</div>")
    for t in d.totals:                           # one array at several nodes: the product rule
        parts.append(f'<div class="eg-muted">{escape(t.wrt)} is {len(t.parts)} nodes of the '
                     f"forward: its gradient is the sum of theirs, <code>{escape(t.code)}</code></div>")
    return "".join(parts)
