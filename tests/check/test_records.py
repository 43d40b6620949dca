"""check.records: one report, one verdict and one summary for an einsum and for a cell."""

from __future__ import annotations

import math

import pytest

from einsum_magic.check.records import REFERENCES, CheckReport, GradCheck, verdict

NUMBERS = dict(max_abs_error=0.0, max_rel_error=0.0, ref_abs_error=math.nan, rtol=1e-8,
               atol=0.0, message="")


def row(name, passed=True, **kw):
    return GradCheck(f"dL_d{name}", name, "", passed, **NUMBERS, **kw)


def cell(rows, status="", **kw):
    status = status or verdict(rows, kw.get("reason", ""))
    return CheckReport(status == "PASS", tuple(rows), "cpu", "torch", "float64", "float64", True,
                       (), {}, status=status, subject="cell check", **kw)


@pytest.mark.parametrize("rows, cut, want", [
    ([row("A"), row("B")], "", "PASS"),
    ([row("A"), row("B", passed=False)], "", "FAIL"),
    ([row("A"), row("B", passed=False)], "tanh", "FAIL"),           # a wrong gradient wins
    ([row("A")], "not derived across tanh", "PARTIAL"),
    ([row("A"), row("B", passed=False, crosses="tanh")], "", "PARTIAL"),
    ([row("A"), row("B", passed=False, skipped="a kink")], "", "PARTIAL"),
    ([], "", "UNCHECKED"),
])
def test_one_verdict_never_passes_over_a_dropped_path(rows, cut, want):
    assert verdict(rows, cut) == want


def test_a_report_s_status_and_passed_agree():
    assert CheckReport(True, (), "cpu", "cpu", "float32", "highest", True, (), {}).status == "PASS"
    assert CheckReport(False, (), "cpu", "cpu", "float32", "highest", True, (), {}).failed
    with pytest.raises(ValueError, match="contradicts"):
        CheckReport(True, (), "cpu", "cpu", "float32", "highest", True, (), {}, status="PARTIAL")
    with pytest.raises(ValueError, match="one of"):
        CheckReport(False, (), "cpu", "cpu", "float32", "highest", True, (), {}, status="OK")


def test_the_reference_defaults_from_the_backend_as_einsum_reports_had_it():
    jax = CheckReport(True, (), "cpu", "cpu", "float32", "highest", True, (), {})
    numpy = CheckReport(True, (), "numpy", "numpy", "float64", "float64", True, (), {})
    assert (jax.reference, jax.framework) == ("jax.vjp", "jax")
    assert (numpy.reference, numpy.framework) == ("adjoint", "numpy")
    assert set(REFERENCES) >= {"jax.vjp", "torch autograd", "jax autograd", "adjoint"}


def test_a_cell_summary_names_its_reference_and_counts_only_what_was_compared():
    rows = [row("W"), row("X", passed=False, crosses="`torch.tanh`, line 2"),
            row("W", passed=True, against=".grad")]
    r = cell(rows, reason="not derived across `torch.tanh`, line 2", reference="torch autograd")
    assert r.status == "PARTIAL" and not r.passed and not r.failed
    assert r.summary == ("cell check: PARTIAL, not derived across `torch.tanh`, line 2; 1/1 "
                         "gradient matches torch autograd of the replayed run (float64); 1/1 "
                         "match the cell's own .grad")


def test_a_cell_fail_lists_the_values_an_einsum_fail_the_gradients():
    r = cell([row("H", passed=False), row("Z"), row("H", passed=False, against=".grad")],
             reference="jax autograd")
    assert r.summary == ("cell check: FAIL, 1/2 gradients match jax autograd of the replayed "
                         "run (float64); 0/1 match the cell's own .grad; wrong: H")
    einsum = CheckReport(False, (row("A", passed=False),), "cpu", "cpu", "float32", "highest",
                         True, (), {})
    assert einsum.summary == "check: FAIL, 0/1 gradient matches jax.vjp (float32); wrong: dL_dA"


def test_the_adjoint_test_says_why_jax_did_not_check_for_a_cell_as_for_an_einsum():
    why = "JAX not available: import raised RuntimeError"
    r = cell([row("X"), row("W")], reference="adjoint", fallback=why)
    assert r.summary == ("cell check: PASS, 2/2 gradients pass the adjoint test of the NumPy "
                         f"replay (float64); checked with NumPy (adjoint test), {why}")
    skipped = cell([row("X"), row("W", passed=False, skipped="a kink")], reference="adjoint",
                   reason="the adjoint test could not judge dL_dW", fallback=why)
    assert skipped.summary.startswith("cell check: PARTIAL, the adjoint test could not judge "
                                      "dL_dW; 1/1 gradient passes the adjoint test")
    over = cell([], status="UNCHECKED", reason="over the budget", reference="adjoint",
                fallback=why)
    assert over.summary == ("cell check: not run: over the budget; checked with NumPy "
                            f"(adjoint test), {why}")
