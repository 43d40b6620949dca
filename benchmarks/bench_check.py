"""check(): the inline gradient check against jax.vjp, cold (fresh process) and warm, on JAX's default device.

Cold: a fresh Python process imports JAX and runs its first check, compiles included
(median of a few processes). Warm: the same check again in one process, where the
compiled functions are cached (median of many), with the report's own warm timings of
the derived einsums and of ``jax.vjp`` (best of 3 runs each, ``block_until_ready``).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from common import fmt_ms, median_seconds

from einsum_magic import derive
from einsum_magic.check.report import check

CASES = [
    ("ij,jk->ik", ((2, 3), (3, 4))),
    ("bhqd,bhkd->bhqk", ((4, 8, 64, 32), (4, 8, 64, 32))),
    ("ijji,kji,jj->kj", ((2, 3, 3, 2), (4, 3, 2), (3, 3))),
]
COLD_RUNS = 3
WARM_RUNS = 200

_COLD = """
import json, sys, time
t0 = time.perf_counter()
import jax
t1 = time.perf_counter()
from einsum_magic import derive
from einsum_magic.check.report import check
report = check(derive(sys.argv[1], shapes=json.loads(sys.argv[2])))
t2 = time.perf_counter()
assert report.passed, report
print(json.dumps({"import_jax": t1 - t0, "first_check": t2 - t1,
                  "compile_ms": report.timings["compile_ms"]}))
"""


def cold(equation: str, shapes) -> dict:
    """Median over fresh processes of: JAX's import, the first check (compiles included)."""
    runs = []
    for _ in range(COLD_RUNS):
        out = subprocess.run([sys.executable, "-c", _COLD, equation, json.dumps(shapes)],
                             check=True, capture_output=True, text=True).stdout
        runs.append(json.loads(out))
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def device_line() -> str:
    import jax

    report = check(derive("i->", shapes=((2,),)))
    return (f"Device: {report.device} (JAX {jax.__version__}, backend {report.backend}, "
            f"precision {report.precision})")


def run() -> list[str]:
    rows = [device_line(), "",
            "| equation | shapes | import jax (cold) | first check (cold, compiles) | of which compile "
            "| check (warm, median) | derived einsums (warm) | jax.vjp (warm) |",
            "|---|---|---|---|---|---|---|---|"]
    for eq, shapes in CASES:
        c = cold(eq, shapes)
        d = derive(eq, shapes=shapes)
        check(d)
        warm = median_seconds(lambda: check(d), repeat=WARM_RUNS)
        reports = [check(d) for _ in range(20)]
        derived = statistics.median(r.timings["derived_ms"] for r in reports) / 1e3
        vjp = statistics.median(r.timings["jax_vjp_ms"] for r in reports) / 1e3
        shown = " ".join(str(tuple(s)) for s in shapes)
        rows.append(f"| `{eq}` | {shown} | {fmt_ms(c['import_jax'])} | {fmt_ms(c['first_check'])} "
                    f"| {fmt_ms(c['compile_ms'] / 1e3)} | {fmt_ms(warm)} | {fmt_ms(derived)} "
                    f"| {fmt_ms(vjp)} |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
