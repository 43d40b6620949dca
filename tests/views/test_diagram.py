"""The diagram model (nodes, edges, open edges, copy tensors, caps, hyper-edge dots) and its SVG.

Each hard case of the generalized swap has a test on the model; the SVG tests check what a
reader counts on (one node per operand, one label per letter, every letter's colour, the
same bytes for the same derivation) and that it parses as XML.
"""

from __future__ import annotations

import re
import string
import xml.etree.ElementTree as ET
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from einsum_magic import derive
from einsum_magic.views.colours import of
from einsum_magic.views.diagram import backward, forward, section, svg
from test_properties import einsums, instance

SVG = ""                      # inline SVG in HTML: no namespace (and no address) needed


def edges(diagram):
    return sorted((e.letter, e.size, e.ends) for e in diagram.edges)


def kinds(diagram):
    return Counter(n.kind for n in diagram.nodes)


def test_matmul_forward_and_backward():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    f = forward(d)
    assert edges(f) == [("i", 2, ("op0",)), ("j", 3, ("op0", "op1")), ("k", 4, ("op1",))]
    assert [e.open for e in f.edges] == [True, False, True]
    assert f.output == "ik" and kinds(f) == {"operand": 2}
    b = backward(d, 0)
    assert kinds(b) == {"slot": 1, "operand": 1, "cotangent": 1}
    assert b.node("op0").label == "dL_dA" and b.node("op0").subscripts == "ij"
    # the cotangent fills the output's open edges; the slot's edges are the gradient's axes
    assert edges(b) == [("i", 2, ("cot", "op0")), ("j", 3, ("op1", "op0")), ("k", 4, ("op1", "cot"))]
    assert not any(e.open for e in b.edges)


def test_trace_is_a_dot_forward_and_a_copy_tensor_backward():
    d = derive("ii->", shapes=((3, 3),))
    f = forward(d)
    assert kinds(f) == {"operand": 1, "dot": 1}
    assert edges(f) == [("i", 3, ("op0", "dot:i"))] * 2 and f.output == ""
    b = backward(d, 0)
    assert kinds(b) == {"slot": 1, "cotangent": 1, "copy": 1}
    assert b.node("cot").subscripts == ""            # 0-d cotangent: no edge
    assert edges(b) == [("i", 3, ("aux0", "op0")), ("j", 3, ("aux0", "op0"))]


def test_diagonal_joins_operand_output_at_a_dot():
    d = derive("ii->i", shapes=((3, 3),))
    f = forward(d)
    assert edges(f) == [("i", 3, ("dot:i",)), ("i", 3, ("op0", "dot:i")), ("i", 3, ("op0", "dot:i"))]
    b = backward(d, 0)
    assert kinds(b) == {"slot": 1, "cotangent": 1, "copy": 1, "dot": 1}
    assert edges(b) == [("i", 3, ("aux0", "dot:i")), ("i", 3, ("cot", "dot:i")),
                        ("i", 3, ("op0", "dot:i")), ("j", 3, ("aux0", "op0"))]


def test_letter_summed_in_one_operand_ends_in_a_cap():
    d = derive("ij->i", shapes=((2, 3),))
    f = forward(d)
    assert kinds(f) == {"operand": 1, "cap": 1} and f.node("sum:j").label == "sum"
    assert edges(f) == [("i", 2, ("op0",)), ("j", 3, ("op0", "sum:j"))]
    b = backward(d, 0)
    cap = b.kinds("cap")[0]
    assert cap.label == "np.ones" and cap.attach == "op0"
    assert edges(b) == [("i", 2, ("cot", "op0")), ("j", 3, ("aux0", "op0"))]


def test_ellipsis_with_size_one_broadcasting():
    d = derive("...ij,...jk->...ik", shapes=((1, 2, 3), (5, 3, 4)))
    assert d.inputs == ("lij", "ajk")                # 'l': A's size-1 axis, 'a': the '...'
    f = forward(d)
    assert edges(f) == [("a", 5, ("op1",)), ("i", 2, ("op0",)), ("j", 3, ("op0", "op1")),
                        ("k", 4, ("op1",)), ("l", 1, ("op0", "sum:l"))]
    assert f.output == "aik"
    a = backward(d, 0)
    assert edges(a) == [("a", 5, ("op1", "cot")), ("i", 2, ("cot", "op0")), ("j", 3, ("op1", "op0")),
                        ("k", 4, ("op1", "cot")), ("l", 1, ("aux0", "op0"))]
    assert a.node("aux0").kind == "cap"
    b = backward(d, 1)
    assert kinds(b) == {"operand": 1, "slot": 1, "cotangent": 1, "cap": 1}
    assert ("a", 5, ("cot", "op1")) in edges(b) and ("l", 1, ("op0", "sum:l")) in edges(b)


def test_same_array_twice_is_two_nodes():
    d = derive("ij,ij->", names=("A", "A"), shapes=((2, 3), (2, 3)))
    f = forward(d)
    assert [(n.id, n.label) for n in f.nodes] == [("op0", "A"), ("op1", "A")]
    assert edges(f) == [("i", 2, ("op0", "op1")), ("j", 3, ("op0", "op1"))]
    assert "<code>dL_dA = dL_dA_1 + dL_dA_2</code>" in section(d)
    for k, target in enumerate(("dL_dA_1", "dL_dA_2")):
        b = backward(d, k)
        assert b.node(f"op{k}").kind == "slot" and b.node(f"op{k}").label == target
        assert b.node(f"op{1 - k}").kind == "operand"


def test_zero_d_output_has_no_open_edge():
    d = derive("i,i->", shapes=((3,), (3,)))
    f = forward(d)
    assert f.output == "" and not any(e.open for e in f.edges)
    assert edges(f) == [("i", 3, ("op0", "op1"))]
    assert backward(d, 0).node("cot").subscripts == ""


def test_ten_operands_chain():
    letters = string.ascii_lowercase[:11]
    eq = ",".join(letters[k:k + 2] for k in range(10)) + f"->{letters[0]}{letters[10]}"
    d = derive(eq)
    f = forward(d)
    assert len(f.kinds("operand")) == 10 and f.columns == 10
    assert len(f.edges) == 11 and sum(e.open for e in f.edges) == 2
    for k in (0, 5, 9):
        b = backward(d, k)
        assert len(b.kinds("operand")) == 9 and len(b.kinds("slot")) == 1
        assert not any(e.open for e in b.edges)
    s = svg(f)
    ET.fromstring(s)
    assert s.count('class="eg-node eg-operand"') == 10


def test_batch_letter_is_a_hyper_edge():
    d = derive("bij,bjk->bik")
    f = forward(d)
    assert f.kinds("dot")[0].label == "b"
    assert sorted(e.ends for e in f.edges if e.letter == "b") == [("dot:b",), ("op0", "dot:b"),
                                                                  ("op1", "dot:b")]
    assert sorted(e.ends for e in f.edges if e.letter == "i") == [("op0",)]


def test_letter_of_three_operands_contracted_is_a_dot():
    f = forward(derive("ij,ij,ij->"))
    assert len(f.kinds("dot")) == 2 and f.output == ""


@pytest.mark.parametrize("eq, shapes, names", [
    ("ij,jk->ik", ((2, 3), (3, 4)), None),
    ("ii->i", ((3, 3),), None),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4)), None),
    ("ij,ij->", ((2, 3), (2, 3)), ("A", "A")),
    ("bhqk,bhkd->bhqd", None, None),
    ("abcdefghijkl->", None, None),
])
def test_svg_has_one_node_per_operand_and_one_label_per_letter(eq, shapes, names):
    d = derive(eq, names=names, shapes=shapes)
    colours = of(d)
    for k, diagram in [(None, forward(d))] + [(k, backward(d, k)) for k in range(len(d.names))]:
        s = svg(diagram, colours)
        root = ET.fromstring(s)
        assert root.tag == f"{SVG}svg"
        groups = [g for g in root.iter() if "eg-node" in g.get("class", "")]
        kinds_ = Counter(g.get("class").split()[1] for g in groups)
        assert kinds_["eg-operand"] == len(d.names) - (k is not None)
        assert kinds_["eg-slot"] == (k is not None)
        labels = [t for t in root.iter(f"{SVG}text") if "eg-edge-label" in t.get("class", "")]
        assert sorted(t.text for t in labels) == sorted(diagram.letters)
        for t in labels:                 # each letter's label carries the letter's colour
            assert f"eg-l{colours[t.text]}" in t.get("class").split()
        if shapes is not None:           # 'letter=size', the size of that letter's edges
            size = {e.letter: e.size for e in diagram.edges}
            assert {t.text: "".join(t.itertext()) for t in labels} == {
                c: f"{c}={size[c]}" for c in diagram.letters}


def test_svg_is_deterministic_and_sized_by_the_shapes():
    a = section(derive("bij,bjk->bik", shapes=((2, 3, 4), (2, 4, 5))))
    b = section(derive("bij,bjk->bik", shapes=((2, 3, 4), (2, 4, 5))))
    assert a == b and "j=4" not in a          # the size is in its own tspan
    assert '>j<tspan class="eg-size">=4</tspan>' in a
    other = section(derive("bij,bjk->bik", shapes=((2, 3, 7), (2, 7, 5))))
    assert '>j<tspan class="eg-size">=7</tspan>' in other


def test_section_shows_forward_beside_every_backward():
    d = derive("ij,jk,kl->il")
    s = section(d)
    assert s.count("<svg") == 1 + 2 * 3 and s.count('data-node="cot"') == 3
    assert s.count("<figure>") == 7


def _label_boxes(s: str):
    """(x0, y0, x1, y1) of every edge label: 7.5 px a character, 12 px high, as drawn."""
    boxes = []
    root = ET.fromstring(s)
    for t in root.iter(f"{SVG}text"):
        if "eg-edge-label" not in t.get("class", ""):
            continue
        x, y, width = float(t.get("x")), float(t.get("y")), 7.5 * len("".join(t.itertext()))
        anchor = t.get("text-anchor") or root.get("text-anchor")     # as inherited from the <svg>
        x0 = {"start": x, "middle": x - width / 2, "end": x - width}[anchor]
        boxes.append((x0, y - 11, x0 + width, y + 1, t.text))
    return boxes


def _node_boxes(s: str):
    return [(float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
             float(r.get("y")) + float(r.get("height"))) for r in ET.fromstring(s).iter(f"{SVG}rect")]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


READABLE = [
    ("ij,jk->ik", ((2, 3), (3, 4))),
    ("bhqk,bhkd->bhqd", ((2, 4, 5, 6), (2, 4, 6, 3))),
    ("ii->i", ((3, 3),)),
    ("iij,jk->ik", ((3, 3, 4), (4, 5))),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))),
    ("ab,bc,cd,de,ef,fg,gh,hi->ai", tuple((n, n + 1) for n in range(2, 10))),   # 8 operands
    ("abc,cde,efg,ghi,ijk,kla->bdfhjl", None),                               # 12 letters
]


@pytest.mark.parametrize("eq, shapes", READABLE)
def test_no_two_labels_or_nodes_overlap(eq, shapes):
    d = derive(eq, shapes=shapes)
    for diagram in [forward(d)] + [backward(d, k) for k in range(len(d.names))]:
        s = svg(diagram, of(d))
        labels, nodes = _label_boxes(s), _node_boxes(s)
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                assert not _overlap(a, b), (diagram.title, a, b)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1:]:
                assert not _overlap(a, b), (diagram.title, a, b)


def test_same_bytes_after_every_cache_is_cleared():
    from einsum_magic.views import colours, diagram as module

    d = derive("bij,bjk->bik", shapes=((2, 3, 4), (2, 4, 5)))
    first = section(d)
    for cached in (module._forward, module._backward, module._svg, module._width, colours._of):
        cached.cache_clear()
    assert section(derive("bij,bjk->bik", shapes=((2, 3, 4), (2, 4, 5)))) == first


@pytest.mark.parametrize("eq, shapes", READABLE + [("ijj,jk->ik", None), ("ij,jkk->ik", None)])
def test_everything_drawn_inside_the_picture(eq, shapes):
    d = derive(eq, shapes=shapes)
    for diagram in [forward(d)] + [backward(d, k) for k in range(len(d.names))]:
        s = svg(diagram, of(d))
        root = ET.fromstring(s)
        width, height = float(root.get("width")), float(root.get("height"))
        for box in _label_boxes(s) + _node_boxes(s):
            assert 0 <= box[0] and box[2] <= width and 0 <= box[1] and box[3] <= height, (
                diagram.title, box, width, height)


def test_unbound_ellipsis_is_drawn_as_dots_in_a_neutral_colour():
    d = derive("...ij,...jk->...ik")             # no shapes: '...' stays one hyper-edge
    s = svg(forward(d), of(d))
    root = ET.fromstring(s)
    labels = ["".join(t.itertext()) for t in root.iter("text")
              if "eg-edge-label" in t.get("class", "")]
    assert sorted(labels) == ["...", "i", "j", "k"]
    assert "open: C[...,i,k]" in s


def test_einops_axes_label_the_edges_by_name():
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import find_calls
    from einsum_magic.views.html import diagram as tab

    call = find_calls('Y = einops.einsum(x, w, "batch d, d out -> batch out")').calls[0]
    d = derive(call.equation, call.names, call.output, shapes=((8, 3), (3, 5)))
    s = tab(Analysis(call, d, "sizes from your arrays"))
    labels = re.findall(r'class="eg-edge-label[^"]*"[^>]*>([^<]+)<tspan class="eg-size">=(\d+)<', s)
    assert sorted(set(labels)) == [("batch", "8"), ("d", "3"), ("out", "5")]


# -- the pictures are the right networks: contracting them gives the forward and the gradients --

def _contract(diagram, arrays: dict, shapes: dict):
    """Contract a diagram as the tensor network it draws, one index per edge (opt_einsum).

    ``arrays`` holds the tensor of each operand and cotangent node; copy tensors and hyper-edge
    dots are Kronecker deltas, caps vectors of ones. The result's axes are the forward's open
    edges in output order, or a gradient's slot axes.
    """
    import numpy as np
    import opt_einsum

    label = {i: opt_einsum.get_symbol(i) for i in range(len(diagram.edges))}
    touching = {}
    for i, e in enumerate(diagram.edges):
        for end in dict.fromkeys(e.ends):
            touching.setdefault((end, e.letter), []).append(i)

    def axes(node):
        seen: dict = {}
        out = []
        for c in node.subscripts:
            out.append(label[touching[(node.id, c)][seen.get(c, 0)]])
            seen[c] = seen.get(c, 0) + 1
        return "".join(out)

    terms, tensors, result = [], [], ""
    for n in diagram.nodes:
        if n.kind in ("operand", "cotangent"):
            terms.append(axes(n))
            tensors.append(arrays[n.id])
        elif n.kind == "slot":
            result = axes(n)
        elif n.kind in ("copy", "cap"):
            size = shapes[n.subscripts[0]]
            terms.append(axes(n))
            tensors.append(np.eye(size) if n.kind == "copy" else np.ones(size))
        elif n.kind == "dot":
            ends = [i for i, e in enumerate(diagram.edges) if n.id in e.ends]
            size = shapes[n.label]
            delta = np.zeros((size,) * len(ends))
            delta[(np.arange(size),) * len(ends)] = 1
            terms.append("".join(label[i] for i in ends))
            tensors.append(delta)
    if diagram.output:
        opened = {e.letter: label[i] for i, e in enumerate(diagram.edges) if e.open}
        result = "".join(opened[c] for c in diagram.output)
    return opt_einsum.contract(",".join(terms) + "->" + result, *tensors)


@settings(max_examples=120, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=einsums())
def test_every_diagram_contracts_to_what_it_draws(case):
    import numpy as np

    d, ops, out, cotangent = instance(case, 0)
    shapes = dict(d.sizes)
    for g in d.grads:                                  # a repeat's fresh letter: its letter's size
        for a in g.aux:
            for c in a.subscripts:
                shapes.setdefault(c, shapes[a.letter])
    arrays = {f"op{k}": x for k, x in enumerate(ops)}
    np.testing.assert_allclose(_contract(forward(d), arrays, shapes), out, atol=1e-9)
    grads = d.vjp(cotangent, *ops)
    for k, want in enumerate(grads):
        picture = backward(d, k)
        got = _contract(picture, {**arrays, "cot": cotangent}, shapes)
        np.testing.assert_allclose(got, want, atol=1e-9, err_msg=f"{d.equation}: {picture.title}")


def test_without_any_stylesheet_boxes_and_edges_are_outlines_not_black_shapes():
    """A sanitizer may strip the <style>: the SVG's own attributes must still draw it readably."""
    d = derive("ij,jk,k->i", shapes=((2, 3), (3, 4), (4,)))
    root = ET.fromstring(svg(backward(d, 0)))
    parent = {child: e for e in root.iter() for child in e}

    def attribute(e, name):              # a presentation attribute, as SVG inherits it
        while e is not None and e.get(name) is None:
            e = parent.get(e)
        return None if e is None else e.get(name)

    shapes = [e for e in root.iter() if e.tag in (f"{SVG}rect", f"{SVG}path")]
    assert len(shapes) > 5 and all(attribute(e, "fill") == "none"
                                   and attribute(e, "stroke") == "currentColor" for e in shapes)
    texts = list(root.iter(f"{SVG}text"))   # text is never drawn as outlines
    assert texts and all(attribute(t, "fill") is None and attribute(t, "stroke") is None
                         for t in texts)
