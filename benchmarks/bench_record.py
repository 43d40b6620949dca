"""What recording a run costs (the cell backward's record), per call, on a training loop, and
on a large cell.

    python benchmarks/bench_record.py          # or: python benchmarks/run.py bench_record

1. Per call: a loop of N = 200 steps ``h = tanh(h @ W) + b`` (3 calls a step) runs plain,
   then inside :func:`einsum_magic.chain.recorders.recording` (every call recorded), in
   NumPy, torch and JAX (its calls block until ready); the record's repeat cap
   (:data:`~einsum_magic.chain.record.MAX_REPEATS` calls of one line) is raised to N while
   this part runs, so that every call is recorded. Added per call =
   (recorded - plain) / (3 N). Then the same call once the record has stopped: a NumPy
   array still boxed (held in a local of a function, where the release of the namespace
   cannot reach) and torch's mode as a pass-through.
2. A 1,000-step training loop (forward, loss, hand-written gradient step) as a whole cell
   under ``%%einsum_grad --no-check`` against the same cell without the magic, through a
   real IPython shell: the record stops at the loop's second step and the rest of the run
   is plain. Twice: on tiny arrays (the worst case: each call about a microsecond) and on
   the sizes of makemore's MLP (:data:`LOOPS`). :data:`LOOP_REPEATS` alternating runs of
   each cell; what the magic adds is the median of the differences between each run under
   the magic and the plain run beside it, against the plain runs' median.
3. A two-step cell over 2·10⁷ float32 elements (``Y = np.tanh(X)``, ``loss = Y.sum()``), in
   fresh processes per configuration: plain, under ``%%einsum_grad`` (over the check's
   budget: UNCHECKED, nothing recomputed) and with ``-o res``; time of the cell (median and
   fastest of 7 runs in one process: a run's time depends on whether the allocator hands
   back the pages of the Y the run before freed, about 20 ms, or faults in fresh ones, about
   180 ms, in either configuration; the fastest run shows the work itself) and its peak of
   traced allocations (``tracemalloc``, which NumPy's buffers report to; in
   another process) and what stays allocated after it; the float64 bytes the stored result
   holds.

Times are CPU times of the thread that runs the cell (``time.thread_time``), medians of
alternating runs: the machine the figures come from is shared, so wall times there include
waiting for a core, and a process's CPU time includes what other threads (JAX's runtime,
torch's pool) do meanwhile.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

N = 200
STEP = """
h = x
for _k in range(N):
    h = np.tanh(h @ W) + b
"""
TORCH_STEP = STEP.replace("np.tanh", "torch.tanh")
JAX_STEP = STEP.replace("np.tanh", "jnp.tanh")
TRAIN = """
for _step in range(1000):
    h = np.tanh(X @ W1)
    p = h @ W2
    loss = ((p - Y) ** 2).mean()
    dp = 2 * (p - Y) / p.size
    dW2 = h.T @ dp
    dh = dp @ W2.T * (1 - h ** 2)
    W1 -= 0.01 * (X.T @ dh)
    W2 -= 0.01 * dW2
"""
BIG = "Y = np.tanh(X)\nloss = Y.sum()"
REPEATS = 9
LOOP_REPEATS = 31                           # runs of each training loop cell (alternating)


def _median(fn, repeats=REPEATS):
    fn()                                    # warm: first-call caches, lazy imports
    return statistics.median(fn() for _ in range(repeats))


def _medians(fns: dict, repeats=REPEATS) -> dict:
    """Median of each of ``fns`` (name → fn returning seconds), alternating runs."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(fn())
    return {k: statistics.median(v) for k, v in times.items()}


def _per_call(framework: str) -> list[str]:
    from einsum_magic.chain import record

    cap = record.MAX_REPEATS
    record.MAX_REPEATS = max(cap, N)
    try:
        return _per_call_uncapped(framework)
    finally:
        record.MAX_REPEATS = cap


def _per_call_uncapped(framework: str) -> list[str]:
    from einsum_magic.chain.recorders import recording

    steps = N
    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=(4, 32)), rng.normal(size=(32, 32)) / 32, rng.normal(size=32)
    if framework == "torch":
        import torch

        torch.set_num_threads(1)       # CPU time: no idle threads of the pool spinning

        base = {"torch": torch, "N": steps, "x": torch.tensor(x), "W": torch.tensor(W),
                "b": torch.tensor(b)}
        code = compile(TORCH_STEP, "<cell>", "exec")
    elif framework == "jax":
        import jax.numpy as jnp

        base = {"jnp": jnp, "N": steps, "x": jnp.asarray(x), "W": jnp.asarray(W),
                "b": jnp.asarray(b)}
        code = compile(JAX_STEP, "<cell>", "exec")
    else:
        base = {"np": np, "N": steps, "x": x, "W": W, "b": b}
        code = compile(STEP, "<cell>", "exec")

    def plain():
        ns = dict(base)
        t0 = time.thread_time()
        exec(code, ns)
        if framework == "jax":
            ns["h"].block_until_ready()      # JAX dispatches asynchronously
        return time.thread_time() - t0

    def recorded():
        ns = dict(base)
        t0 = time.thread_time()
        with recording(ns) as rec:
            exec(code, ns)
        elapsed = time.thread_time() - t0
        assert len(rec.nodes) >= 3 * steps and not rec.stopped, rec.stopped
        return elapsed

    def stopped():                   # the same loop once the record has stopped
        ns = dict(base)
        with recording(ns if framework == "torch" else {}) as rec:
            if framework == "numpy":              # boxed, as a local of a function keeps it
                from einsum_magic.chain.recorders.numpy import box

                ns.update(x=box(x), W=box(W), b=box(b))
            rec.stop("stopped by the benchmark")
            t0 = time.thread_time()
            exec(code, ns)
            elapsed = time.thread_time() - t0
        return elapsed

    m = _medians({"plain": plain, "recorded": recorded, "stopped": stopped})
    p, r, s = m["plain"], m["recorded"], m["stopped"]
    return [f"| {framework} | x (4, 32), W (32, 32) | {p / steps * 1e6:.1f} µs | "
            f"{r / steps * 1e6:.1f} µs | {(r - p) / (3 * steps) * 1e6:.1f} µs | "
            f"{(s - p) / (3 * steps) * 1e6:.2f} µs |"]


#: The training loop's sizes: (batch, inputs, hidden, outputs, W1's scale, W2's scale). The
#: first is tiny (each call about 1 µs: what the record costs shows most); the second has the
#: sizes of makemore's MLP (karpathy/nn-zero-to-hero: a batch of 32, 3 characters of 10
#: dimensions, 200 hidden, 27 outputs), a loop as people run it.
LOOPS = {"tiny": (32, 16, 32, 4, 4, 6), "makemore-sized": (32, 30, 200, 27, 5, 14)}


def _training_loop(size: str = "tiny") -> list[str]:
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    from einsum_magic.magic import load_ipython_extension

    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    load_ipython_extension(ip)
    n, i, h, o, s1, s2 = LOOPS[size]
    setup = (f"import numpy as np\nrng = np.random.default_rng(0)\n"
             f"X = rng.normal(size=({n}, {i}))\nY = rng.normal(size=({n}, {o}))\n"
             f"W1 = rng.normal(size=({i}, {h})) / {s1}\nW2 = rng.normal(size=({h}, {o})) / {s2}\n")
    said = []

    def timed(source):
        def once():
            with capture_output() as cap:
                ip.run_cell(setup)
                t0 = time.thread_time()
                ip.run_cell(source)
                elapsed = time.thread_time() - t0
            said.append(cap.stdout)
            return elapsed
        return once

    from einsum_magic.chain import record

    def capped_at_one():                 # what the magic costs besides recording the loop
        cap = record.MAX_REPEATS
        record.MAX_REPEATS = 1
        try:
            return timed("%%einsum_grad --no-check\n" + TRAIN)()
        finally:
            record.MAX_REPEATS = cap

    fns = {"plain": timed(TRAIN), "magic": timed("%%einsum_grad --no-check\n" + TRAIN),
           "one": capped_at_one}
    for fn in fns.values():
        fn()
    runs = {k: [] for k in fns}
    for _ in range(LOOP_REPEATS):           # alternating: each magic run has its plain twin
        for k, fn in fns.items():
            runs[k].append(fn())
    assert any("not recorded" in s for s in said), said[-1]
    p = statistics.median(runs["plain"])
    what = f"X ({n}, {i}), W1 ({i}, {h}), W2 ({h}, {o})"

    def row(title, k):
        # what the magic adds: the median of the differences between each run and the plain
        # run next to it (a slow moment of a shared machine slows both)
        added = statistics.median(m - q for m, q in zip(runs[k], runs["plain"]))
        return (f"| {title} | {p * 1e3:.1f} ms | {statistics.median(runs[k]) * 1e3:.1f} ms | "
                f"{added * 1e3:+.2f} ms | {added / p * 100:+.1f} % |")

    return [row(f"1,000-step NumPy training loop (8 lines a step), {size}: {what}", "magic"),
            row("the same, the repeat cap set to 1 (the magic's cost besides recording)", "one")]


_BIG = r'''
import json, resource, statistics, sys, time, tracemalloc
import numpy as np
from IPython.testing import globalipapp
from IPython.utils.capture import capture_output
from einsum_magic.magic import load_ipython_extension
head, cell, memory = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
globalipapp.start_ipython(); ip = globalipapp.get_ipython(); load_ipython_extension(ip)
with capture_output():     # JAX imported and warm in every configuration, as after any check
    ip.run_cell("import numpy as np\nX = np.random.default_rng(0).standard_normal(20_000_000, "
                "dtype=np.float32)")
    ip.run_cell("%%einsum_grad\nA = np.ones((2, 3))\nB = np.tanh(A)\nc = B.sum()")
    ip.run_cell("del A, B, c")
out = {}
def once():
    with capture_output() as cap:
        ip.run_cell("Y = loss = None")
        ip.user_ns.pop("res", None)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.thread_time()
        ip.run_cell(head + cell)
        elapsed = time.thread_time() - t0
        return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
if memory:
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    once()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out.update(peak=peak - before, kept=now - before)
    res = ip.user_ns.get("res")
    b = getattr(res, "backward", None)
    if b is not None:
        values = b.recording.values.values()
        out["status"] = b.check.status if b.check is not None else b.check_note
        out["reason"] = b.check.reason if b.check is not None else ""
        out["float64"] = sum(v.nbytes for v in values if getattr(v, "dtype", None) == np.float64)
        out["own"] = all(any(v is ip.user_ns[k] for k in ("X", "Y")) or getattr(v, "ndim", 1) == 0
                         for v in values)
else:
    runs = [once() for _ in range(7)]
    out["time"], out["fastest"] = (statistics.median(t for t, _ in runs),
                                   min(t for t, _ in runs))
    out["faults"] = statistics.median(f for _, f in runs)
print(json.dumps(out))
'''


def _big_cell() -> list[str]:
    import os

    import einsum_magic

    root = str(Path(einsum_magic.__file__).resolve().parent.parent)   # the package measured here
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = ["| cell (X: 2·10⁷ float32, 76 MB) | CPU time of the cell: median (fastest) of 7 | "
            "page faults (median) | peak of allocations in the cell | kept after it | the check "
            "| float64 bytes the stored result holds |", "|---|---:|---:|---:|---:|---|---:|"]
    for label, head in (("plain", ""), ("`%%einsum_grad`", "%%einsum_grad\n"),
                        ("`%%einsum_grad -o res`", "%%einsum_grad -o res\n")):
        got = {}
        for memory in ("0", "1"):
            run = subprocess.run([sys.executable, "-c", _BIG, head, BIG, memory], env=env,
                                 capture_output=True, text=True, check=True)
            got.update(json.loads(run.stdout.strip().splitlines()[-1]))
        check = (f"{got['status']}: {got['reason']}" if "status" in got else "—")
        held = (f"{got['float64']} B" + (" (the run's own arrays only)" if got["own"] else "")
                if "float64" in got else "—")
        rows.append(f"| {label} | {got['time'] * 1e3:.0f} ms ({got['fastest'] * 1e3:.0f} ms) | "
                    f"{got['faults']:.0f} | {got['peak'] / 2**20:.1f} MB | "
                    f"{got['kept'] / 2**20:.1f} MB | {check} | {held} |")
    return rows


def run() -> list[str]:
    from einsum_magic.chain import record

    rows = [f"Repeat cap of the record: {record.MAX_REPEATS} calls of one line.", "",
            "| framework | arrays | plain, per step | recorded, per step | added per recorded "
            "call | added per call once the record stopped |", "|---|---|---:|---:|---:|---:|",
            *_per_call("numpy")]
    for framework in ("torch", "jax"):
        try:
            rows += _per_call(framework)
        except ImportError:
            rows.append(f"| {framework} | — | not measured: {framework} is not installed | | | |")
    rows += ["", "| cell | plain | under the magic (--no-check) | added (median of the runs' "
             "differences) | added / plain |", "|---|---:|---:|---:|---:|",
             *_training_loop("tiny"), *_training_loop("makemore-sized"), "", *_big_cell()]
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
