"""Sizes you can drag: which letters get a slider, the analysis at new sizes, and the live widget's
update (called directly, as the frontend's slider change would)."""

from __future__ import annotations

import re

import pytest
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output

from einsum_magic import derive
from einsum_magic.cell.analysis import Analysis
from einsum_magic.cell.calls import equation_call
from einsum_magic.compute.cost import cost
from einsum_magic.magic import load_ipython_extension
from einsum_magic.views.sliders import free, resized, view, widget


def analysis(eq, shapes, fixed=()):
    return Analysis(equation_call(eq), derive(eq, shapes=shapes), "defaults", fixed=fixed)


def test_free_letters_leave_out_fixed_and_broadcast_ones():
    assert [x.letter for x in free(analysis("ij,jk->ik", ((2, 3), (3, 4)), fixed=("i", "j")))] == ["k"]
    a = analysis("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4)))
    assert [x.letter for x in free(a)] == ["i", "j", "a", "k"]     # 'l' is a size-1 broadcast
    assert free(Analysis(equation_call("ij->"), derive("ij->"), "defaults")) == ()


def test_resized_rebinds_shapes_costs_and_gradients():
    a = analysis("ij,jk->ik", ((2, 3), (3, 4)))
    b = resized(a, {"j": 10, "k": 6})
    d = b.derivation
    assert d.shapes == ((2, 10), (10, 6)) and d.output_shape == (2, 6)
    assert [g.shape for g in d.grads] == [(2, 10), (10, 6)]
    assert cost(d).forward.naive_flops == cost(derive("ij,jk->ik", shapes=d.shapes)).forward.naive_flops
    assert cost(d).forward.naive_flops != cost(a.derivation).forward.naive_flops
    assert "sliders" in b.sizes_from and b.call is a.call
    assert resized(a, {"j": 3}) is a
    with pytest.raises(ValueError, match="'j' must be at least 1"):
        resized(a, {"j": 0})


def test_resized_keeps_a_diagonal_square():
    d = resized(analysis("iij,jk->ik", ((2, 2, 3), (3, 4))), {"i": 5}).derivation
    assert d.shapes == ((5, 5, 3), (3, 4))


def test_view_shows_the_new_sizes_in_table_flops_and_diagram():
    a = resized(analysis("ij,jk->ik", ((2, 3), (3, 4))), {"j": 11})
    html = view(a)
    assert "(2, 11)" in html                                           # the Shapes table
    assert f"forward {cost(a.derivation).forward.naive_flops} FLOPs" in html.replace(",", "")
    assert re.search(r'>j</span><tspan class="eg-size">=11</tspan>|>j<tspan class="eg-size">=11<', html)


def test_widget_update_rewrites_the_view_without_rerunning():
    pytest.importorskip("ipywidgets")
    a = analysis("ij,jk->ik", ((2, 3), (3, 4)), fixed=("i",))
    box = widget(a)
    sliders = box._einsum_sliders
    assert sorted(sliders) == ["j", "k"] and sliders["j"].value == 3
    before = box._einsum_view.value
    sliders["k"].value = 9                           # what the frontend's drag sends
    after = box._einsum_view.value
    assert after != before and "(3, 9)" in after and '="eg-size">=9<' in after
    sliders["j"].value = 5
    assert "(2, 5)" in box._einsum_view.value and "(5, 9)" in box._einsum_view.value
    box.close()


def test_no_widget_when_the_arrays_fix_every_letter():
    assert widget(analysis("ij,jk->ik", ((2, 3), (3, 4)), fixed=("i", "j", "k"))) is None


@pytest.fixture
def ip():
    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.run_cell("import numpy as np\nA = np.ones((2, 3))\nB = np.ones((3, 4))")
    yield shell
    for name in ("C", "res"):
        shell.user_ns.pop(name, None)


def test_magic_records_the_letters_its_arrays_fix(ip):
    with capture_output():
        ip.run_cell("%%einsum_grad --no-check -o res\nC = np.einsum('ij,jk->ik', A, B)")
    assert ip.user_ns["res"].analyses[0].fixed == ("i", "j", "k")
    with capture_output():
        ip.run_cell("%%einsum_grad --no-check --no-run -o res\nC = np.einsum('ij,jk->ik', A, B)")
    assert ip.user_ns["res"].analyses[0].fixed == ()
    with capture_output():
        ip.run_cell("%%einsum_grad --no-check -o res\nC = np.einsum('ij,jk->ik', A, np.ones((3, 5)))")
    assert ip.user_ns["res"].analyses[0].fixed == ("i", "j", "k")   # the run saw np.ones too
