"""NumPy backward lines spelled for JAX and PyTorch (einsum_magic.compute.spell).

Each program below is NumPy of the kind the backward rules write (scatter-adds with repeated
indices, slices written and added into, ``put_along_axis``, reductions with ``keepdims``,
``var``, ties, erf); it runs with NumPy, and its JAX (also under ``jax.jit``) and PyTorch
spellings run on the same arrays and must give the same values.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from einsum_magic import EinsumError
from einsum_magic.compute.export import Function, Module, execute
from einsum_magic.compute.spell import spell

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")

PROGRAMS = {
    "scatter-add with repeats": """t = np.zeros_like(x)
np.add.at(t, np.s_[np.arange(4), y], g)
u = np.zeros_like(x)
np.add.at(u, y, x)
out = t + u""",
    "slices written and added": """t = g2.copy()
t[:, 1:3] = 0
t[np.arange(4), y] -= 0.5
t[:2] += x[:2] * 2
out = t""",
    "put along axis": """s = np.zeros_like(x)
np.put_along_axis(s, np.expand_dims(y, 1), np.expand_dims(g, 1), axis=1)
out = s""",
    "reductions": """m = x.max(axis=None, keepdims=True)
ties = x == m
a = g2 * ties / ties.sum(axis=None, keepdims=True)
b = x.var(axis=0, keepdims=True) + x.mean(axis=(0, 1)) + np.sum(x == m, axis=1, keepdims=True)
c = np.expand_dims(x.max(axis=1), (0, 2)).reshape((4, 1)) * x.std(axis=1, keepdims=True)
out = a + b + c + np.flip(np.cumsum(np.flip(x, 1), 1), 1)""",
    "elementwise": """cdf = 0.5 * (1 + np.vectorize(math.erf, otypes=[x.dtype])(x / math.sqrt(2)))
h = np.maximum(x, 0) + np.where(x >= 0, 1.0, -1.0) * np.exp(-x ** 2) / np.sqrt(x.shape[-1])
out = cdf * h + np.tanh(x) * np.sign(x) + np.array([1.0, 2.0, 3.0, 4.0, 5.0]) + x.astype(np.float64)
out = np.broadcast_to(out.sum(axis=0), (4, 5)) + np.array(out)""",
}


def _values(rng):
    return {"x": rng.standard_normal((4, 5)), "g": rng.standard_normal(4),
            "g2": rng.standard_normal((4, 5)), "y": np.array([1, 1, 3, 0])}


def _function(code: str, target: str):
    s = spell(code, target)
    fn = Function("f", ("x", "g", "g2", "y"), (*s.lines, "return out"))
    source = Module(("test",), s.imports, (*s.helpers, fn)).source()
    return execute(source, "f", f"test_spell_{target}"), source


@pytest.mark.parametrize("name", list(PROGRAMS))
@pytest.mark.parametrize("seed", [0, 1])
def test_spelled_programs_compute_what_numpy_computes(name, seed):
    code = PROGRAMS[name]
    values = _values(np.random.default_rng(seed))
    ns = {"np": np, "math": math, **{k: np.array(v) for k, v in values.items()}}
    exec(code, ns)
    want = ns["out"]
    f, _ = _function(code, "jax")
    with jax.enable_x64(True):
        args = {k: jax.numpy.asarray(v) for k, v in values.items()}
        for got in (f(**args), jax.jit(f)(**args)):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)
    f, _ = _function(code, "torch")
    got = f(**{k: torch.tensor(v) for k, v in values.items()})
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_numpy_lines_stay_as_they_are():
    code = PROGRAMS["scatter-add with repeats"]
    assert spell(code, "numpy").lines == tuple(code.splitlines())
    assert spell(code, "numpy").imports == ("import numpy as np",)


def test_jax_writes_in_place_steps_functionally_and_torch_needs_its_helper():
    jx = spell(PROGRAMS["scatter-add with repeats"], "jax")
    assert "t = t.at[jnp.arange(4), y].add(g)" in jx.lines and not jx.helpers
    assert not any("np." in ln.replace("jnp.", "") for ln in jx.lines)
    th = spell(PROGRAMS["scatter-add with repeats"], "torch")
    assert "add_at(t, (torch.arange(4), y), g)" in th.lines
    assert [h.name for h in th.helpers] == ["add_at"]


@pytest.mark.parametrize("line, target, what", [
    ("y = x.sort()", "torch", "the method .sort()"),
    ("y = np.linalg.inv(x)", "torch", "np.linalg.inv(...)"),
    ("np.copyto(x, y)", "jax", "the call np.copyto(...) as a statement"),
    ("x[0] **= 2", "jax", "an in-place Pow into a slice"),
])
def test_what_a_target_cannot_spell_is_refused_by_name(line, target, what):
    with pytest.raises(EinsumError) as e:
        spell(line, target)
    assert str(e.value) == f"export({target!r}) cannot spell {what} in: {line}"
