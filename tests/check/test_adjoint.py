"""NumPy's exact adjoint test: the check where JAX is missing, broken or fails at run time."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from einsum_magic import derive
from einsum_magic.check import adjoint
from einsum_magic.check.report import INSTALL, check
from reference import HARD_CASES, random_operands

REPO = Path(__file__).resolve().parents[2]
IDS = [eq or "empty" for eq, _ in HARD_CASES]


def empty(d) -> bool:
    """Whether every gradient is empty (a zero-size axis): no value of it can be wrong."""
    return all(0 in d.shapes[g.position] for g in d.grads)


@pytest.mark.parametrize("equation,shapes", HARD_CASES, ids=IDS)
def test_every_hard_case_passes(equation, shapes):
    d = derive(equation, shapes=shapes)
    for operands in ((), random_operands(shapes, seed=3)):
        r = adjoint.check(d, *operands, fallback="test")
        assert r.passed, r.grads
        assert len(r.grads) == len(d.grads) and r.dtype == "float64"
        assert r.user_arrays == bool(operands)


@pytest.mark.parametrize("equation,shapes", HARD_CASES, ids=IDS)
def test_a_wrong_sign_fails_every_hard_case(equation, shapes):
    d = derive(equation, shapes=shapes)
    if empty(d):
        pytest.skip("an empty gradient has no value that could be wrong")

    def negated(cot, *ops):
        return tuple(-g for g in adjoint.derived(d, cot, ops))

    r = adjoint.check(d, gradients=negated)
    wrong = [g.passed for g, x in zip(r.grads, d.grads) if 0 not in d.shapes[x.position]]
    assert wrong and not any(wrong), r.grads
    assert not r.passed and "fails the adjoint test" in r.grads[0].message


def transposed_cases():
    """(equation, shapes, position) of every hard case's gradient that transposing changes."""
    out = []
    for equation, shapes in HARD_CASES:
        d = derive(equation, shapes=shapes)
        ops = random_operands(shapes)
        cot = np.random.default_rng(1).standard_normal(d.output_shape)
        for g, value in zip(d.grads, adjoint.derived(d, cot, ops)):
            t = np.transpose(value)
            if value.ndim >= 2 and (t.shape != value.shape or not np.allclose(t, value)):
                out.append((equation, shapes, g.position))
    return out


TRANSPOSED = transposed_cases()


def test_transposing_is_tried_on_every_hard_case_with_a_matrix_gradient():
    cases = {eq for eq, _, _ in TRANSPOSED}
    for equation, shapes in HARD_CASES:
        d = derive(equation, shapes=shapes)
        if any(len(s) >= 2 and len(set(s)) > 1 for s in (d.shapes[g.position] for g in d.grads)):
            assert equation in cases, equation        # a non-square gradient always changes


@pytest.mark.parametrize("equation,shapes,position", TRANSPOSED,
                         ids=[f"{eq}-{k}" for eq, _, k in TRANSPOSED])
def test_a_transposed_gradient_fails(equation, shapes, position):
    d = derive(equation, shapes=shapes)

    def transposed(cot, *ops):
        grads = list(adjoint.derived(d, cot, ops))
        grads[position] = np.transpose(grads[position])
        return tuple(grads)

    for operands in ((), random_operands(shapes, seed=5)):
        r = adjoint.check(d, *operands, gradients=transposed)
        assert not r.grads[position].passed
        assert all(g.passed for k, g in enumerate(r.grads) if k != position)


EYES = [(eq, shapes, g.position) for eq, shapes in HARD_CASES
        for g in derive(eq, shapes=shapes).grads if any(a.kind == "eye" for a in g.aux)]


def test_every_hard_case_with_a_diagonal_is_tried_without_its_eye():
    assert {eq for eq, _, _ in EYES} == {"ii->", "ii->i", "iij,jk->ik", "nd,nn->d", "ijj->i",
                                         "ijji,kji,jj->kj", "iii->i"}


@pytest.mark.parametrize("equation,shapes,position", EYES, ids=[f"{e}-{k}" for e, _, k in EYES])
def test_a_gradient_missing_its_eye_fails(equation, shapes, position):
    """Ones where the generalized rule puts an identity: the diagonal constraint is lost."""
    d = derive(equation, shapes=shapes)
    g = d.grads[position]

    def without_eye(cot, *ops):
        shape = ops[position].shape
        others = [x for m, x in enumerate(ops) if m != position]
        aux = [np.ones((shape[a.axis],) * 2) if a.kind == "eye" else np.ones(shape[a.axis])
               for a in g.aux]
        grads = list(adjoint.derived(d, cot, ops))
        grads[position] = np.einsum(g.equation, cot, *others, *aux)
        return tuple(grads)

    r = adjoint.check(d, gradients=without_eye)
    assert not r.grads[position].passed and not r.passed


def test_a_wrong_equation_fails_and_is_named():
    d = derive("ij,jk->ik", shapes=((3, 3), (3, 3)))
    g = d.grads[0]
    wrong = dataclasses.replace(d, grads=(dataclasses.replace(g, equation="ik,jk->ji"),
                                          *d.grads[1:]))
    r = adjoint.check(wrong, fallback="JAX is not installed")
    assert [x.passed for x in r.grads] == [False, True]
    assert r.summary == ("check: FAIL, 1/2 gradients pass the adjoint test (float64); wrong: "
                         "dL_dA; checked with NumPy (adjoint test), JAX is not installed")


def test_a_gradient_of_the_wrong_shape_or_that_does_not_run_fails_without_raising():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    g = d.grads[0]
    bad = dataclasses.replace(d, grads=(dataclasses.replace(g, equation="ik,jk->ji"),
                                        *d.grads[1:]))
    r = adjoint.check(bad)
    assert r.grads[0].message == "shape (3, 2) != (2, 3)" and r.grads[1].passed
    broken = dataclasses.replace(d, grads=(dataclasses.replace(g, equation="ik,jk->iz"),
                                           *d.grads[1:]))
    r = adjoint.check(broken)
    assert not r.passed and "does not run on these operands" in r.grads[0].message
    assert r.grads[1].passed


def test_complex_operands_use_jaxs_convention_without_conjugation():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    B = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    r = adjoint.check(d, A, B)
    assert r.passed and r.dtype == "complex128"

    def conjugated(cot, *ops):          # PyTorch's convention: not what jax.vjp returns
        return tuple(np.conj(x) for x in adjoint.derived(d, np.conj(cot), ops))

    assert not adjoint.check(d, A, B, gradients=conjugated).passed


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(HARD_CASES), st.integers(0, 2**32 - 1))
def test_the_adjoint_test_agrees_with_jax(case, seed):
    """Any seed: where the JAX check passes (float64), the adjoint test passes too."""
    equation, shapes = case
    d = derive(equation, shapes=shapes)
    assert check(d, seed=seed, dtype="float64").passed
    assert adjoint.check(d, seed=seed).passed


def test_with_jax_nothing_changes():
    r = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
    assert r.fallback == "" and r.backend != "numpy"
    assert r.summary == "check: PASS, 2/2 gradients match jax.vjp (float32)"


# -- missing or broken JAX, in a fresh interpreter -----------------------------------------

MAGIC = textwrap.dedent("""
    {setup}
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "einsum_magic")
    ip.run_cell("import numpy as np\\nA = np.ones((2, 3)); B = np.arange(12.0).reshape(3, 4)")
    with capture_output() as cap:
        result = ip.run_cell("%%einsum_grad\\nC = np.einsum('ij,jk->ik', A, B)")
    assert result.success, result
    (out,) = cap.outputs
    print(out.data["text/plain"].splitlines()[-1])
    assert "checked with NumPy (adjoint test)" in out.data["text/html"]
""")


def magic_in_fresh_python(setup: str, tmp_path, fake_jax: str | None = None):
    path = [str(REPO), os.environ.get("PYTHONPATH", "")]
    if fake_jax is not None:
        (tmp_path / "jax").mkdir()
        (tmp_path / "jax" / "__init__.py").write_text(fake_jax)
        path.insert(0, str(tmp_path))
    run = subprocess.run([sys.executable, "-c", MAGIC.format(setup=setup)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    return run.stdout.strip().splitlines()[-1]


def test_missing_jax(tmp_path):
    line = magic_in_fresh_python("import sys; sys.modules['jax'] = None", tmp_path)
    assert line == ("check: PASS, 2/2 gradients pass the adjoint test (float64); checked "
                    "with NumPy (adjoint test), JAX not available: not installed "
                    f"({INSTALL})")


def test_jax_whose_import_raises(tmp_path):
    fake = "raise RuntimeError('jaxlib is version 0.4.1, but this version of jax requires 0.10')\n"
    line = magic_in_fresh_python("", tmp_path, fake_jax=fake)
    assert line == ("check: PASS, 2/2 gradients pass the adjoint test (float64); checked with "
                    "NumPy (adjoint test), JAX not available: import raised RuntimeError")
    assert "0.4.1" not in line                           # versions stay out of text/plain


def test_jax_that_fails_at_run_time(tmp_path):
    line = magic_in_fresh_python("import jax; jax.config.update('jax_disable_jit', True)",
                                 tmp_path)
    assert line == ("check: PASS, 2/2 gradients pass the adjoint test (float64); checked "
                    "with NumPy (adjoint test), JAX failed at run time: ValueError")


def test_what_jax_raised_goes_to_the_live_details_not_the_summary(monkeypatch):
    import importlib

    from einsum_magic.views import html
    from einsum_magic.cell.analysis import Analysis
    from einsum_magic.cell.calls import equation_call

    def broken():
        raise RuntimeError("jaxlib is version 0.4.1 at /opt/site-packages/jaxlib\nmore")

    check_module = importlib.import_module("einsum_magic.check.report")
    monkeypatch.setattr(importlib.import_module("einsum_magic.check.jax"), "import_jax", broken)
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    r = check_module.check(d)
    assert r.backend == "numpy" and r.fallback == "JAX not available: import raised RuntimeError"
    assert r.summary.endswith("checked with NumPy (adjoint test), " + r.fallback)
    assert r.fallback_detail.startswith("RuntimeError: jaxlib is version 0.4.1 at /opt/")
    a = Analysis(equation_call("ij,jk->ik"), d, "defaults", check=r)
    assert "0.4.1" in html.check(a, live=True)
    assert "0.4.1" not in html.check(a, live=False) + r.summary + html.meaning(a)
