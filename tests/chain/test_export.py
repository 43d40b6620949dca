"""The recorded cell backward exported to NumPy, JAX and PyTorch (einsum_magic.chain.export).

Cells of tests/chain/passes.py (torch and NumPy, from public code) run under the magic as a
user runs them (tests/chain/test_public_passes.py's sessions); each one's ``r.backward`` is
exported to every target, the source is run, and its gradients must equal
``r.backward.gradients()`` and the framework's own autodiff of the cell (torch.autograd, or
the case's torch re-writing of a NumPy cell), computed by the test independently. The JAX
function must also compile with ``jax.jit`` and give the same.
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

import test_public_passes as passes_run  # noqa: E402  (its sessions and references)

from einsum_magic import EinsumError  # noqa: E402
from einsum_magic.chain.export import arguments, compiled, export  # noqa: E402

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

CASES = ["makemore4_backprop_ninja", "nanogpt_mlp_gelu", "makemore3_batchnorm_inline",
         "cs231n_case_study_two_layer", "cs231n_softmax_loss_vectorized",
         "cs231n_rnn_step_forward", "cs231n_lstm_step_forward"]
#: Cells whose backward indexes with a boolean mask: a gradient gathered through it has a
#: shape that depends on the mask's values, which jax.jit cannot trace (it runs eagerly).
MASKED = {"cs231n_lstm_step_forward"}
PARAMS = [(name, target, jit) for name in CASES
          for target, jit in (("numpy", False), ("jax", False), ("jax", True), ("torch", False))
          if not (jit and name in MASKED)]
RTOL = 1e-9


def _numpy(value) -> np.ndarray:
    return value.detach().numpy() if hasattr(value, "detach") else np.asarray(value)


def _cotangents(name):
    case = passes_run.passes.by_name(name)
    cot = passes_run.reference(name)["cot"]
    return None if cot is None else {case.sink: cot}


def _run(b, target, cots, jit=False):
    f = compiled(b, target)
    with jax.enable_x64(True):
        args = arguments(b, target, cots)
        got = (jax.jit(f) if jit else f)(**args)
        return {k: _numpy(v) for k, v in got.items()}


@pytest.mark.parametrize("name, target, jit", PARAMS)
def test_the_exported_backward_gives_the_cells_gradients(name, target, jit):
    s = passes_run.session(name)
    b, cots = s.backward, _cotangents(name)
    got = _run(b, target, cots, jit)
    want = b.gradients(cots)
    assert set(want) <= set(got)
    scale = passes_run.scale_of({k: np.asarray(v) for k, v in want.items()})
    for k, w in want.items():
        assert got[k].shape == np.shape(w), k
        np.testing.assert_allclose(got[k], w, rtol=RTOL, atol=RTOL * scale, err_msg=k)
    # ... and the framework's own autodiff of the cell, computed independently
    reference = passes_run.reference(name)["grads"]
    names = [w for w in passes_run.simple_names(s.case) if w in got]
    assert names, "the case names no gradient the export returns"
    scale = passes_run.scale_of(reference)
    for w in names:
        np.testing.assert_allclose(got[w], reference[w], rtol=1e-6, atol=1e-6 * scale,
                                   err_msg=f"{w} against autodiff")


def test_the_numpy_export_runs_the_programs_own_lines():
    b = passes_run.session("cs231n_case_study_two_layer").backward
    tree = ast.parse(export(b, "numpy"))
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    body = [ast.unparse(x) for x in fn.body[1:-1]]            # docstring … return
    assert body == [ast.unparse(x) for x in ast.parse(b.program.code).body]
    assert "import numpy as np" in export(b, "numpy")


def test_the_jax_and_torch_exports_call_no_numpy():
    b = passes_run.session("makemore4_backprop_ninja").backward
    for target in ("jax", "torch"):
        tree = ast.parse(export(b, target))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert "np" not in names, target


def test_jit_refuses_a_boolean_mask_by_jaxs_own_error():
    b = passes_run.session("cs231n_lstm_step_forward").backward
    with pytest.raises(jax.errors.NonConcreteBooleanIndexError):
        _run(b, "jax", _cotangents("cs231n_lstm_step_forward"), jit=True)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_the_jax_export_costs_no_more_xla_flops_than_jax_vjp(k):
    """XLA's FLOP count (deterministic, nothing runs) of the recorded cells of
    benchmarks/bench_chain.py at a sixteenth of their sizes: replay + exported backward
    against jax.vjp of the replay."""
    import bench_chain

    passes_run.shell()                       # the extension loaded once, in the one shell
    label, cell, shapes = bench_chain.RECORDED[k]
    small = {n: tuple(d // 16 if d >= 64 else d for d in s) for n, s in shapes.items()}
    autodiff, exported = bench_chain.recorded_flops(cell, small)
    assert 0 < exported <= autodiff, label


def test_an_unknown_target_is_one_line_naming_the_valid_ones():
    b = passes_run.session("nanogpt_mlp_gelu").backward
    with pytest.raises(EinsumError) as e:
        b.export("tensorflow")
    assert str(e.value) == "unknown export target 'tensorflow': choose numpy, jax or torch"
    with pytest.raises(EinsumError, match="unknown export target"):
        arguments(b, "mlx")
