"""What recording a run costs (the cell backward's record), per call and on a training loop.

1. Per call: a loop of N steps ``h = tanh(h @ W) + b`` (3 calls a step) runs plain, then
   inside :func:`einsum_magic.chain.recorders.recording` (every call recorded), in NumPy
   and in torch. N = 200 stays under the record's repeat cap (256 calls of one line), so
   every call is recorded. Added per call = (recorded - plain) / (3 N).
2. A 1,000-step training loop (forward, loss, hand-written gradient step) as a whole cell
   under ``%%einsum_grad --no-check`` against the same cell without the magic, through a
   real IPython shell: the record stops at the repeat cap and the rest of the run is plain.

The fastest of 5 alternating runs of each (the machine is shared with other work).
"""

from __future__ import annotations

import time

import numpy as np

N = 200
STEP = """
h = x
for _k in range(N):
    h = np.tanh(h @ W) + b
"""
TORCH_STEP = STEP.replace("np.tanh", "torch.tanh")
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


def _best(fn, repeats=5):
    return min(fn() for _ in range(repeats))


def _per_call(framework: str) -> str:
    from einsum_magic.chain.recorders import recording

    rng = np.random.default_rng(0)
    x, W, b = rng.normal(size=(4, 32)), rng.normal(size=(32, 32)) / 32, rng.normal(size=32)
    if framework == "torch":
        import torch

        base = {"torch": torch, "N": N, "x": torch.tensor(x), "W": torch.tensor(W),
                "b": torch.tensor(b)}
        code = compile(TORCH_STEP, "<cell>", "exec")
    else:
        base = {"np": np, "N": N, "x": x, "W": W, "b": b}
        code = compile(STEP, "<cell>", "exec")

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
        assert len(rec.nodes) >= 3 * N and not rec.stopped, rec.stopped
        return elapsed

    p, r = _best(plain), _best(recorded)
    return (f"| {framework} | x (4, 32), W (32, 32) | {p / N * 1e6:.1f} µs | {r / N * 1e6:.1f} µs | "
            f"{(r - p) / (3 * N) * 1e6:.1f} µs |")


def _training_loop() -> str:
    from IPython.testing import globalipapp
    from IPython.utils.capture import capture_output

    from einsum_magic.magic import load_ipython_extension

    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    load_ipython_extension(ip)
    setup = ("import numpy as np\nrng = np.random.default_rng(0)\nX = rng.normal(size=(32, 16))\n"
             "Y = rng.normal(size=(32, 4))\nW1 = rng.normal(size=(16, 32)) / 4\n"
             "W2 = rng.normal(size=(32, 4)) / 6\n")

    def timed(source):
        def once():
            with capture_output():
                ip.run_cell(setup)
                t0 = time.perf_counter()
                ip.run_cell(source)
                return time.perf_counter() - t0
        return once

    p = _best(timed(TRAIN))
    m = _best(timed("%%einsum_grad --no-check\n" + TRAIN))
    return (f"| 1,000-step NumPy training loop (8 calls a step) | {p * 1e3:.1f} ms | "
            f"{m * 1e3:.1f} ms | {(m / p - 1) * 100:+.0f} % |")


def run() -> list[str]:
    rows = ["| framework | arrays | plain, per step | recorded, per step | added per call |",
            "|---|---|---:|---:|---:|", _per_call("numpy")]
    try:
        rows.append(_per_call("torch"))
    except ImportError:
        rows.append("| torch | — | not measured: torch is not installed | | |")
    rows += ["", "| cell | plain | under the magic (--no-check) | added |", "|---|---:|---:|---:|",
             _training_loop()]
    return rows


if __name__ == "__main__":
    print("\n".join(run()))
