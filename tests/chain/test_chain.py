"""The backward of a whole cell (einsum_magic.chain): reading, backward rules, check, magic.

Every gradient is proven against ``jax.vjp`` of the cell's own source run with jax.numpy
in float64 (independently of the program the chain read), on fixed cells and on random
straight-line programs (hypothesis).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from einsum_magic.chain import cell_backward
from einsum_magic.chain.text.forward import BindError, bind, line
from einsum_magic.chain.text.reading import read

import mlp
from mlp import MLP_CELL

jax = pytest.importorskip("jax")
jnp = jax.numpy


def reference(source: str, arrays: dict, sinks, cotangents: dict) -> dict:
    """jax.vjp of ``source`` executed with ``np`` meaning jax.numpy: name → gradient."""
    names = list(arrays)
    with jax.enable_x64(True):
        def forward(*xs):
            ns = {"np": jnp, "jnp": jnp, "jax": jax, **dict(zip(names, xs))}
            exec(source, ns)
            return tuple(ns[s] for s in sinks)

        xs = [jnp.asarray(np.asarray(arrays[n], dtype=np.float64)) for n in names]
        _, pull = jax.vjp(forward, *xs)
        grads = pull(tuple(jnp.asarray(cotangents[s]) for s in sinks))
        return {n: np.asarray(g) for n, g in zip(names, grads)}


def assert_matches_jax(source: str, arrays: dict, seed: int = 0):
    b = cell_backward(source, arrays, {"np": np, "jax": jax, "jnp": jnp, **arrays}, check=False)
    rng = np.random.default_rng(seed)
    shapes = b.program.shapes
    cots = {s: rng.standard_normal(shapes[s]) for s in b.sinks}
    ours = b.run({b.cotangent(s): c for s, c in cots.items()})
    want = reference(source, {n: arrays[n] for n in b.inputs}, b.sinks, cots)
    # Round-off is relative to the backward's magnitude, not to one gradient's: a gradient
    # that is 0 in exact arithmetic (softmax's sum, say) comes out as ~1e-17 on both sides,
    # or as exactly 0 on one; where every gradient is 0, the cotangents' magnitude is the
    # magnitude of the terms that cancel.
    scale = max([1e-12] + [float(np.max(np.abs(g))) for g in want.values() if g.size]
                + [float(np.max(np.abs(c))) for c in cots.values() if np.size(c)])
    for name in b.inputs:
        got = ours[b.gradient(name)]
        assert got.shape == np.shape(arrays[name]), name
        np.testing.assert_allclose(got, want[name], rtol=0, atol=1e-9 * scale, err_msg=name)
    return b

RNG = np.random.default_rng(1)
MLP = mlp.arrays(RNG)


# -- reading ---------------------------------------------------------------------------

def test_reading_versions_a_rebound_name_and_names_inputs_and_sinks():
    p = read(MLP_CELL)
    assert p.inputs == ("X", "W1", "b1", "W2")
    assert p.sinks == ("P",)
    assert dict(p.renamed) == {"P_1": "P"}
    assert [s.kind for s in p.steps] == ["einsum", "add", "relu", "einsum", "max", "sub", "exp",
                                         "sum", "div"]


def test_an_input_the_cell_rebinds_keeps_its_name_and_the_versions_get_numbers():
    p = read("x = x * 2\nx = np.tanh(x)")
    assert p.inputs == ("x",)
    assert [s.target for s in p.steps] == ["x_1", "x_2"]


@pytest.mark.parametrize("cell, note", [
    ("B = np.linalg.inv(A) @ C",
     "np.linalg.inv on line 1 is not differentiated; the backward stops at its result"),
    ("Y = X[0] * 2", "the subscript X[0] on line 1 is not differentiated; the backward stops at "
                     "its result"),
    ("Y = np.sort(X)", "np.sort on line 1 is not differentiated; the backward stops at its result"),
    ("Y = X * 2\nfor i in range(3):\n    Y = Y + 1",
     "the for statement on line 2 is not straight-line code; the backward covers the lines "
     "before it"),
])
def test_an_unsupported_step_gives_one_line_naming_it(cell, note):
    assert read(cell).notes == (note,)


def test_the_backward_stops_at_an_unsupported_steps_result():
    arrays = {"A": RNG.normal(size=(3, 3)) + 3 * np.eye(3), "C": RNG.normal(size=(3, 2))}
    b = cell_backward("B = np.linalg.inv(A) @ C", arrays, {"np": np, **arrays})
    assert b.stops == ("t1",)
    assert "dL_dA = np.zeros_like(A)" in b.code          # no path through the inverse
    assert b.check.passed and b.notes[0].startswith("np.linalg.inv on line 1")


def test_a_users_array_named_like_a_module_alias_is_an_array():
    p = read("G = F @ nn\nnp2 = G * 2", {"F": np.ones((2, 2)), "nn": np.ones((2, 2))})
    assert p.inputs == ("F", "nn") and not p.notes


def test_constants_and_shapes_are_not_differentiated():
    p = read("A = Q @ K.T / np.sqrt(K.shape[-1]) + np.ones(3) * d", {"d": 2.0})
    assert p.constants == ("d",)
    assert p.inputs == ("Q", "K")
    kinds = {s.kind for s in p.steps}
    assert "stop" not in kinds and not p.notes


# -- products written without einsum ---------------------------------------------------

@pytest.mark.parametrize("cell, shapes, equation", [
    ("C = A @ B", [(2, 3), (3, 4)], "ij,jk->ik"),
    ("C = A @ B", [(5, 2, 3), (3, 4)], "...ij,...jk->...ik"),
    ("C = np.matmul(A, B)", [(3,), (3, 4)], "j,...jk->...k"),
    ("C = np.dot(A, B)", [(2, 3), (4, 3, 5)], "ij,kjl->ikl"),
    ("C = np.inner(A, B)", [(2, 3), (4, 3)], "ij,kj->ik"),
    ("C = np.outer(A, B)", [(2,), (3,)], "i,j->ij"),
    ("C = np.tensordot(A, B, axes=([1], [0]))", [(2, 3), (3, 4)], "ij,jl->il"),
    ("C = np.trace(A)", [(3, 3)], "ii->"),
    ("C = np.diagonal(A)", [(3, 3)], "ii->i"),
    ("C = np.swapaxes(A, 0, 2)", [(2, 3, 4)], "ijk->kji"),
    ("C = A.sum(axis=0)", [(2, 3)], "ij->j"),
    ("C = jnp.matmul(A, B)", [(2, 3), (3, 4)], "ij,jk->ik"),
    ("C = torch.matmul(A, B)", [(2, 3), (3, 4)], "ij,jk->ik"),
])
def test_products_are_bound_as_the_einsum_they_are(cell, shapes, equation):
    names = ["A", "B"][:len(shapes)]
    arrays = {n: RNG.normal(size=s) for n, s in zip(names, shapes)}
    p, _ = bind(read(cell), arrays)
    einsums = [s for s in p.steps if s.kind == "einsum"]
    assert einsums[-1].param == equation
    assert_matches_jax(cell.replace("torch.matmul", "np.matmul").replace("jnp.", "np."), arrays)


# -- backward and check ------------------------------------------------------------------

def test_the_mlp_backward_reads_as_the_issue_says_and_matches_jax():
    b = assert_matches_jax(MLP_CELL, MLP)
    code = b.code.splitlines()
    assert "dL_dZ = np.einsum('bk,jk->bj', dL_dS, W2)" in code
    assert "dL_dH = dL_dZ * (H > 0)" in code
    assert "dL_db1 = np.einsum('ab->b', dL_dH)" in code          # the bias summed back
    assert "dL_dS = dL_dS_1 + dL_dS_2" in code                   # S is used twice
    assert b.inputs == ("X", "W1", "b1", "W2") and b.sinks == ("P",)


def test_the_check_passes_on_the_cells_arrays_and_catches_a_wrong_line():
    import dataclasses

    from einsum_magic.chain.text.check import check_backward

    b = cell_backward(MLP_CELL, MLP, {"np": np, **MLP})
    assert b.check.passed and b.check.summary == (
        "cell check: not run (the forward as read, nothing ran): 4/4 input gradients match "
        "jax.vjp of the forward as read (float64)")
    lines = tuple(dataclasses.replace(x, code=x.code.replace("(H > 0)", "(H >= -1)"))
                  for x in b.lines)
    wrong = check_backward(dataclasses.replace(b, lines=lines))
    assert not wrong.passed and "wrong: dL_dX, dL_dW1, dL_db1" in wrong.summary


@pytest.mark.parametrize("cell, shapes", [
    ("Y = np.tanh(X) ** 3 - np.sin(X) / (2 + np.cos(X))", {"X": (3, 4)}),
    ("Y = np.sqrt(np.abs(X) + 1) * np.log(X ** 2 + 1)", {"X": (3, 4)}),
    ("Y = -X.mean(axis=0, keepdims=True) + X.T.reshape(4, 3).T", {"X": (3, 4)}),
    ("Y = (X * X).sum() + np.einsum('ij,ij->', X, X)", {"X": (3, 4)}),
    ("Y = X / c", {"X": (3, 4), "c": (1, 4)}),
    ("Y = np.max(X, axis=1)", {"X": (3, 4)}),
    ("Z = X @ np.transpose(X)\nY = Z.sum(axis=1) * np.diagonal(Z)", {"X": (3, 4)}),
])
def test_elementwise_steps_and_broadcasting_match_jax(cell, shapes):
    arrays = {n: RNG.normal(size=s) for n, s in shapes.items()}
    assert_matches_jax(cell, arrays)


def test_softmax_cross_entropy_and_attention_match_jax():
    Y = np.eye(3)[[0, 2, 1, 1]]
    arrays = {"S": RNG.normal(size=(4, 3)), "Y": Y}
    cell = ("P = jax.nn.softmax(S, axis=1)\nloss = -np.sum(Y * np.log(P)) / 4")
    b = assert_matches_jax(cell, arrays)
    assert b.sinks == ("loss",)
    arrays = {"Q": RNG.normal(size=(5, 4)), "K": RNG.normal(size=(6, 4)),
              "V": RNG.normal(size=(6, 3))}
    cell = ("A = Q @ K.T / np.sqrt(K.shape[-1])\nP = jax.nn.softmax(A, axis=-1)\nO = P @ V")
    assert_matches_jax(cell, arrays)


# -- random straight-line programs ---------------------------------------------------------

SIZES = {"b": 2, "i": 3, "j": 4}


@st.composite
def programs(draw):
    """(source, arrays): a random straight-line program of einsums and the supported steps."""
    values = {"A": "bi", "B": "ij", "C": "j", "D": "bj"}
    lines = []
    for n in range(draw(st.integers(2, 6))):
        names = sorted(values)
        x = draw(st.sampled_from(names))
        sx = values[x]
        kind = draw(st.sampled_from(["einsum", "einsum", "binary", "unary", "sum", "matmul",
                                     "softmax", "transpose"]))
        new = f"v{n}"
        if kind == "einsum":
            y = draw(st.sampled_from(names))
            letters = sorted(set(sx + values[y]))
            out = "".join(draw(st.permutations(letters))[:draw(st.integers(0, len(letters)))])
            expr, subs = f"np.einsum('{sx},{values[y]}->{out}', {x}, {y})", out
        elif kind == "binary":
            suffixes = [m for m in names if sx.endswith(values[m])]
            y = draw(st.sampled_from(suffixes))
            op = draw(st.sampled_from(["+", "-", "*", "/"]))
            right = f"(1.5 + {y} ** 2)" if op == "/" else y
            expr, subs = f"{x} {op} {right}", sx
        elif kind == "unary":
            f = draw(st.sampled_from(["np.tanh({})", "np.exp(np.tanh({}))", "np.sin({})",
                                      "np.cos({})", "np.maximum({}, 0)", "-{}", "{} ** 2",
                                      "np.sqrt({} ** 2 + 1)", "np.log(np.abs({}) + 1)",
                                      "2.5 * {}"]))
            expr, subs = f.format(x), sx
        elif kind == "sum" and sx:
            axis = draw(st.integers(0, len(sx) - 1))
            keep = draw(st.booleans())
            how = draw(st.sampled_from(["sum", "mean"]))
            expr = f"{x}.{how}(axis={axis}{', keepdims=True' if keep else ''})"
            if keep:                       # keepdims: broadcast back against x at once
                expr, subs = f"{x} - {expr}", sx
            else:
                subs = sx[:axis] + sx[axis + 1:]
        elif kind == "matmul" and len(sx) == 2:
            ys = [m for m in names if len(values[m]) == 2 and values[m][0] == sx[1]]
            if not ys:
                continue
            y = draw(st.sampled_from(ys))
            expr, subs = f"{x} @ {y}", sx[0] + values[y][1]
        elif kind == "softmax" and sx:
            expr, subs = f"jax.nn.softmax({x}, axis=-1)", sx
        elif kind == "transpose" and len(sx) == 2:
            expr, subs = f"{x}.T", sx[::-1]
        else:
            continue
        lines.append(f"{new} = {expr}")
        values[new] = subs
    if not lines:
        lines.append("v9 = np.einsum('bi,ij->bj', A, B) * D")
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    arrays = {n: rng.standard_normal(tuple(SIZES[c] for c in values[n])) for n in "ABCD"}
    return "\n".join(lines), arrays


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_every_input_gradient_matches_jax_vjp(case):
    source, arrays = case
    b = cell_backward(source, arrays, {"np": np, "jax": jax, **arrays}, check=False)
    used = {n: arrays[n] for n in b.inputs}
    assert_matches_jax(source, used)


def test_the_backward_code_runs_on_its_own_with_the_forward_values():
    b = cell_backward(MLP_CELL, MLP, {"np": np, **MLP}, check=False)
    ns = {"np": np, **MLP}
    exec(b.forward_code, ns)
    ns["dL_dP"] = np.ones((4, 2)) / 8
    exec(b.code, ns)
    for name in b.inputs:
        assert ns[f"dL_d{name}"].shape == MLP[name].shape


def test_a_cell_over_the_checks_budget_is_derived_and_says_why_it_is_not_checked():
    b = cell_backward(MLP_CELL, MLP, {"np": np, **MLP}, max_elements=50)
    assert b.check is None and b.check_note.startswith("not run: the cell's values hold ")
    assert b.code.startswith("dL_dP_1_2 = dL_dP / t")


def test_a_missing_input_is_a_bind_error_naming_it():
    with pytest.raises(BindError, match="W2 has no value"):
        bind(read(MLP_CELL), {k: v for k, v in MLP.items() if k != "W2"})


def test_forward_lines_render_for_numpy_and_jax():
    p, _ = bind(read("Y = jax.nn.softmax(X, axis=-1)"), {"X": np.ones((2, 3))})
    assert line(p.steps[0], "jnp") == ("t1 = jax.lax.stop_gradient(jnp.max(X, axis=(1,), "
                                       "keepdims=True))")


# -- the magic -------------------------------------------------------------------------------

@pytest.fixture
def ip():
    from IPython.testing import globalipapp

    from einsum_magic.magic import load_ipython_extension

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()
    load_ipython_extension(shell)
    shell.push({"np": np, "jax": jax, **MLP})
    yield shell
    for name in ("H", "Z", "S", "P", "C", "res", "t1"):
        shell.user_ns.pop(name, None)


def _run(shell, source):
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        result = shell.run_cell(source)
    return result, cap


# The magic's cell backward of a NumPy cell comes from the record of its run: its display,
# -o and the values drawn during the run are tested in tests/chain/test_numpy_record.py.


@pytest.mark.parametrize("cell, equation", [
    ("C = X @ W1", "ij,jk->ik"), ("C = np.trace(W1 @ W1.T)", None), ("C = X.T", "ij->ji"),
    ("C = np.tensordot(X, W1, axes=1)", "ij,jl->il"), ("C = X.sum(axis=0)", "ij->j")])
def test_a_product_alone_gets_its_einsums_display(ip, cell, equation):
    result, cap = _run(ip, "%%einsum_grad -o res\n" + cell)
    assert result.success, cap.stdout
    res = ip.user_ns["res"]
    if equation is None:      # two steps: the product's display (from the record), the backward
        product, bundle = [o.data for o in cap.outputs if "text/plain" in o.data]
        assert bundle["text/plain"].startswith("cell backward: cell check: PASS")
        assert res.backward.check.passed
        assert product["text/plain"].splitlines()[:2] == [
            "check PASS", "einsum_grad: W1 @ W1.T  (line 1) is the einsum 'ij,jk->ik'"]
        return
    (bundle,) = [o.data for o in cap.outputs if "text/plain" in o.data]
    (d,) = res.derivations
    assert d.equation == equation and res.backward is None
    verdict, call = bundle["text/plain"].splitlines()[:2]    # the verdict comes first
    assert verdict == "check PASS"
    assert call == f"einsum_grad: {cell.split(' = ')[1]}  (line 1) is the einsum {equation!r}"
    assert res.report.passed


def test_no_run_with_sizes_takes_arrays_of_those_sizes_for_missing_inputs(ip):
    result, cap = _run(ip, "%%einsum_grad --no-run --sizes p=2,q=3,r=4 -o res\n"
                           "U = np.einsum('pq,qr->pr', Fresh, Other)\nV = np.tanh(U)")
    assert result.success, cap.stdout
    b = ip.user_ns["res"].backward
    assert b.program.shapes["Fresh"] == (2, 3) and b.check.passed
    assert "seeded random arrays" in b.notes[-1]
    assert "U" not in ip.user_ns                   # --no-run: nothing ran


def test_without_a_run_the_cell_check_says_it_differentiated_the_forward_as_read(ip):
    """--no-run: nothing ran, so the check can only differentiate this reading of the source;
    its line says so, and is no PASS (a PASS is about what the cell computed)."""
    result, cap = _run(ip, "%%einsum_grad --no-run\nH = X @ W1\nZ = np.tanh(H)\nL = Z.sum()")
    assert result.success, cap.stdout
    shown = "\n".join(o.data.get("text/plain", "") for o in cap.outputs)
    (verdict,) = [x for x in shown.splitlines() if x.startswith("cell backward:")]
    assert verdict == ("cell backward: cell check: not run (the forward as read, nothing ran): "
                       "2/2 input gradients match jax.vjp of the forward as read (float64)")
    html = next(o.data["text/html"] for o in cap.outputs if "Cell backward" in
                o.data.get("text/html", ""))
    assert 'class="eg-muted">cell check: not run' in html and "PASS" not in html
    assert "H" not in ip.user_ns


# -- export ------------------------------------------------------------------------------------

ATTENTION = {"Q": RNG.normal(size=(5, 4)), "K": RNG.normal(size=(6, 4)),
             "V": RNG.normal(size=(6, 3))}
ATTENTION_CELL = ("A = Q @ K.T / np.sqrt(K.shape[-1])\nP = jax.nn.softmax(A, axis=-1)\n"
                  "O = np.einsum('qk,kd->qd', P, V)")


@pytest.mark.parametrize("cell, arrays", [(MLP_CELL, MLP), (ATTENTION_CELL, ATTENTION)])
@pytest.mark.parametrize("target", ["numpy", "jax", "torch"])
def test_the_exported_backward_gives_jax_vjps_gradients(cell, arrays, target):
    b = cell_backward(cell, arrays, {"np": np, "jax": jax, **arrays}, check=False)
    (sink,) = b.sinks
    cot = np.random.default_rng(3).standard_normal(b.program.shapes[sink])
    want = reference(cell, {n: arrays[n] for n in b.inputs}, b.sinks, {sink: cot})
    f = b.compile(target)
    xs = [arrays[n] for n in b.inputs]
    if target == "numpy":
        got = f(cot, *xs)
    elif target == "jax":
        with jax.enable_x64(True):
            _, pull = jax.vjp(f, *[jnp.asarray(x) for x in xs])
            got = [np.asarray(g) for g in pull(jnp.asarray(cot))]
    else:
        torch = pytest.importorskip("torch")
        ts = [torch.tensor(x, requires_grad=True) for x in xs]
        f(*ts).backward(torch.tensor(cot))
        got = [t.grad.numpy() for t in ts]
    for name, g in zip(b.inputs, got, strict=True):
        np.testing.assert_allclose(g, want[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_export_refuses_a_cell_with_a_step_that_is_not_differentiated():
    from einsum_magic import EinsumError

    arrays = {"A": np.eye(3) * 2, "C": np.ones((3, 2))}
    b = cell_backward("B = np.linalg.inv(A) @ C", arrays, {"np": np, **arrays}, check=False)
    with pytest.raises(EinsumError, match="not differentiated"):
        b.export("jax")


# -- torch and jax.numpy namesakes -------------------------------------------------------------

TORCH_CELL = """H = torch.relu(torch.matmul(X, W1) + b1)
S = H @ W2
P = torch.softmax(S, dim=1)
L = (P * torch.log(P)).sum(dim=0, keepdim=True) + torch.transpose(S, 0, 1).mean(dim=1) + S.t().sum()"""


def test_a_torch_cell_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    tensors = {k: torch.tensor(v) for k, v in MLP.items()}
    b = cell_backward(TORCH_CELL, tensors, {"torch": torch, **tensors})
    assert not b.notes and b.check.passed, b.check_note
    leaves = {k: t.clone().requires_grad_(True) for k, t in tensors.items()}
    ns = {"torch": torch, **leaves}
    exec(TORCH_CELL, ns)
    (sink,) = b.sinks
    cot = np.random.default_rng(5).standard_normal(tuple(ns["L"].shape))
    ns["L"].backward(torch.tensor(cot))
    ours = b.run({b.cotangent(sink): cot})
    for name, t in leaves.items():
        np.testing.assert_allclose(ours[b.gradient(name)], t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_jax_numpy_namesakes_are_read_like_numpys():
    cell = ("H = jax.nn.relu(jnp.dot(X, W1) + b1)\nS = jnp.matmul(H, W2)\n"
            "L = jnp.sum(jnp.tanh(S), axis=1) + jnp.mean(jnp.exp(-S)) + jnp.swapaxes(S, 0, 1)[0]")
    p = read(cell, {"jnp": jnp, "jax": jax})
    assert [s.kind for s in p.steps][:6] == ["dot", "add", "relu", "matmul", "tanh", "sum"]
    assert p.notes == ("the subscript jnp.swapaxes(S, 0, 1)[0] on line 3 is not differentiated; "
                       "the backward stops at its result",)


def test_values_drawn_from_the_users_generator_are_not_drawn_under_no_run(ip):
    """--no-run reads the text: a draw is not differentiated and not made (the run's draws:
    tests/chain/test_numpy_record.py)."""
    ip.push({"rng2": np.random.default_rng(5)})
    before = ip.user_ns["rng2"].bit_generator.state
    result, cap = _run(ip, "%%einsum_grad --no-run\nx = rng2.normal(size=(3,))\n"
                           "y = np.tanh(np.einsum('ij,j->i', np.ones((3, 3)), x))")
    assert result.success
    assert cap.stdout == ("einsum_grad: cell backward: not derived: line 1: rng2.normal is not "
                          "differentiated and its value is not known without running the cell\n")
    assert ip.user_ns["rng2"].bit_generator.state == before
    for name in ("rng2", "x", "y"):
        ip.user_ns.pop(name, None)


def test_a_builtin_called_on_an_array_is_no_input_of_the_cell(ip):
    result, cap = _run(ip, "%%einsum_grad -o res\ndata = np.arange(12.0).reshape(4, 3)\n"
                           "Xc = data - data.mean(0)\n"
                           "cov = np.einsum('ni,nj->ij', Xc, Xc) / (len(data) - 1)")
    assert result.success and "not derived" not in cap.stdout, cap.stdout
    b = ip.user_ns["res"].backward
    assert "len" not in b.inputs and b.check.passed
    for name in ("data", "Xc", "cov"):
        ip.user_ns.pop(name, None)


def test_the_display_honours_the_text_view_as_the_per_einsum_display_does():
    from einsum_magic.views import chain as view

    b = cell_backward("Z = X * 2", {"X": np.ones(3)}, check=False)
    assert set(view.CellBackwardDisplay(b, view="text")._repr_mimebundle_()) == {"text/plain"}
    for shown in ("html", "auto", "widget", "progress"):
        bundle = view.CellBackwardDisplay(b, view=shown)._repr_mimebundle_()
        assert bundle == {"text/plain": view.text(b), "text/html": view.html(b)}
    assert set(view.CellBackwardDisplay(b)._repr_mimebundle_()) == {"text/plain", "text/html"}
