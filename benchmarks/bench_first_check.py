"""The first checked cell after ``%load_ext einsum_magic`` against a warm one, in fresh processes.

Each run is a fresh Python process with an IPython shell (the text view, as in a terminal
or under nbval): ``%load_ext einsum_magic``, then one ``%%einsum_grad`` cell timed five
times. The first run pays what a session pays once: importing and starting JAX (timed
apart, around ``einsum_magic.check.jax._start_jax``), compiling the check's functions (the
report's ``compile_ms``) and the first import of the views; the warm time is the median
of the later runs. Target: first - warm <= 0.5 s on the 2-core CPU of RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from common import fmt_ms

CELLS = [
    ("matmul", "C = np.einsum('ij,jk->ik', A, B)"),
    ("three operands", "D = np.einsum('ij,jk,kl->il', A, B, E)"),
]
RUNS = 5          # fresh processes per cell
REPEAT = 5        # runs of the cell in each process (the first is the cold one)
TARGET = 0.5      # seconds the first checked cell may cost beyond a warm one

_RUN = r"""
import json, sys, time
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
ip.run_cell("import numpy as np\nA = np.ones((2, 3))\nB = np.ones((3, 4))\nE = np.ones((4, 5))")
t = time.perf_counter()
ip.run_line_magic("load_ext", "einsum_magic")
load = time.perf_counter() - t
import importlib
checking = importlib.import_module("einsum_magic.check.jax")
start = []
real = checking._start_jax
def timed_start():
    t0 = time.perf_counter()
    out = real()
    start.append(time.perf_counter() - t0)
    return out
checking._start_jax = timed_start
cell = "%%einsum_grad -o res\n" + sys.argv[1]
times, compiles = [], []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    result = ip.run_cell(cell)
    times.append(time.perf_counter() - t0)
    assert result.success, result.error_in_exec
    compiles.append(ip.user_ns["res"].report.timings["compile_ms"] / 1e3)
    del ip.user_ns["res"]
import statistics
print(json.dumps({"load_ext": load, "first": times[0], "warm": statistics.median(times[1:]),
                  "jax_start": start[0], "compile": compiles[0]}))
"""


def measure(cell: str) -> tuple[dict, dict]:
    """Median and minimum over fresh processes of each figure, and of first - warm."""
    runs = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", _RUN, cell, str(REPEAT)], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r["extra"] = r["first"] - r["warm"]
        r["rest"] = r["extra"] - r["jax_start"] - r["compile"]
        runs.append(r)
    return ({k: statistics.median(r[k] for r in runs) for k in runs[0]},
            {k: min(r[k] for r in runs) for k in runs[0]})


def run() -> list[str]:
    import os

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows = [f"Median (minimum) over {RUNS} fresh processes. Load average of the machine when "
            f"measured (1, 5, 15 min): {load}: the figures are wall times, which other work on the "
            "two cores inflates; the minimum is the closest to an idle machine.", "",
            "| cell | %load_ext | first checked cell | warm cell (median) | first - warm "
            "| of which: import + start JAX | first compile | rest |",
            "|---|---|---|---|---|---|---|---|"]
    verdicts = []
    for name, cell in CELLS:
        med, low = measure(cell)
        rows.append(f"| {name}: `{cell}` | " + " | ".join(
            f"{fmt_ms(med[k])} ({fmt_ms(low[k])})"
            for k in ("load_ext", "first", "warm", "extra", "jax_start", "compile", "rest")) + " |")
        without_jax = med["extra"] - med["jax_start"]
        verdicts.append(
            f"- {name}: first - warm {med['extra']:.3f} s (target {TARGET} s: "
            f"{'met' if med['extra'] <= TARGET else 'not met'}); without importing and starting "
            f"JAX {without_jax:.3f} s ({'met' if without_jax <= TARGET else 'not met'}); without "
            f"the first compile too, what einsum_magic adds: {med['rest']:.3f} s "
            f"({'met' if med['rest'] <= TARGET else 'not met'})")
    return rows + ["", "Medians against the target:", "", *verdicts]


if __name__ == "__main__":
    print("\n".join(run()))
