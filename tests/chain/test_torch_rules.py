"""Backward rules of single torch calls, each against torch.autograd.grad of that call alone.

Each test records one call (or the few calls of one layer) with the torch recorder, derives
its backward (:mod:`einsum_magic.chain.program`), runs it with a seeded random cotangent, and
compares every input's gradient with ``torch.autograd.grad`` of the same call on float64
copies, computed here. The check of the package is not used.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from einsum_magic.chain.recorders import recording  # noqa: E402
from einsum_magic.chain.result import from_recording  # noqa: E402


def derive(fn, **inputs):
    """(result, cotangent, {input: derived gradient}) of ``fn(**inputs)`` from its record."""
    ns = dict(inputs)
    with recording(ns) as rec:
        out = fn(**inputs)
    ns["out"] = out
    b = from_recording(rec, ns, check=False)
    assert not b.program.opaque, b.notes
    cot = np.random.default_rng(7).standard_normal(tuple(out.shape))
    cot = cot.astype(str(out.dtype).replace("torch.", ""))        # in the result's dtype
    got = b.gradients({b.sinks[0]: cot})
    return out, cot, {k: got[k] for k in inputs if k in got}, b


def autograd(fn, cot, out_dtype, **inputs):
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()
              if v.is_floating_point()}
    args = {k: leaves.get(k, v) for k, v in inputs.items()}
    out = fn(**args)
    grads = torch.autograd.grad(out, list(leaves.values()),
                                torch.as_tensor(cot).to(out_dtype), allow_unused=True)
    return {k: (torch.zeros_like(v) if g is None else g).numpy()
            for (k, v), g in zip(leaves.items(), grads)}


def same(fn, rtol=1e-12, **inputs):
    out, cot, got, b = derive(fn, **inputs)
    want = autograd(fn, cot, out.dtype, **inputs)
    for k, w in want.items():
        assert k in got, f"no gradient of {k}: {sorted(got)}\n{b.code}"
        g = np.asarray(got[k])
        assert g.shape == w.shape, k
        assert g.dtype == w.dtype, f"{k}: gradient {g.dtype}, torch's {w.dtype}"
        scale = float(np.max(np.abs(w))) if w.size else 1.0
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * scale, err_msg=k)
    return b


def randn(*shape, dtype=torch.float64, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- casts: the gradient goes back in the dtype of the value cast ----------------------------

@pytest.mark.parametrize("cast", [
    lambda x: x.float(), lambda x: x.to(torch.float32), lambda x: x.half().double(),
    lambda x: x.double(), lambda x: x.type(torch.float32)],
    ids=["float", "to_float32", "half_double", "double", "type"])
def test_a_cast_sends_the_gradient_back_in_the_inputs_dtype(cast):
    b = same(lambda x: cast(x) * 3.0, rtol=1e-6, x=randn(2, 3))
    assert "astype(x_np.dtype)" in b.program.code or "astype(" not in b.program.code


def test_type_as_casts_to_its_others_dtype_and_sends_nothing_to_it():
    same(lambda x, y: (x * 2.0).type_as(y) * y, rtol=1e-6,
         x=randn(2, 4, dtype=torch.float32), y=randn(2, 4, seed=1))


# -- GELU, exact (erf) and tanh-approximated -------------------------------------------------

def test_exact_gelu_is_derived_with_erf():
    x = torch.cat([randn(40) * 3, torch.tensor([0.0, -7.5, 9.0, 1e-8], dtype=torch.float64)])
    b = same(lambda x: F.gelu(x), x=x)
    assert "math.erf" in b.program.code


def test_tanh_gelu():
    same(lambda x: F.gelu(x, approximate="tanh"), x=randn(5, 6) * 2)


def test_gelu_in_float32_keeps_float32():
    same(lambda x: F.gelu(x), rtol=1e-6, x=randn(5, 6, dtype=torch.float32))


def test_shown_code_of_exact_gelu_imports_math_where_the_namespace_has_none():
    x = randn(3, 4)
    ns = {"x": x, "torch": torch, "F": F}
    with recording(ns) as rec:
        y = F.gelu(x)
        loss = (y * y).sum()
    ns.update(y=y, loss=loss)
    code = from_recording(rec, ns, check=False).code
    assert "import math" in code.splitlines()[:3], code
    exec(code, ns)
    xg = x.clone().requires_grad_(True)
    (F.gelu(xg) ** 2).sum().backward()
    np.testing.assert_allclose(ns["dL_dx"], xg.grad.numpy(), rtol=1e-12)


# -- the steps of LLaMA's RMSNorm (meta-llama/llama, llama/model.py), one at a time -----------

@pytest.mark.parametrize("op", [
    lambda x: torch.rsqrt(x * x + 1.0), lambda x: x.pow(2), lambda x: x.mean(-1, keepdim=True),
    lambda x: x.mean(-1), lambda x: x.mean((0, 2), keepdim=True)],
    ids=["rsqrt", "pow2", "mean_keepdim", "mean", "mean_two_dims"])
def test_rmsnorm_steps(op):
    same(op, x=randn(2, 3, 4))


def test_multiplication_by_a_parameter_sums_the_broadcast_back():
    w = torch.nn.Parameter(randn(4, seed=3))
    same(lambda x, w: x * w, x=randn(2, 3, 4), w=w.detach())


def test_rmsnorm_whole_in_float32_inside_float64():
    def rmsnorm(x, w):
        h = x.float()
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * w
    same(rmsnorm, rtol=1e-6, x=randn(2, 3, 8), w=randn(8, seed=2))


def test_the_check_replays_a_float32_step_in_float64():
    """RMSNorm's float32 step: the check's reference stays float64, so the derived
    gradients (run on the replay's float64 values) pass at the check's float64 tolerance."""
    x, w = randn(2, 3, 8), randn(8, seed=2)
    ns = {"x": x, "w": w}
    with recording(ns) as rec:
        h = x.float()
        out = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)).type_as(x) * w
        loss = (out * out).sum()
    ns.update(out=out, loss=loss)
    b = from_recording(rec, ns)
    assert b.check is not None, b.check_note
    assert b.check.status == "PASS", b.check.summary


# -- gathers along a dim: their backward scatter-adds (repeated indices add up) ---------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather_scatter_adds_along_its_dim(dim):
    idx = torch.tensor([[0, 2, 2], [1, 1, 0]])            # repeats, and fewer columns than x
    same(lambda x: x.gather(dim, idx), x=randn(3, 4) if dim == 0 else randn(2, 5))


def test_torch_gather_of_a_3d_tensor_as_a_loss_picks_it():
    y = torch.randint(0, 3, (2, 5, 4), generator=torch.Generator().manual_seed(1))
    same(lambda x: torch.gather(x.sin(), 0, y), x=randn(3, 6, 4))


@pytest.mark.parametrize("dim", [0, 1, 2])
def test_index_select_scatter_adds_along_its_dim(dim):
    idx = torch.tensor([1, 2, 2, 0])
    same(lambda x: torch.index_select(x, dim, idx), x=randn(3, 4, 3))
    same(lambda x: x.index_select(dim, idx) * 2.0, x=randn(3, 4, 3, seed=2))


def test_every_line_of_elementwise_functions_says_its_rule():
    b = same(lambda x: torch.exp(-x).tanh() + torch.sigmoid(x) * x.sqrt().log(), x=randn(2, 3).abs())
    assert all(line.rule for line in b.lines), [(line.code, line.rule) for line in b.lines]
    assert any(line.rule.startswith("y = tanh(x): ") for line in b.lines)
