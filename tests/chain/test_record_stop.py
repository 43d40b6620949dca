"""What a record costs the run once it stops, and what a large cell keeps (issue 18, item 9).

Behaviour only, never timed (the figures are in benchmarks/bench_record.py): once the record
has stopped the namespace holds plain arrays and NumPy's own functions again, a box held
elsewhere passes calls through and gives plain results, torch's mode records nothing and is
gone after the run, the objects frozen out of the collector's passes while the record ran
are given back; an in-place update in a loop does not write through the dead views of
its earlier steps; over the check's budget the backward is still derived, the check says why
in one line, and the stored result holds the run's own arrays, no float64 copies.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from IPython.utils.capture import capture_output

from einsum_magic.chain import record as record_module
from einsum_magic.chain.recorders import recording
from einsum_magic.chain.recorders.numpy import WRITE_THROUGH, Boxed


def _run(ns: dict, cell: str):
    with recording(ns) as rec:
        exec(compile(cell, "<cell>", "exec"), ns)
    return rec


def test_once_the_record_stops_the_namespace_and_numpy_are_plain_again_during_the_run():
    zeros, rand, asarray = np.zeros, np.random.rand, np.asarray
    ns = {"np": np, "A": np.ones((3, 3)), "B": np.full((3, 3), 0.5)}
    A, B = ns["A"], ns["B"]
    cell = ("before = (type(A), np.zeros is ZEROS, np.random.rand is RAND, FROZEN() > 0)\n"
            "for _ in range(CAP + 5):\n    H = A @ B\n"
            "after = (type(A), type(B), type(H), np.zeros is ZEROS, np.random.rand is RAND,\n"
            "         np.asarray is ASARRAY, A is A0, B is B0, FROZEN())\n")
    ns.update(ZEROS=zeros, RAND=rand, ASARRAY=asarray, A0=A, B0=B,
              CAP=record_module.MAX_REPEATS, FROZEN=gc.get_freeze_count)
    assert gc.get_freeze_count() == 0
    rec = _run(ns, cell)
    assert ns["before"] == (Boxed, False, False, True)    # the record was running
    assert ns["after"] == (np.ndarray, np.ndarray, np.ndarray, True, True, True, True, True, 0)
    assert gc.get_freeze_count() == 0
    assert rec.stopped and "\n" not in rec.stopped
    assert f"more than {record_module.MAX_REPEATS} times (a loop)" in rec.stopped
    assert rec.nodes == [] and rec.values == {}           # nothing held once stopped
    assert np.zeros is zeros and np.random.rand is rand and np.asarray is asarray


def test_a_box_held_in_a_local_passes_calls_through_once_the_record_stops():
    """A function's local is out of the release's reach: it stays a Boxed, whose calls give
    NumPy's plain results, equal to the plain run's, and the cell's names are plain."""
    cell = ("def f(x):\n    y = x\n    for _ in range(CAP + 5):\n        y = np.tanh(x @ x)\n"
            "    return type(x), type(y), type(x @ x), y\nkinds = f(A)\n")
    A = np.linspace(-1, 1, 9).reshape(3, 3)
    ns = {"np": np, "A": A, "CAP": record_module.MAX_REPEATS}
    rec = _run(ns, cell)
    local, result, later, y = ns["kinds"]
    assert rec.stopped and local is Boxed
    assert result is np.ndarray and later is np.ndarray
    np.testing.assert_array_equal(y, np.tanh(A @ A))
    assert ns["A"] is A and not any(isinstance(v, Boxed) for v in ns.values()
                                    if isinstance(v, np.ndarray))


def test_an_in_place_update_in_a_loop_does_not_write_through_its_dead_views():
    """``X @ W.T`` then ``W -= …``, each step: the ``W.T`` of an earlier step is gone, so the
    change gives it no version (before, step k wrote through k - 1 dead views: a loop of 25
    steps made 300 nodes of them and hit the repeat cap). A view the run still holds (``V``)
    gets its new version, once a step."""
    rng = np.random.default_rng(0)
    ns = {"np": np, "X": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 3))}
    rec = _run(ns, "for _ in range(25):\n    h = X @ W.T\n    W -= 0.01 * (h.T @ X)\n")
    assert not rec.stopped, rec.stopped
    assert sum(n.op == WRITE_THROUGH for n in rec.nodes) == 0
    ns = {"np": np, "X": rng.normal(size=(4, 3)), "W": rng.normal(size=(3, 3))}
    rec = _run(ns, "for _ in range(25):\n    V = W.T\n    h = X @ V\n    W -= 0.01 * (h.T @ X)\n")
    assert not rec.stopped, rec.stopped
    through = [n for n in rec.nodes if n.op == WRITE_THROUGH]
    assert len(through) == 25                               # V of that step, once each
    assert all(n.inplace and rec.info[n.outs[0]].shape == (3, 3) for n in through)


def test_torch_records_nothing_after_the_stop_and_its_mode_is_gone_after_the_run():
    torch = pytest.importorskip("torch")
    from torch.overrides import _get_current_function_mode_stack

    x = torch.randn(3, 3, dtype=torch.float64)
    ns = {"torch": torch, "x": x}
    cell = ("for _ in range(CAP + 5):\n    h = torch.tanh(x @ x)\n"
            "modes = len(_modes())\nlast = torch.tanh(x @ x)\n")
    ns.update(CAP=record_module.MAX_REPEATS, _modes=_get_current_function_mode_stack)
    before = len(_get_current_function_mode_stack())
    rec = _run(ns, cell)
    assert rec.stopped and rec.nodes == []
    assert ns["modes"] == before + 1                     # the pass-through, while the run lasts
    assert len(_get_current_function_mode_stack()) == before
    torch.testing.assert_close(ns["last"], torch.tanh(x @ x))


@pytest.fixture
def ip(shell):
    return shell


@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_over_the_checks_budget_the_backward_is_shown_and_o_keeps_references(ip, framework):
    """Over the check's budget (4·10⁶ elements replayed) nothing is replayed in float64: the
    check is UNCHECKED with one line saying why, the backward is derived, and the stored
    result holds the run's own float32 arrays (by identity), no float64 copy of any."""
    from einsum_magic.chain.report import CHECK_ELEMENTS

    n = CHECK_ELEMENTS // 2 + 1
    if framework == "torch":
        torch = pytest.importorskip("torch")
        ip.push({"torch": torch, "X": torch.linspace(-1, 1, n, dtype=torch.float32)})
        cell = "Y = torch.tanh(X)\nZ = Y * 2.0\nloss = Z.sum()"
    else:
        ip.push({"np": np, "X": np.linspace(-1, 1, n, dtype=np.float32)})
        cell = "Y = np.tanh(X)\nZ = Y * 2.0\nloss = Z.sum()"
    with capture_output() as cap:
        result = ip.run_cell("%%einsum_grad -o res_big\n" + cell)
    assert result.success, cap.stdout
    b = ip.user_ns["res_big"].backward
    assert b is not None and b.check.status == "UNCHECKED", cap.stdout
    assert "over the check's budget" in b.check.reason and "\n" not in b.check.reason
    assert {"X", "Y", "Z"} <= set(b.inputs + b.intermediates) and "dL_dX" in b.code
    ns, rec = ip.user_ns, b.recording
    arrays = [v for v in rec.values.values() if getattr(v, "ndim", 0) > 0]
    assert arrays and all(any(v is ns[k] for k in ("X", "Y", "Z")) for v in arrays)
    assert not any(str(v.dtype).endswith("float64") for v in rec.values.values())
    assert rec.snapshots == set()


def test_a_torch_stop_gives_back_the_frozen_objects_and_an_error_too():
    torch = pytest.importorskip("torch")
    ns = {"torch": torch, "np": np, "x": torch.randn(3, 3, dtype=torch.float64),
          "FROZEN": gc.get_freeze_count, "CAP": record_module.MAX_REPEATS}
    rec = _run(ns, "during = FROZEN()\nfor _ in range(CAP + 5):\n    h = torch.tanh(x @ x)\n"
                   "after = FROZEN()\n")
    assert rec.stopped and ns["during"] > 0 and ns["after"] == 0
    with pytest.raises(ZeroDivisionError):
        _run(ns, "h = torch.tanh(x @ x)\n1 / 0\n")
    assert gc.get_freeze_count() == 0


def test_a_record_and_its_arrays_go_with_their_last_reference_not_at_a_gc_pass():
    """No reference cycle through the recorders: once the cell rebinds ``Y`` and the record is
    dropped, the run's array is freed at once (a 76 MB array kept until the collector's next
    pass made the next cell fault in fresh pages)."""
    import weakref

    ns = {"np": np, "X": np.linspace(-1, 1, 10)}
    rec = _run(ns, "Y = np.tanh(X)\nZ = Y * 2.0\n")
    assert rec.nodes and type(ns["Y"]) is np.ndarray
    alive = weakref.ref(ns["Y"])
    enabled = gc.isenabled()
    gc.disable()
    try:
        del rec
        ns["Y"] = ns["Z"] = None
        assert alive() is None
    finally:
        if enabled:
            gc.enable()


def test_gc_collect_in_the_cell_collects_what_it_would_without_the_magic():
    """A cell that frees a deleted object's memory with ``gc.collect()`` (a model in a
    reference cycle, before ``torch.cuda.empty_cache()``) gets it collected while the record
    runs, although the objects from before the cell were frozen out of the collector's passes."""
    import weakref

    class Model:
        pass

    model = Model()
    model.me = model                      # a reference cycle: only the collector frees it
    alive = weakref.ref(model)
    ns = {"np": np, "gc": gc, "A": np.ones((2, 2)), "model": model, "FROZEN": gc.get_freeze_count}
    del model
    hooks = list(gc.callbacks)
    rec = _run(ns, "H = A @ A\nfrozen = FROZEN()\ndel model\ngc.collect()\nG = np.tanh(H)\n")
    assert ns["frozen"] > 0 and not rec.stopped and len(rec.nodes) == 2
    assert alive() is None
    assert gc.callbacks == hooks and gc.get_freeze_count() == 0
