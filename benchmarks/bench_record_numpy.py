"""Overhead of recording a NumPy run (einsum_magic.chain.recorders.numpy), per call.

A loop of N elementwise and product calls on small arrays runs twice in one namespace:
plain, and inside :func:`einsum_magic.chain.record.recording` (the arrays boxed, every call
recorded). Per-call cost added = (recorded - plain) / calls. The fastest of 5 alternating
runs of each (the machine is shared with other work). The record of N = 3,000 steps holds
9,000 nodes, under the default node limit.
"""

from __future__ import annotations

import time

import numpy as np

N = 3_000
CELL = """
h = x
for _k in range(N):
    h = np.tanh(h @ W) + b
"""


def run() -> list[str]:
    from einsum_magic.chain.record import recording

    rng = np.random.default_rng(0)
    rows = ["| arrays | plain, per step | recorded, per step | added per call (3 calls a step) |",
            "|---|---:|---:|---:|"]
    for size in (8, 64):
        base = {"np": np, "N": N, "x": rng.normal(size=(4, size)),
                "W": rng.normal(size=(size, size)) / size, "b": rng.normal(size=size)}
        code = compile(CELL, "<cell>", "exec")

        def plain():
            ns = dict(base)
            t0 = time.perf_counter()
            exec(code, ns)
            return time.perf_counter() - t0

        def recorded():
            ns = dict(base)
            t0 = time.perf_counter()
            with recording(ns) as rec:
                exec(code, ns)
            elapsed = time.perf_counter() - t0
            assert len(rec.nodes) == 3 * N and not rec.stopped, rec.stopped
            return elapsed

        times = [(plain(), recorded()) for _ in range(5)]
        p = min(t for t, _ in times)
        r = min(t for _, t in times)
        rows.append(f"| x (4, {size}), W ({size}, {size}) | {p / N * 1e6:.1f} µs | "
                    f"{r / N * 1e6:.1f} µs | {(r - p) / (3 * N) * 1e6:.1f} µs |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
