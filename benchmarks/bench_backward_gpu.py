"""Wall time of the exported JAX backward against jax.vjp of jnp.einsum, on the default device.

    python benchmarks/bench_backward_gpu.py            # the suite of bench_flops at its sizes
    python benchmarks/bench_backward_gpu.py --small    # sizes / 16, a quick run on a CPU

For every case of :data:`bench_flops.SUITE`, both functions of the operands and the cotangent
return the forward output and every gradient (forward + pullback, ``jax.jit``-compiled), on
the same seeded float32 arrays. Timing is warm (compiled and run first), each call ends in
``jax.block_until_ready``, the two are run alternately, and the median of ``--repeat`` calls
(at least 20) is reported. Prints a Markdown table headed by the device's name.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench_flops import derivations  # noqa: E402
from xla_flops import vjp_function  # noqa: E402


def _call(fn, args) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def time_pair(d, repeat: int, warmup: int = 3) -> tuple[float, float]:
    """Median seconds of (autodiff, exported) forward + pullback for ``d``'s shapes."""
    rng = np.random.default_rng(0)
    shapes = dict(zip(d.names, d.shapes))
    args = [jax.device_put(rng.standard_normal(shapes[n]).astype(np.float32))
            for n in dict.fromkeys(d.names)]
    args.append(jax.device_put(rng.standard_normal(d.output_shape).astype(np.float32)))
    fns = [jax.jit(vjp_function(d, which)) for which in ("autodiff", "exported")]
    for fn in fns:
        for _ in range(1 + warmup):
            jax.block_until_ready(fn(*args))
    times: list[list[float]] = [[], []]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            times[k].append(_call(fn, args))
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="sizes / 16: a quick check on a CPU")
    parser.add_argument("--repeat", type=int, default=50, help="timed calls per case (>= 20)")
    args = parser.parse_args(argv)
    repeat = max(20, args.repeat)
    device = jax.devices()[0]
    print(f"Device: {device.device_kind} ({device.platform}), jax {jax.__version__}, float32, "
          f"median of {repeat} warm calls of jit(forward + pullback)"
          f"{', sizes / 16' if args.small else ''}")
    print()
    print("| case | einsum | shapes | jax.vjp(jnp.einsum) | exported | ratio |")
    print("|---|---|---|---:|---:|---:|")
    ratios = []
    for label, d in derivations(16 if args.small else 1):
        autodiff, exported = time_pair(d, repeat)
        ratios.append(exported / autodiff)
        shapes = ", ".join(str(s) for s in d.shapes)
        print(f"| {label} | `{d.equation}` | {shapes} | {autodiff * 1e3:.3f} ms | "
              f"{exported * 1e3:.3f} ms | {exported / autodiff:.2f} |", flush=True)
    print()
    print(f"Geometric mean ratio {statistics.geometric_mean(ratios):.2f}, worst {max(ratios):.2f}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
