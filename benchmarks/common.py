"""Timing helpers shared by the benchmarks: medians of repeated runs, and the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
import time


def median_seconds(fn, repeat: int = 200, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> str:
    """One line on the machine the figures came from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"
