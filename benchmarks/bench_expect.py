"""--expect at large sizes: grading works on letters and small stand-ins, never full-size arrays.

Each case runs ``%%einsum_grad --no-run --no-check --sizes i=20000,j=20000,k=3 --expect …`` in a
fresh interpreter (an ``InteractiveShell``), once cold (first cell after ``%load_ext``) and then
as the median of repeated warm runs, and reports the cell's peak of Python allocations
(``tracemalloc``) and the process's peak resident memory (``ru_maxrss``, interpreter, NumPy and
IPython included). A 20000 × 20000 float64 array alone would take 3.2 GB. Targets: under 1 s and
under 200 MB.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SIZES = "i=20000,j=20000,k=3"
CASES = [
    ("right", "A=ik,jk->ij"),
    ("transposed operand", "A=ik,kj->ij"),
    ("wrong order", "A=jk,ik->ij"),
    ("transposed result", "A=ik,jk->ji"),
    ("blank", "A=?"),
]

CHILD = textwrap.dedent("""
    import json, resource, statistics, sys, time, tracemalloc
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "einsum_magic")
    cell = sys.argv[1]

    def once():
        with capture_output():
            t0 = time.perf_counter()
            shell.run_cell(cell)
            return time.perf_counter() - t0

    tracemalloc.start()
    cold = once()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    warm = statistics.median(once() for _ in range(20))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"cold": cold, "warm": warm, "peak": peak, "rss": rss}))
""")


def measure(spec: str) -> dict:
    cell = (f"%%einsum_grad --no-run --no-check --sizes {SIZES} --expect {spec}\n"
            "C = np.einsum('ij,jk->ik', A, B)")
    out = subprocess.run([sys.executable, "-c", CHILD, cell], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run() -> list[str]:
    rows = [f"Cell: `%%einsum_grad --no-run --no-check --sizes {SIZES} --expect SPEC` over "
            "`C = np.einsum('ij,jk->ik', A, B)` (A would be 20000 × 20000). Target: < 1 s, "
            "< 200 MB.", "",
            "| proposal | `--expect` | cell, cold | cell, warm (median) | peak Python allocations "
            "of the cold cell | peak RSS of the process |", "|---|---|---:|---:|---:|---:|"]
    for title, spec in CASES:
        m = measure(spec)
        rows.append(f"| {title} | `{spec}` | {m['cold'] * 1e3:.1f} ms | {m['warm'] * 1e3:.1f} ms | "
                    f"{m['peak'] / 1e6:.2f} MB | {m['rss'] / 1e6:.0f} MB |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
