"""Overhead of observing the run: a cell calling np.einsum 10^4 times, with and without the magic.

Both run through ``shell.run_cell`` in one ``InteractiveShell``:

* *plain*: the loop cell as it is;
* *magic*: the same cell under ``%%einsum_grad --no-check`` (the capture of
  :mod:`einsum_magic.cell.capture` observes every call), minus the analysis of its one call
  site, which is measured as the magic's extra time on the same cell looping once.

overhead = (magic(10^4) - (magic(1) - plain(1))) / plain(10^4) - 1; target <= 5 %.
The fastest of 9 alternating runs of each (the machine is shared with other work).
The per-call cost of the observing wrapper is about the same for every size; the
overhead in percent depends on how long one einsum takes.

A second table measures the observer alone, in one process without IPython: batches of
1,000 calls, plain and inside a ``Capture`` (its site already seen), interleaved 300
times; the fastest batch and the median batch of each (a shared machine: the fastest
shows the cost, the median what a busy machine sees).
"""

from __future__ import annotations

import statistics
import time

N = 10_000
CASES = [
    ("matmul 64x128 @ 128x64", "ij,jk->ik", ((64, 128), (128, 64))),
    ("matmul 32x64 @ 64x32", "ij,jk->ik", ((32, 64), (64, 32))),
    ("attention scores, 4 heads x 16 x 16 x 8", "hqd,hkd->hqk", ((4, 16, 8), (4, 16, 8))),
    ("tiny: 10x10 @ 10x10", "ij,jk->ik", ((10, 10), (10, 10))),
]


def _cell(equation: str, n: int) -> str:
    return f"for _k in range({n}):\n    _C = np.einsum({equation!r}, _X, _Y)"


def run() -> list[str]:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "einsum_magic")
    shell.run_line_magic("config", "EinsumGradMagics.view = 'text'")
    shell.run_cell("import numpy as np")

    def once(cell: str) -> float:
        with capture_output():
            t0 = time.perf_counter()
            result = shell.run_cell(cell)
            elapsed = time.perf_counter() - t0
        assert result.success, result.error_in_exec
        return elapsed

    def timed(a: str, b: str, repeat: int) -> tuple[float, float]:
        """Fastest of ``repeat`` alternating runs of cells ``a`` and ``b`` (a shared machine)."""
        once(a), once(b)
        times = [(once(a), once(b)) for _ in range(repeat)]
        return min(t for t, _ in times), min(t for _, t in times)

    rows = [f"A cell looping {N:,} times over one `np.einsum` call, under "
            "`%%einsum_grad --no-check` against the plain cell, the analysis of its one site "
            "excluded. Target: <= 5 %.", "",
            "| einsum | one call, plain | plain cell | magic cell, run part | per call added | "
            "overhead |", "|---|---:|---:|---:|---:|---:|"]
    for label, equation, (x, y) in CASES:
        shell.run_cell(f"_X = np.random.default_rng(0).normal(size={x})\n"
                       f"_Y = np.random.default_rng(1).normal(size={y})")
        magic = "%%einsum_grad --no-check\n"
        plain_n, magic_n = timed(_cell(equation, N), magic + _cell(equation, N), 9)
        plain_1, magic_1 = timed(_cell(equation, 1), magic + _cell(equation, 1), 15)
        analysis = magic_1 - plain_1
        run_part = magic_n - analysis
        overhead = run_part / plain_n - 1
        rows.append(f"| {label} (`{equation}`) | {plain_n / N * 1e6:.2f} us | "
                    f"{plain_n * 1e3:.1f} ms | {run_part * 1e3:.1f} ms | "
                    f"{(run_part - plain_n) / N * 1e6:.2f} us | {overhead:+.1%} |")
    rows += ["", "The added time per call is the observer's (a lookup by calling instruction, the "
             "identity of the equation and operands, their shapes compared when they are new "
             "objects); it is a fixed cost, so an einsum of a few microseconds (the tiny case) "
             "sees a larger share.", "", *observer_rows(), "", *torch_rows()]
    return rows


def observer_rows(batch: int = 1_000, repeat: int = 300) -> list[str]:
    """The observer alone: interleaved batches of ``batch`` calls, fastest and median."""
    import numpy as np

    from einsum_magic.cell.capture import Capture

    rows = [f"The observer alone (no IPython): {repeat} interleaved batches of {batch:,} calls, "
            "plain and observed; fastest batch (median batch). *New operands*: each call "
            "takes the next of 8 arrays of the same shapes (a loop over batches), so the "
            "operands are compared by shape, not identity.", "",
            "| einsum | one call, plain | per call added | overhead |", "|---|---:|---:|---:|"]
    cases = [(label, equation, shapes, False) for label, equation, shapes in CASES[1:]]
    cases.append((CASES[-1][0] + ", new operands", *CASES[-1][1:], True))
    for label, equation, (x, y), new in cases:     # the largest: 0.1 s a batch, noise only
        namespace = {"np": np}
        if new:
            exec(f"def loop(Xs, Y):\n    for k in range({batch}):\n"
                 f"        np.einsum({equation!r}, Xs[k & 7], Y)\n", namespace)
        else:
            exec(f"def loop(X, Y):\n    for _ in range({batch}):\n"
                 f"        np.einsum({equation!r}, X, Y)\n", namespace)
        loop = namespace["loop"]
        rng = np.random.default_rng(0)
        X, Y = rng.normal(size=x), np.random.default_rng(1).normal(size=y)
        if new:
            X = [rng.normal(size=x) for _ in range(8)]
        plain, observed = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            loop(X, Y)
            plain.append((time.perf_counter() - t) / batch)
            with Capture({}):
                loop(X, Y)                  # the site's first call is not the steady state
                t = time.perf_counter()
                loop(X, Y)
                observed.append((time.perf_counter() - t) / batch)
        fast, mid = min(plain), statistics.median(plain)
        add_fast, add_mid = min(observed) - fast, statistics.median(observed) - mid
        rows.append(f"| {label} (`{equation}`) | {fast * 1e6:.2f} us ({mid * 1e6:.2f}) | "
                    f"{add_fast * 1e6:.2f} us ({add_mid * 1e6:.2f}) | "
                    f"{add_fast / fast:+.1%} ({add_mid / mid:+.1%}) |")
    return rows



def torch_rows(batch: int = 1_000, repeat: int = 100) -> list[str]:
    """torch.einsum through its stand-in (as numpy's); other torch calls are not touched.

    A last row measures the same path with torch's einsum kernel stubbed: ``torch.einsum``
    runs as it does (its Python, its two ``import`` statements, the stand-in, the counter)
    but ``_VF.einsum`` returns a tensor made beforehand. The observer never looks at what
    the kernel computes, so what it adds is the same as with the kernel; a 1.4 us call
    measures it without the noise of a 10 us one (whose batches move by more than the
    observer's whole cost on a shared machine). The added time there is the median of the
    paired differences (each observed batch against the plain batch beside it) and the
    fastest-batch difference.
    """
    try:
        import torch
    except ImportError:                     # pragma: no cover
        return ["torch: not installed, not measured"]
    import torch.functional as functional

    from einsum_magic.cell.capture import Capture

    x, y = torch.ones(8, 8), torch.ones(8, 8)
    rows = [f"torch, observed through the stand-in of `torch.einsum`: {repeat} interleaved "
            f"batches of "
            f"{batch:,} calls on 8x8 tensors; fastest batch (median batch). Last row: the "
            "kernel stubbed, the observer's cost alone (median of paired differences; "
            "fastest-batch difference).", "",
            "| call | plain | observed | per call added |", "|---|---:|---:|---:|"]

    class Stubbed:                          # torch._VF, but its einsum returns at once
        made = torch.ones(8, 8)

        def __getattr__(self, name):
            return getattr(vf, name)

        def einsum(self, equation, operands, path=None):
            return self.made

    def einsum():
        return torch.einsum("ij,jk->ik", x, y)

    cases = (("`torch.einsum('ij,jk->ik', x, y)`", einsum, False),
             ("`torch.add(x, y)` (not an einsum)", lambda: torch.add(x, y), False),
             ("`torch.einsum('ij,jk->ik', x, y)`, kernel stubbed", einsum, True))
    vf = functional._VF
    for label, call, stub in cases:
        def loop(n=batch, call=call):
            for _ in range(n):
                call()
        plain, observed = [], []
        functional._VF = Stubbed() if stub else vf
        try:
            for _ in range(repeat * (3 if stub else 1)):
                t = time.perf_counter()
                loop()
                plain.append((time.perf_counter() - t) / batch)
                with Capture({}):
                    loop(1)
                    t = time.perf_counter()
                    loop()
                    observed.append((time.perf_counter() - t) / batch)
        finally:
            functional._VF = vf
        added = f"{(min(observed) - min(plain)) * 1e6:.2f} us"
        if stub:
            paired = statistics.median(o - p for o, p in zip(observed, plain))
            added = f"{paired * 1e6:.2f} us ({added})"
        rows.append(f"| {label} | {min(plain) * 1e6:.2f} us ({statistics.median(plain) * 1e6:.2f})"
                    f" | {min(observed) * 1e6:.2f} us ({statistics.median(observed) * 1e6:.2f}) | "
                    f"{added} |")
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
