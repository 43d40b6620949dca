"""capture.py: what the run's einsum calls are seen as, and that everything is restored."""

from __future__ import annotations

import builtins
import functools
import os
import subprocess
import sys
import textwrap
import threading
import types
import weakref

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


@pytest.mark.parametrize("hot_paths", ["C", "Python"])
def test_a_module_imported_during_the_capture_is_observed_then_restored(hot_paths):
    """With the observer's hot paths in C (_observe.c, where built) and in Python alone."""
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        assert "opt_einsum" not in sys.modules
        from einsum_magic.cell import capture
        from einsum_magic.cell.capture import Capture
        if {hot_paths!r} == "Python":
            capture._ImportHook = capture._Repeat = None
        with Capture({{}}) as r:
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


def test_a_lazy_module_is_neither_loaded_nor_failing_the_capture(tmp_path, monkeypatch):
    """Looking for libraries that bound ``einsum`` read ``module.__dict__``, which loads a
    module of importlib's LazyLoader: its body ran, and one that raises failed the cell."""
    import importlib.util

    (tmp_path / "a_lazy_module.py").write_text("raise ImportError('an optional dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.util.find_spec("a_lazy_module")
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "a_lazy_module", module)
    spec.loader.exec_module(module)
    A = np.ones((2, 3))
    with Capture({}) as r:
        np.einsum("ij->j", A)
    assert [s.equation for s in r.sites()] == ["ij->j"]
    with pytest.raises(ImportError, match="an optional dependency"):
        module.anything                     # still lazy: its body runs only now


# -- the observer's hot paths in C (einsum_magic/cell/_observe.c) -------------------------------


def _observe_module():
    """The C module; CI has a C compiler, so there it must have been built."""
    try:
        from einsum_magic.cell import _observe
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("einsum_magic.cell._observe is not built here (no C compiler at install)")
    return _observe


def test_the_c_counter_counts_the_calls_it_was_armed_for_and_hands_on_the_others():
    Repeat = _observe_module().Repeat
    site = types.SimpleNamespace(count=1)
    handed = []
    failing = [False]

    def original(*args, **kwargs):
        if failing[0]:
            raise ValueError("the user's error")
        return np.einsum(*args, **kwargs)

    def observer(*args, **kwargs):          # as capture's: call, then arm for the site
        handed.append(kwargs)
        result = original(*args, **kwargs)
        if not kwargs:
            repeat.arm(sys._getframe(1), args, tuple(a.shape for a in args[1:]), site)
        return result

    repeat = Repeat(original, observer)

    def loop(operands, n, **kwargs):
        for _ in range(n):
            out = repeat.call("ij,jk->ik", *operands, **kwargs)
        return out

    A, B = np.ones((2, 3)), np.ones((3, 4))
    np.testing.assert_array_equal(loop((A, B), 10), A @ B)
    assert len(handed) == 1 and site.count == 1          # nine counted in C, not added yet
    repeat.flush()
    assert site.count == 10
    loop((A.copy(), B), 5)                  # new operands of the same shapes: in C
    loop((np.ones((4, 3)), B), 3)           # new shapes: the observer's (then armed for them)
    loop((np.ones((4, 3)), B), 2, optimize=True)      # keyword arguments: the observer's
    repeat.flush()
    assert len(handed) == 4 and site.count == 10 + 5 + 2 + 0
    failing[0] = True
    with pytest.raises(ValueError, match="the user's error"):
        loop((np.ones((4, 3)), B), 1)       # a call that raises is not counted
    repeat.flush()
    assert site.count == 17
    failing[0] = False
    operand = np.ones((4, 3))
    alive = weakref.ref(operand)
    loop((operand, B), 2)
    repeat.clear()
    assert site.count == 19
    del operand
    assert alive() is None                  # cleared: no operand kept alive
    loop((A, B), 1)
    assert len(handed) == 5                 # forgotten: the observer's again


def test_the_c_counter_survives_an_operands_shape_that_changes_its_slot():
    """An operand's ``.shape`` is Python where it is a property: it may clear or re-arm the
    slot being compared (the shapes it is compared with, the site). The counter then hands
    the call to the observer and reads nothing it has let go of (it crashed before)."""
    Repeat = _observe_module().Repeat
    site = types.SimpleNamespace(count=0)
    handed = []

    def original(equation, *operands):
        return len(operands)

    shapes = ((2, 3),)

    def observer(*args):                    # as capture's: count the call, arm for the site
        handed.append(args)
        site.count += 1
        repeat.arm(sys._getframe(1), args, shapes, site)
        return original(*args)

    repeat = Repeat(original, observer)

    class Operand:                          # of the armed shape, but its .shape clears the slot
        @property
        def shape(self):
            repeat.clear()
            return (2, 3)

    def call(operand):
        return repeat.call("ij->i", operand)

    assert call(np.ones((2, 3))) == 1 and len(handed) == 1      # the observer's: armed
    assert call(np.ones((2, 3))) == 1 and len(handed) == 1      # same shapes: counted in C
    assert call(Operand()) == 1 and len(handed) == 2            # cleared meanwhile: handed on
    repeat.clear()
    assert site.count == 3


def test_a_loops_calls_are_counted_the_same_in_c_as_in_python(monkeypatch):
    """The same operands, new operands of the same shapes, new shapes, keyword arguments,
    sites taking turns: with the C counter, the counts and shape variants are Python's."""
    from einsum_magic.cell import capture

    def run():
        A, B = np.ones((2, 3)), np.ones((3, 4))
        rows = [np.full((2, 3), k) for k in range(3)]
        with Capture({}) as r:
            for i in range(40):
                np.einsum("ij,jk->ik", A, B)
                np.einsum("ij,jk->ik", rows[i % 3], B)
                np.einsum("ij->i", np.ones((1 + i % 2, 3)))
                np.einsum("ij,jk->ik", A, B, optimize=True)
            inner = [s.count for s in r.sites()]          # read while observing, too
        return inner, [(s.equation, s.count, s.variants) for s in r.sites()]

    with_c = run()
    monkeypatch.setattr(capture, "_OBSERVERS", {})       # observers made anew, without it
    monkeypatch.setattr(capture, "_Repeat", None)
    monkeypatch.setitem(capture._dynamo, "ready", False)
    python = run()
    assert with_c == python == ([40] * 4, [("ij,jk->ik", 40, 1), ("ij,jk->ik", 40, 1),
                                           ("ij->i", 40, 2), ("ij,jk->ik", 40, 1)])


def test_the_c_counter_stands_in_front_of_numpys_observer_where_it_is_built():
    Repeat = _observe_module().Repeat
    with Capture({}):
        front = np.einsum.func
    assert isinstance(front.__self__, Repeat)


def test_the_c_import_hook_imports_as_the_original_and_looks_only_when_it_may_matter():
    ImportHook = _observe_module().ImportHook
    looked = []
    hook = ImportHook(builtins.__import__, lambda: looked.append(len(sys.modules)))
    assert hook("os") is os and looked == [len(sys.modules)]   # first import: looks
    hook.set(True, False, len(sys.modules))
    assert hook("os.path", fromlist=["join"]) is os.path and len(looked) == 1   # nothing new
    from einsum_magic.cell import capture

    assert hook("os.path", globals(), None, ("join",), 0) is os.path   # as import statements
    assert hook("capture", vars(capture), None, ("Capture",), 1) is capture     # call it
    with pytest.raises(ValueError):
        hook("os", None, None, (), -1)                         # the builtin's own check
    assert len(looked) == 1
    with pytest.raises(ImportError):
        hook("einsum_magic_no_such_module")                    # the import's own error
    hook.set(True, True, len(sys.modules))                     # an awaited module importing
    hook("os")
    assert len(looked) == 2
    hook.set(False, True, 0)                                   # nothing awaited: never looks
    hook("os")
    assert len(looked) == 2


def test_imports_in_a_capture_go_through_the_c_hook_where_it_is_built():
    ImportHook = _observe_module().ImportHook
    with Capture({}):
        hook = builtins.__import__
    assert isinstance(hook, ImportHook) and builtins.__import__ is not hook
