"""capture.py: what the run's einsum calls are seen as, and that everything is restored."""

from __future__ import annotations

import builtins
import functools
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from einsum_magic.cell.capture import Capture, original_of

ORIGINAL = np.einsum


def sites(recorder):
    return recorder.sites()


def test_a_call_is_recorded_with_its_equation_shapes_dtypes_and_copies():
    A, B = np.arange(6.0).reshape(2, 3), np.ones((3, 4), dtype=np.float32)
    with Capture({}) as r:
        C = np.einsum("ij,jk->ik", A, B)
    np.testing.assert_array_equal(C, ORIGINAL("ij,jk->ik", A, B))
    (s,) = sites(r)
    assert (s.function, s.style, s.equation) == ("numpy.einsum", "numpy", "ij,jk->ik")
    assert s.shapes == ((2, 3), (3, 4)) and s.dtypes == ("float64", "float32")
    assert s.names == ("A", "B") and s.same == (0, 1) and s.count == 1
    A[0, 0] = 99.0                       # the cell may mutate its arrays later
    assert s.arrays[0][0, 0] == 0.0 and s.arrays[0] is not A


def test_everything_is_restored_when_the_code_raises_or_is_interrupted():
    ns = {"es": np.einsum}
    importing = builtins.__import__
    for error in (ValueError, KeyboardInterrupt):
        with pytest.raises(error):
            with Capture(ns):
                assert np.einsum is not ORIGINAL and ns["es"] is not ORIGINAL
                raise error()
        assert np.einsum is ORIGINAL and ns["es"] is ORIGINAL
        assert builtins.__import__ is importing


def test_a_name_the_cell_rebinds_is_kept_and_a_new_alias_gets_the_original():
    ns = {"es": np.einsum, "keep": np.einsum}
    with Capture(ns):
        ns["es"] = 5
        ns["mine"] = np.einsum               # the cell binds a name to the (wrapped) einsum
    assert ns == {"es": 5, "keep": ORIGINAL, "mine": ORIGINAL}


def test_the_users_exception_is_unchanged_and_the_failed_call_not_recorded():
    with Capture({}) as r:
        with pytest.raises(ValueError) as caught:
            np.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError) as plain:
        np.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((2, 3)))
    assert str(caught.value) == str(plain.value)
    assert sites(r) == ()


def test_only_the_outermost_einsum_is_recorded():
    oe = pytest.importorskip("opt_einsum")
    A = np.ones((2, 3))
    with Capture({}) as r:
        oe.contract("ij,jk->ik", A, A.T)
    (s,) = sites(r)
    assert s.function == "opt_einsum.contract" and s.shapes == ((2, 3), (3, 2))


def test_repeated_operands_are_told_by_identity_not_equality():
    A = np.ones((2, 3))
    copy = A.copy()
    with Capture({}) as r:
        np.einsum("ij,ij->", A, A)
        np.einsum("ij,ij->i", A, copy)
    first, second = sites(r)
    assert first.same == (0, 0) and second.same == (0, 1)


def test_a_loop_is_one_site_with_its_count_and_shape_variants():
    with Capture({}) as r:
        for n in (1, 2, 2, 3):
            np.einsum("ij->i", np.ones((n, 2)))
    (s,) = sites(r)
    assert (s.count, s.variants, s.shapes) == (4, 3, ((1, 2),))


def test_interleaved_sublists_are_recorded():
    A, B = np.ones((2, 3)), np.ones((3, 4))
    with Capture({}) as r:
        np.einsum(A, [0, 1], B, [1, 2], [0, 2])
    (s,) = sites(r)
    assert s.style == "interleaved" and s.sublists == ((0, 1), (1, 2), (0, 2))


def test_arrays_over_the_budget_are_not_kept():
    big = np.ones((10, 10))
    with Capture({}, budget=50) as r:
        np.einsum("ij->", big)
        np.einsum("i->", big[0])
    assert [s.arrays[0] is None for s in sites(r)] == [True, False]


def test_other_threads_are_recorded_and_said_to_be_other_threads():
    with Capture({}) as r:
        t = threading.Thread(target=np.einsum, args=("i->", np.ones(3)))
        t.start()
        t.join()
        np.einsum("i,i->", np.ones(3), np.ones(3))
    assert [(s.equation, s.thread) for s in sites(r)] == [("i->", True), ("i,i->", False)]


def test_a_wrapper_that_outlives_the_capture_just_calls_the_original():
    with Capture({}) as r:
        trace = functools.partial(np.einsum, "ii->")
    with Capture({}) as later:
        pass
    assert trace(np.eye(3)) == 3.0
    assert sites(r) == () and sites(later) == ()
    assert original_of(trace.func) is ORIGINAL


def test_jax_tracers_give_shapes_and_dtypes_only():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def f(x, y):
        return jnp.einsum("ij,jk->ik", x, y)

    with Capture({}) as r:
        f(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32))
        jax.vmap(lambda v: jnp.einsum("i,i->", v, v))(jnp.ones((5, 3)))
    first, second = sites(r)
    assert first.traced and first.arrays == (None, None) and first.names == ("x", "y")
    assert first.shapes == ((2, 3), (3, 4)) and first.dtypes == ("float32", "float32")
    assert second.shapes == ((3,), (3,)) and second.same == (0, 0)    # one example of the batch


def test_torch_and_einops_calls():
    torch = pytest.importorskip("torch")
    einops = pytest.importorskip("einops")
    x, w = torch.ones(2, 3), torch.ones(3, 4)
    with Capture({}) as r:
        torch.einsum("ij,jk->ik", [x, w])
        einops.einsum(x, w, "batch d, d out -> batch out")
    first, second = sites(r)
    assert first.function == "torch.einsum" and first.shapes == ((2, 3), (3, 4))
    assert first.dtypes == ("float32", "float32") and first.arrays[1].shape == (3, 4)
    assert (second.function, second.style) == ("einops.einsum", "einops")
    assert second.equation == "batch d, d out -> batch out" and second.names == ("x", "w")
    assert torch.einsum.__module__ == "torch.functional"


def test_a_module_imported_during_the_capture_is_observed_then_restored():
    code = textwrap.dedent("""
        import sys
        import numpy as np
        assert "opt_einsum" not in sys.modules
        from einsum_magic.cell.capture import Capture
        with Capture({}) as r:
            import opt_einsum as oe
            inside = oe.contract
            oe.contract("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)))
        print([s.function for s in r.sites()], inside is not oe.contract,
              oe.contract.__module__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["['opt_einsum.contract']", "True", "opt_einsum.contract"]


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_in_nested_captures_only_the_innermost_records(library):
    """A second %%einsum_grad at the top of a cell: the outer one must not see the inner's calls."""
    if library == "torch":
        torch = pytest.importorskip("torch")
        call = lambda: torch.einsum("ij,jk->ik", torch.ones(2, 3), torch.ones(3, 4))  # noqa: E731
    else:
        call = lambda: np.einsum("ij,jk->ik", np.ones((2, 3)), np.ones((3, 4)))  # noqa: E731
    with Capture({}) as outer:
        with Capture({}) as inner:
            call()
    assert [s.count for s in sites(inner)] == [1] and sites(outer) == ()


def test_the_packages_own_calls_are_never_recorded():
    from einsum_magic import check, derive

    A, B = np.ones((2, 3)), np.ones((3, 4))
    with Capture({}) as r:
        d = derive("ij,jk->ik", shapes=(A.shape, B.shape))
        d.vjp(np.ones((2, 4)), A, B)          # numpy einsums inside einsum_magic.core
        check(d, A, B)                        # and the check's own
    assert sites(r) == ()


def test_compiled_einsums_keep_their_graph_and_are_recorded_at_the_users_line():
    """np.einsum under torch.compile broke the graph on the observer (sys._getframe)."""
    torch = pytest.importorskip("torch")

    def g(x, y):
        return np.einsum("ij,jk->ik", x, y) * 2

    def h(x, y):
        return torch.einsum("ij,kj->ik", x, y) + 1

    x, y = torch.ones(2, 3), torch.ones(3, 4)
    with Capture({}) as r:
        cg, ch = torch.compile(g, fullgraph=True), torch.compile(h, fullgraph=True)
        for _ in range(2):
            np.testing.assert_array_equal(cg(x, y), np.full((2, 4), 6.0))
            assert torch.equal(ch(x, x), torch.full((2, 2), 4.0))
    first, second = sites(r)
    assert (first.function, first.filename, first.line, first.scope) == (
        "numpy.einsum", __file__, g.__code__.co_firstlineno + 1, g.__qualname__)
    assert (second.function, second.line, second.scope) == (
        "torch.einsum", h.__code__.co_firstlineno + 1, h.__qualname__)
    assert first.traced and first.tracer == second.tracer == "torch.compile"
    assert first.shapes == ((2, 3), (3, 4)) and second.shapes == ((2, 3), (2, 3))
    torch._dynamo.reset()                   # after the capture: compiled as without it
    np.testing.assert_array_equal(torch.compile(g, fullgraph=True)(x, y), np.full((2, 4), 6.0))
