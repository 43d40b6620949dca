"""--expect at large sizes: grading works on letters and small stand-ins, never full-size arrays.

Each case runs ``%%einsum_grad --no-run --no-check --sizes i=20000,j=20000,k=3 --expect …`` in a
fresh interpreter (an ``InteractiveShell``), once cold (first cell after ``%load_ext``) and then
as the median of repeated warm runs, times :func:`einsum_magic.expect.judge` alone, and in a
second fresh interpreter reports the cold cell's peak of Python allocations (``tracemalloc``,
which slows Python, hence its own run) and the process's peak resident memory (``VmHWM``,
interpreter, NumPy and IPython included). A 20000 × 20000 float64 array alone would take 3.2 GB. Targets: under 1 s and
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
    cell, memory = sys.argv[1], sys.argv[2] == "memory"

    def once():
        with capture_output():
            t0 = time.perf_counter()
            shell.run_cell(cell)
            return time.perf_counter() - t0

    if memory:                        # tracemalloc slows Python down: a run of its own
        tracemalloc.start()
        once()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        try:     # this process's own peak: ru_maxrss also counts a large parent's (kept over exec)
            with open("/proc/self/status") as f:
                rss = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
        except (OSError, StopIteration):
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"peak": peak, "rss": rss}))
    else:
        from einsum_magic import derive
        from einsum_magic.expect import judge

        cold = once()
        warm = statistics.median(once() for _ in range(20))
        d = derive("ij,jk->ik", shapes=((20000, 20000), (20000, 3)))
        spec = cell.split("--expect ", 1)[1].split()[0].split("=", 1)[1]
        t0 = time.perf_counter()
        judge(d, "dL_dA", spec)
        grade = time.perf_counter() - t0
        print(json.dumps({"cold": cold, "warm": warm, "grade": grade}))
""")


def measure(spec: str) -> dict:
    cell = (f"%%einsum_grad --no-run --no-check --sizes {SIZES} --expect {spec}\n"
            "C = np.einsum('ij,jk->ik', A, B)")
    out = {}
    for mode in ("time", "memory"):
        run = subprocess.run([sys.executable, "-c", CHILD, cell, mode], capture_output=True,
                             text=True, check=True).stdout
        out.update(json.loads(run.strip().splitlines()[-1]))
    return out


def run() -> list[str]:
    rows = [f"Cell: `%%einsum_grad --no-run --no-check --sizes {SIZES} --expect SPEC` over "
            "`C = np.einsum('ij,jk->ik', A, B)` (A would be 20000 × 20000). Target: < 1 s, "
            "< 200 MB. *Cold* is the first cell after `%load_ext` (first use of Pygments' "
            "lexers included); *grading* is `judge()` alone (one call, after the cell).", "",
            "| proposal | `--expect` | cell, cold | cell, warm (median) | grading | peak Python "
            "allocations of the cold cell | peak RSS of the process |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for title, spec in CASES:
        m = measure(spec)
        rows.append(f"| {title} | `{spec}` | {m['cold'] * 1e3:.1f} ms | {m['warm'] * 1e3:.1f} ms | "
                    f"{m['grade'] * 1e3:.2f} ms | {m['peak'] / 1e6:.2f} MB | "
                    f"{m['rss'] / 1e6:.0f} MB |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
