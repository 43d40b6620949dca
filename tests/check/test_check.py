"""The inline check against jax.vjp: it passes where the derivation is right and fails where it is not."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from reference import HARD_CASES, random_operands

import einsum_magic
from einsum_magic import EinsumError, derive
from einsum_magic.check.inputs import prepare
from einsum_magic.check.jax import _compiled
from einsum_magic.check.report import (
    INSTALL,
    TOLERANCES,
    JaxNotInstalled,
    check,
    jax_available,
)

jax = pytest.importorskip("jax")

def broken(d, position, equation):
    """``d`` with the gradient at ``position`` replaced by ``equation``: what the check must catch."""
    grads = list(d.grads)
    grads[position] = dataclasses.replace(grads[position], equation=equation)
    return dataclasses.replace(d, grads=tuple(grads))


@pytest.mark.parametrize("equation,shapes", HARD_CASES)
def test_every_hard_case_passes_on_random_arrays(equation, shapes):
    report = check(derive(equation, shapes=shapes))
    assert report.passed, report
    assert report.summary == (f"check: PASS, {len(shapes)}/{len(shapes)} "
                              f"gradient{'s' if len(shapes) > 1 else ''} "
                              f"match{'es' if len(shapes) == 1 else ''} jax.vjp (float32)")
    assert not report.user_arrays
    assert (report.dtype, report.precision, report.backend) == ("float32", "highest",
                                                                jax.default_backend())
    for g in report.grads:
        assert (g.rtol, g.atol) == TOLERANCES["float32"]
        assert g.max_rel_error <= g.rtol and g.message == ""


@pytest.mark.parametrize("equation,shapes", HARD_CASES)
def test_every_hard_case_passes_on_user_arrays_with_a_shapeless_derivation(equation, shapes):
    report = check(derive(equation), *random_operands(shapes, seed=5))
    assert report.passed, report
    assert report.user_arrays
    assert [g.target for g in report.grads] == [g.target for g in derive(equation).grads]


def test_the_seeds_integer_arrays_pass():
    a = np.arange(6).reshape(2, 3)
    b = np.arange(12).reshape(3, 4)
    report = check(derive("ij,jk->ik", names=("A", "B"), output="C"), a, b)
    assert report.passed and report.user_arrays
    assert "integer arrays A, B cast to float32" in report.notes
    assert [g.equation for g in report.grads] == ["ik,jk->ij", "ik,ij->jk"]


def test_a_long_float32_contraction_passes_against_a_float64_reference():
    report = check(derive("ij,jk->ik", shapes=((8, 500), (500, 6))))
    assert report.passed, report
    # the reference is float64: float32 rounding shows, within tolerance
    assert all(0 < g.ref_abs_error for g in report.grads)


def test_the_reference_comparison_can_fail(monkeypatch):
    monkeypatch.setitem(TOLERANCES, "float32", (1e-12, 0.0))
    report = check(derive("ij,jk->ik", shapes=((8, 500), (500, 6))))
    assert not report.passed
    assert all("float64 reference" in g.message for g in report.grads)


def test_a_transposed_gradient_fails_and_is_named():
    d = derive("ij,jk->ik", shapes=((3, 3), (3, 3)))
    report = check(broken(d, 0, "ik,jk->ji"))
    assert not report.passed
    assert report.summary == "check: FAIL, 1/2 gradients match jax.vjp (float32); wrong: dL_dA"
    a, b = report.grads
    assert not a.passed and b.passed
    assert a.equation == "ik,jk->ji"
    assert a.message.startswith("values differ from jax.vjp")
    assert a.max_rel_error > 1e-2
    # the derived einsum agrees with its own float64 evaluation: the derivation is what is wrong
    assert a.ref_abs_error <= a.rtol


def test_a_gradient_of_the_wrong_shape_fails_without_raising():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    report = check(broken(d, 0, "ik,jk->ji"))
    assert not report.passed
    assert report.grads[0].message == "shape (3, 2) != (2, 3)"
    assert report.summary.endswith("wrong: dL_dA")
    assert report.grads[1].passed


def test_a_derived_einsum_that_does_not_run_fails_without_raising():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    report = check(broken(d, 1, "ik,ji->jk"))
    assert not report.passed and report.grads[0].passed
    assert "does not run" in report.grads[1].message
    assert report.summary.endswith("wrong: dL_dB")


def test_float64_uses_the_scoped_x64_context_only():
    before = jax.config.jax_enable_x64
    report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))), dtype="float64")
    assert jax.config.jax_enable_x64 == before
    assert report.passed and report.dtype == "float64"
    assert all((g.rtol, g.atol) == TOLERANCES["float64"] for g in report.grads)
    assert all(g.ref_abs_error < 1e-12 for g in report.grads)


def test_float32_stays_float32_when_the_user_enabled_x64():
    with jax.enable_x64(True):
        report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
        assert jax.config.jax_enable_x64
    assert report.passed and report.dtype == "float32"


def test_complex64_follows_jaxs_convention_and_says_pytorch_conjugates():
    report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))), dtype="complex64")
    assert report.passed and report.dtype == "complex64"
    assert any("PyTorch conjugates" in n for n in report.notes)


def test_complex_user_arrays_are_checked_in_complex():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    b = rng.standard_normal((3,))
    report = check(derive("ij,j->i"), a, b)
    assert report.passed and report.dtype == "complex64"
    assert "complex arrays: checked in complex64 rather than float32" in report.notes


def test_a_real_operand_of_a_complex_einsum_is_said_to_take_the_real_part():
    """b is real, a complex: the derived einsum of dL_db is complex, and was shown under a
    bare PASS. jax.vjp on the arrays as given (b real) gives its real part: said on the
    check's line and in its notes, and proven here."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    b = rng.standard_normal((3, 4))
    d = derive("ij,jk->ik", names=("a", "b"), shapes=(a.shape, b.shape))
    report = check(d, a, b, dtype="float64")
    assert report.passed and report.real == ("b",)
    assert report.summary == ("check: PASS, 2/2 gradients match jax.vjp (complex128; b is real: "
                              "its gradient is the real part of dL_db)")
    cot = rng.standard_normal((2, 4)) + 1j * rng.standard_normal((2, 4))
    (g_b,) = [g for g in d.grads if g.wrt == "b"]
    derived = np.einsum(g_b.equation, cot, a)                       # ik,ij->jk
    assert np.abs(derived.imag).max() > 0.1                        # not real by itself
    with jax.enable_x64(True):
        _, pull = jax.vjp(lambda x, y: jax.numpy.einsum("ij,jk->ik", x, y), a, b)
        _, want = pull(cot)
    assert np.asarray(want).dtype == np.float64
    np.testing.assert_allclose(np.real(derived), np.asarray(want), rtol=1e-12)
    assert check(d, a, b.astype(complex), dtype="float64").real == ()   # both complex


def test_arrays_of_other_dtypes_are_cast_and_said_so():
    bf16 = jax.numpy.ones((2, 3), dtype=jax.numpy.bfloat16)
    report = check(derive("ij,jk->ik"), bf16, np.ones((3, 4), dtype=bool), dtype="float64")
    assert report.passed and report.user_arrays
    assert report.notes == ("bfloat16 array A cast to float64", "boolean array B cast to float64")


def test_an_array_passed_twice_product_rule():
    a = np.arange(6.0).reshape(2, 3)
    d = derive("ij,ij->", names=("A", "A"), output="s")
    report = check(d, a, a)
    assert report.passed
    assert [g.target for g in report.grads] == ["dL_dA_1", "dL_dA_2"]
    assert check(derive("ij,ji->", names=("A", "A"), shapes=((3, 3), (3, 3)))).passed


def test_the_summary_is_deterministic_and_plain():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    first, second = check(d), check(d, seed=7)
    assert first.summary == second.summary == check(d).summary
    assert first.device not in first.summary and "ms" not in first.summary
    assert first.device == ("cpu" if jax.devices()[0].platform == "cpu"
                            else jax.devices()[0].device_kind)


def test_big_arrays_are_replaced_by_clamped_random_arrays():
    a, b = np.ones((40, 50)), np.ones((50, 30))
    report = check(derive("ij,jk->ik"), a, b, max_elements=500)
    assert report.passed and not report.user_arrays
    (note,) = report.notes
    assert "A (2,000 elements), B (1,500 elements)" in note
    assert "over the budget of 500 elements per array (max_elements)" in note
    assert "replaced by seeded random arrays with clamped sizes" in note
    shapeless = check(derive("ij,jk->ik", shapes=((40, 50), (50, 30))), max_elements=500)
    assert shapeless.passed and "checked on seeded random arrays" in shapeless.notes[0]


def test_clamping_keeps_an_array_passed_twice_one_array():
    d = derive("ij,ji->", names=("A", "A"), shapes=((30, 30), (30, 30)))
    report = check(d, max_elements=100)
    assert report.passed and "i 30→" in report.notes[0]
    clamped, inputs = prepare(d, (), 0, "float32", None, 100)
    assert inputs.operands[0] is inputs.operands[1]
    assert inputs.operands[0].size <= 100


def test_the_output_counts_against_the_budget():
    report = check(derive("i,j->ij", shapes=((40,), (50,))), max_elements=100)
    assert report.passed and "C (2,000 elements)" in report.notes[0]


def test_the_default_cotangent_is_seeded_random_never_ones():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    _, one = prepare(d, (), 0, "float32", None, 10**6)
    _, same = prepare(d, (), 0, "float32", None, 10**6)
    _, other = prepare(d, (), 1, "float32", None, 10**6)
    assert one.cotangent.shape == (2, 4) and one.cotangent.dtype == np.float32
    assert not np.allclose(one.cotangent, 1.0)
    np.testing.assert_array_equal(one.cotangent, same.cotangent)
    assert not np.array_equal(one.cotangent, other.cotangent)


def test_a_given_cotangent_is_used():
    d = derive("ij,jk->ik", shapes=((3, 3), (3, 3)))
    # a zero cotangent makes every gradient zero, so even a transposed derivation passes
    assert check(broken(d, 0, "ik,jk->ji"), cotangent=np.zeros((3, 3))).passed
    with pytest.raises(EinsumError, match="cotangent dL_dC has shape"):
        check(d, cotangent=np.ones((4, 3)))


def test_the_compiled_functions_are_cached():
    d = derive("ab,bc->ac", shapes=((5, 6), (6, 7)))
    check(d)
    before = _compiled.cache_info()
    check(d, seed=3)
    after = _compiled.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 2          # jax.vjp's function and the derived one
    check(d, dtype="float64")
    assert _compiled.cache_info().misses == before.misses + 2


def test_timings_are_reported():
    report = check(derive("ij,jk->ik", shapes=((2, 3), (3, 4))))
    assert set(report.timings) == {"derived_ms", "jax_vjp_ms", "compile_ms"}
    assert all(t >= 0 for t in report.timings.values())


@pytest.mark.parametrize("call,match", [
    (lambda: check(derive("ij,jk->ik")), "pass the arrays"),
    (lambda: check(derive("ij,jk->ik"), np.ones((2, 3))), "takes 2 operand"),
    (lambda: check(derive("ij,ij->", names=("A", "A")), np.ones((2, 3)), np.zeros((2, 3))),
     "two different arrays"),
    (lambda: check(derive("ij,jk->ik"), np.ones((2, 3)), np.ones((4, 4))), "letter 'j'"),
    (lambda: check(derive("ij->i"), np.array([["a", "b"]])), "needs numbers"),
    (lambda: check(derive("ij->i", shapes=((2, 3),)), dtype="int32"), "cannot be checked"),
    (lambda: check(derive("ij->i", shapes=((2, 3),)), max_elements=0), "max_elements"),
    (lambda: check(derive("ij->i", shapes=((2, 3),)), seed=-1), "seed"),
    (lambda: check("ij->i"), "takes a Derivation"),
])
def test_bad_input_is_one_einsum_error(call, match):
    with pytest.raises(EinsumError, match=match):
        call()


def test_without_jax_check_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    monkeypatch.setitem(sys.modules, "jax.numpy", None)
    assert not jax_available()
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))       # the rest still works
    for run in (check, einsum_magic.check):
        with pytest.raises(JaxNotInstalled) as info:
            run(d, fallback=False)
        message = str(info.value)
        assert isinstance(info.value, ImportError) and "\n" not in message
        assert "pip install jax" in message and 'pip install "jax[cuda13]"' in message
        assert INSTALL in message


def test_jax_available_when_installed():
    assert jax_available()


def python(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (fresh imports); its asserts must hold."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run


def test_importing_the_check_does_not_import_jax():
    code = ("import sys, einsum_magic\n"
            "from einsum_magic.check.report import jax_available\n"
            "assert 'jax' not in sys.modules, 'jax imported'\n"
            "assert jax_available()\n"
            "assert 'jax' not in sys.modules, 'jax imported by jax_available'\n")
    python(code)


def test_the_package_check_works_after_the_submodule_is_imported():
    """``einsum_magic.check`` stays the function when the subpackage of that name is imported."""
    code = ("import einsum_magic\n"
            "from einsum_magic import derive\n"
            "d = derive('ij->j', shapes=((2, 3),))\n"
            "assert einsum_magic.check(d).passed\n"
            "import einsum_magic.check.report\n"
            "from einsum_magic import check\n"
            "assert einsum_magic.check(d).passed and check(d).passed\n"
            "import sys\n"
            "assert sys.modules['einsum_magic.check.report'].check is check\n"
            "assert sys.modules['einsum_magic.check'].check is check\n")
    python(code)


def test_jax_start_up_warnings_are_kept_not_printed():
    """JAX's platform warnings differ by machine: the check keeps them off stderr."""
    code = ("import logging, sys\n"
            "from einsum_magic import check, derive\n"
            "import importlib\n"
            "checking = importlib.import_module('einsum_magic.check.jax')\n"
            "real = checking._start_jax\n"
            "def start():\n"
            "    logging.getLogger('jax._src.xla_bridge').warning('An NVIDIA GPU may be present')\n"
            "    return real()\n"
            "checking._start_jax = start\n"
            "report = check(derive('ij->j', shapes=((2, 3),)))\n"
            "assert report.passed\n"
            "assert report.platform == ('An NVIDIA GPU may be present',), report.platform\n"
            "assert 'NVIDIA' not in report.summary\n")
    assert "NVIDIA" not in python(code).stderr


def test_arrays_with_nan_are_replaced_so_the_check_still_proves_something():
    d = derive("ij,jk->ik")
    a = np.full((3, 3), np.nan)
    b = np.ones((3, 3))
    report = check(broken(d.bound_to([(3, 3), (3, 3)]), 1, "ik,ij->kj"), a, b)   # transposed
    assert not report.user_arrays
    assert "A holds NaN or inf" in report.notes[0]
    assert not report.passed                     # the broken gradient is still caught
    assert check(d, a, b).passed


# -- element by element, in a dtype that represents the values ----------------------------

def test_an_outlier_does_not_hide_a_transposed_gradient():
    """One entry of B at 1e6 used to set the tolerance of every element of dL_dA."""
    d = derive("ij,ij->ij").bound_to([(3, 3), (3, 3)])
    a, b = random_operands([(3, 3), (3, 3)], seed=4)
    b[0, 0] = 1e6                              # enters dL_dA[0, 0] only, on the diagonal
    report = check(broken(d, 0, "ij,ij->ji"), a, b)
    assert not report.passed
    assert report.summary.endswith("wrong: dL_dA")
    assert report.grads[0].message.startswith("values differ from jax.vjp: at [")
    assert report.grads[0].max_rel_error > 1e-2
    assert check(d, a, b).passed


def test_outliers_and_tiny_elements_cause_no_false_failure():
    rng = np.random.default_rng(7)
    a = rng.standard_normal((6, 40)).astype(np.float32)
    b = rng.standard_normal((40, 5)).astype(np.float32)
    a[0] *= 1e6                                # one huge row, others ordinary
    b[:, 1] *= 1e-6                            # one tiny column
    report = check(derive("ij,jk->ik"), a, b)
    assert report.passed, report
    assert all(g.max_rel_error <= g.rtol for g in report.grads)


def test_float32_overflow_of_the_products_scales_instead_of_failing():
    """float64 arrays near 1e20 in a chain: products of 1e60 overflow float32."""
    a, b, c = (x * 1e20 for x in random_operands([(2, 3), (3, 4), (4, 2)], seed=8))
    d = derive("ij,jk,kl->il")
    report = check(d, a, b, c)
    assert report.passed, report
    assert report.scaled and report.user_arrays
    assert report.summary == ("check: PASS, 3/3 gradients match jax.vjp (float32, operands "
                              "scaled by powers of two)")
    (note,) = [n for n in report.notes if "powers of two" in n]
    assert "values up to " in note and "A·2^-" in note and "C·2^-" in note
    # a broken gradient is still caught after scaling, and the derivation is blamed, not precision
    bad = check(broken(d.bound_to([(3, 3), (3, 3), (3, 3)]), 1, "il,ij,kl->kj"),
                *(x * 1e20 for x in random_operands([(3, 3)] * 3, seed=9)))
    assert not bad.passed and bad.scaled and "precision" not in bad.grads[1].message


def test_values_beyond_float32_do_not_become_inf_and_pass():
    d = derive("ij,jk->ik").bound_to([(3, 3), (3, 3)])
    a, b = random_operands([(3, 3), (3, 3)], seed=10)
    a = a * 1e39                               # inf in float32
    report = check(broken(d, 1, "ik,ij->kj"), a, b)     # transposed dL_dB reads A
    assert report.scaled
    assert not report.passed and report.grads[0].passed
    assert all(np.isfinite(g.max_abs_error) for g in report.grads)
    assert check(d, a, b).passed


def test_ordinary_values_are_not_scaled():
    report = check(derive("ij,jk->ik"), *random_operands([(2, 3), (3, 4)], seed=1))
    assert not report.scaled and not any("powers of two" in n for n in report.notes)


def test_the_summary_says_when_random_arrays_stood_in_for_the_users():
    a = np.full((2, 3), np.nan)
    report = check(derive("ij,jk->ik"), a, np.ones((3, 4)))
    assert report.passed and report.stand_ins == "NaN or inf in A"
    assert report.summary == ("check: PASS, 2/2 gradients match jax.vjp (float32) on seeded "
                              "random arrays, not yours (NaN or inf in A)")
    report = check(derive("ij,jk->ik"), np.ones((30, 40)), np.ones((40, 50)), max_elements=1000)
    assert report.summary.endswith("on seeded random arrays, not yours (over the size budget)")
    # no arrays given: random arrays are what was asked for, nothing to say
    assert check(derive("ij,jk->ik", shapes=((30, 40), (40, 50))),
                 max_elements=1000).summary.endswith("(float32)")


# -- the session is not disturbed ----------------------------------------------------------

def test_the_first_check_does_not_consume_numpys_global_random_state():
    code = ("import numpy as np\n"
            "from einsum_magic import check, derive\n"
            "np.random.seed(0)\n"
            "want = np.random.rand(3)\n"
            "np.random.seed(0)\n"
            "assert check(derive('ij,jk->ik', shapes=((2, 3), (3, 4)))).passed\n"
            "got = np.random.rand(3)\n"
            "assert (got == want).all(), (got, want)\n"
            "import sys; assert 'jax' in sys.modules\n")
    python(code)


_RECORD_PREALLOCATE = (
    "import os, sys, importlib\n"
    "from einsum_magic import check, derive\n"
    "checking = importlib.import_module('einsum_magic.check.jax')\n"
    "real, seen = checking._start_jax, []\n"
    "def start():\n"
    "    seen.append(os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE'))\n"
    "    return real()\n"
    "checking._start_jax = start\n"
    "assert check(derive('ij->j', shapes=((2, 3),))).passed\n"
    "print(seen, os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE'))\n")


def test_jax_starts_for_the_check_with_preallocation_off_and_the_environment_is_restored():
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
                        "XLA_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_ALLOCATOR")}
    out = subprocess.run([sys.executable, "-c", _RECORD_PREALLOCATE], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['false']", "None"]


@pytest.mark.parametrize("setting", [("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
                                     ("XLA_PYTHON_CLIENT_MEM_FRACTION", ".5")])
def test_a_users_jax_memory_setting_is_left_alone(setting):
    env = dict(__import__("os").environ)
    env.pop("XLA_PYTHON_CLIENT_PREALLOCATE", None)
    env[setting[0]] = setting[1]
    out = subprocess.run([sys.executable, "-c", _RECORD_PREALLOCATE], capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    want = "true" if setting[0] == "XLA_PYTHON_CLIENT_PREALLOCATE" else None
    assert out.stdout.split() == [f"[{want!r}]", str(want)]


def test_a_jax_the_user_imported_is_used_as_it_is():
    code = ("import os, jax\n" + _RECORD_PREALLOCATE.replace("print(seen", "assert seen == []\n"
                                                              "print(seen"))
    python(code)


def test_the_verdict_holds_whatever_the_magnitudes():
    """Property: arrays of any magnitude float64 holds, with an outlier, never fail a correct
    derivation in float32 and never let a wrong one pass (no overflow to inf, no outlier
    setting the tolerance of other elements)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    cases = [("ij,jk->ik", [(3, 4), (4, 2)], "ik,jl->ij"),
             ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)], "il,jk,km->ij"),
             ("bi,bi->bi", [(3, 5), (3, 5)], "bi,ci->bi")]

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(case=st.sampled_from(cases), seed=st.integers(0, 2**16),
           exponents=st.lists(st.integers(-60, 60), min_size=3, max_size=3),
           outlier=st.integers(0, 12))
    def prop(case, seed, exponents, outlier):
        equation, shapes, wrong = case
        ops = [x * 10.0 ** e for x, e in zip(random_operands(shapes, seed=seed), exponents)]
        ops[1].flat[seed % ops[1].size] *= 10.0 ** outlier
        d = derive(equation)
        report = check(d, *ops)
        assert report.passed, report
        assert report.user_arrays
        assert all(np.isfinite(g.max_abs_error) for g in report.grads)
        bad = check(broken(d.bound_to(shapes), 0, wrong), *ops)
        assert not bad.passed and not bad.grads[0].passed, bad

    prop()


def test_a_huge_given_cotangent_is_scaled_not_overflowed():
    d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
    cot = np.random.default_rng(3).standard_normal((2, 4)) * 1e39       # inf in float32
    report = check(d, cotangent=cot)
    assert report.passed and report.scaled
    assert any(n.startswith("the cotangent dL_dC holds values up to 2.6e+39: the check ran on "
                            "dL_dC·2^-131") for n in report.notes)
    assert all(np.isfinite(g.max_abs_error) for g in report.grads)
    assert not check(broken(d, 0, "ik,jl->ij"), cotangent=cot).passed
    with pytest.raises(EinsumError, match="the cotangent dL_dC holds NaN or inf"):
        check(d, cotangent=np.full((2, 4), np.nan))
