"""check.policy: the per-element comparison and the fallback any check reuses."""

from __future__ import annotations

import numpy as np
import pytest

from einsum_magic import EinsumError
from einsum_magic.check.jax import INSTALL, JaxNotInstalled
from einsum_magic.check.policy import compare, why_not, with_fallback
from einsum_magic.check.records import TOLERANCES, CheckReport


def numpy_report(why: str) -> CheckReport:
    return CheckReport(True, (), "numpy", "numpy", "float64", "float64", False, (), {}, fallback=why)


def test_compare_scales_each_element_by_its_own_magnitude():
    got = np.array([1.0 + 1e-5, 1e6])
    want = np.array([1.0, 1e6])
    assert compare("dL_dA", "A", "i->i", got, want, np.array([1.0, 1e6]), "float32").passed
    # the same error on an element whose terms were small fails, whatever the others are
    small = compare("dL_dA", "A", "i->i", got, want, np.array([1e-3, 1e6]), "float32")
    assert not small.passed and small.message.startswith("values differ from jax.vjp: at [0]")
    assert (small.rtol, small.atol) == TOLERANCES["float32"]


def test_compare_against_a_reference_and_its_framework_name():
    want = np.array([[1.0, 2.0]])
    g = compare("dL_dW", "W", "", want, want, np.ones((1, 2)), "float64",
                reference=np.array([[1.0, 2.5]]), against="torch.func.vjp")
    assert not g.passed and "float64 reference" in g.message and g.ref_abs_error == 0.5
    g = compare("dL_dW", "W", "", np.array([[1.0, 3.0]]), want, np.ones((1, 2)), "float64",
                against="torch.func.vjp")
    assert g.message.startswith("values differ from torch.func.vjp: at [0, 1]")


def test_compare_never_passes_inf_or_nan():
    g = compare("dL_dA", "A", "i->i", np.array([np.inf]), np.array([np.inf]), np.ones(1),
                "float32")
    assert not g.passed and "inf or NaN" in g.message


def test_with_fallback_at_import_and_at_run_time():
    def missing():
        raise JaxNotInstalled()

    r = with_fallback(missing, None, numpy_report)
    assert r.fallback == f"JAX not available: not installed ({INSTALL})"

    def failing(_):
        raise ValueError("device 0 lost at /dev/x")

    r = with_fallback(lambda: None, failing, numpy_report, framework="PyTorch")
    assert r.fallback == "PyTorch failed at run time: ValueError"
    assert r.fallback_detail == "ValueError: device 0 lost at /dev/x"
    assert "/dev/x" not in r.summary


def test_with_fallback_raises_when_disabled_and_never_hides_bad_input():
    def failing(_):
        raise RuntimeError("x")

    with pytest.raises(RuntimeError):
        with_fallback(lambda: None, failing, numpy_report, enabled=False)

    def bad_input(_):
        raise EinsumError("the cotangent has shape (2,)")

    with pytest.raises(EinsumError):
        with_fallback(lambda: None, bad_input, numpy_report)


def test_why_not_is_a_fixed_phrase():
    assert why_not(ImportError("libcuda.so.1 at /usr/lib"), "import raised") == (
        "JAX not available: import raised ImportError", "ImportError: libcuda.so.1 at /usr/lib")


def test_one_plan_picks_the_reference_of_an_einsum_and_of_a_cell():
    from einsum_magic.check.policy import plan

    assert (plan("einsum").reference, plan("einsum").fallback) == ("jax.vjp", "adjoint")
    assert (plan({"numpy"}).reference, plan({"numpy"}).fallback) == ("jax autograd", "adjoint")
    assert (plan({"torch"}).reference, plan({"torch"}).fallback) == ("torch autograd", "")
    over = plan({"numpy"}, size=11, budget=10)
    assert not over.reference and over.reason == ("the replay would recompute 11 elements, "
                                                   "over the check's budget of 10")
    assert plan({"numpy"}, size=10, budget=10).reference == "jax autograd"
    for mixed in ({"numpy", "torch"}, {"tensorflow"}):
        assert plan(mixed).reason == ("the check replays torch, NumPy or JAX records (NumPy with "
                                      "JAX), not torch with another")
    assert plan({"jax"}).reference == plan({"jax", "numpy"}).reference == "jax autograd"
