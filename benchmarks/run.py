"""Run every benchmark of the project and write benchmarks/RESULTS.md.

    python benchmarks/run.py            # or: make bench

Each ``bench_*.py`` module beside this file has a ``run()`` that returns Markdown
lines; this script runs them in the order of SECTIONS and records the machine.
"""

from __future__ import annotations

import datetime
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine  # noqa: E402

SECTIONS = [
    ("bench_derive", "derive()"),
    ("bench_check", "check() on the default JAX device"),
    ("bench_first_check", "The first checked cell after %load_ext (fresh processes)"),
    ("bench_magic", "%%einsum_grad render time (no check)"),
    ("bench_expect", "--expect at 20000 x 20000 (grading never builds full-size arrays)"),
    ("bench_diagram", "What the Diagram tab and the letter colours add to a render"),
    ("bench_pages", "How heavy a display is: bytes per display, stylesheet, SVG, marks"),
    ("bench_capture", "Observing the run: a loop of 10^4 np.einsum calls under the magic"),
    ("bench_record", "Recording the run (the cell backward's record): per call, a training loop, a large cell"),
    ("bench_flops", "XLA FLOPs: exported backward vs jax.vjp of jnp.einsum"),
    ("bench_chain", "XLA FLOPs of a whole cell: exported backward vs jax.vjp of the jnp forward"),
]


def main() -> int:
    only = set(sys.argv[1:])
    out = ["# Benchmark results", "",
           f"Machine: {machine()}  ", f"Date: {datetime.date.today().isoformat()}  ",
           "Command: `python benchmarks/run.py` (medians of repeated runs)", ""]
    for module, title in SECTIONS:
        if only and module not in only:
            continue
        print(f"running {module} ...", flush=True)
        rows = importlib.import_module(module).run()
        out += [f"## {title}", "", *rows, ""]
    out += ["## On a GPU", "",
            "Wall times of the exported JAX backward against `jax.vjp` at realistic sizes come from "
            "`python benchmarks/bench_backward_gpu.py` on a GPU machine; `bench_check` above reports "
            "the device it ran on.", "",
            "| row | figure |", "|---|---|",
            "| check() on a GPU | not measured: no GPU was lent to this round's reliability task |",
            "| bench_backward_gpu.py: exported backward / jax.vjp wall time | not measured: no GPU "
            "was lent to this round's reliability task |", ""]
    text = "\n".join(out)
    print(text)
    if not only:
        (HERE / "RESULTS.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
