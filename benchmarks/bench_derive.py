"""derive(): parse + the swap rule + loops + readings, uncached and cached (budget: well under 1 ms).

"Uncached" clears every cache first, so it is the cost of a new equation. Then
``Derivation.vjp`` (NumPy, running ``Grad.code``) on chains of several operands: with the
opt_einsum path written into the code, and the same einsums without ``optimize=`` (what
``vjp`` ran before), which NumPy evaluates as one loop nest over every letter."""

from __future__ import annotations

import time

import numpy as np
from common import fmt_ms, median_seconds

from einsum_magic import derive
from einsum_magic.core.derivation import _derive
from einsum_magic.core.interpret import interpret

CASES = [
    ("ij,jk->ik", None),
    ("ij,jk,kl->il", None),
    ("bhqd,bhkd,bhkv->bhqv", None),
    ("ijji,kji,jj->kj", None),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))),
]


def derive_rows() -> list[str]:
    rows = ["| equation | shapes | derive, uncached (median) | derive, cached (median) |",
            "|---|---|---|---|"]
    for eq, shapes in CASES:
        def uncached():
            _derive.cache_clear()
            interpret.cache_clear()
            derive(eq, shapes=shapes)

        cold = median_seconds(uncached, repeat=300)
        warm = median_seconds(lambda: derive(eq, shapes=shapes), repeat=1000)
        rows.append(f"| `{eq}` | {shapes or '-'} | {fmt_ms(cold)} | {fmt_ms(warm)} |")
    return rows


VJP_CASES = [
    ("ij,jk,kl->il", ((40, 40), (40, 40), (40, 40))),
    ("ij,jk,kl,lm,mn->in", ((16, 16), (16, 16), (16, 16), (16, 16), (16, 16))),
]


def vjp_rows() -> list[str]:
    rows = ["| equation | shapes | d.vjp, opt_einsum path in the code (median) "
            "| the same einsums without optimize= (one run) |", "|---|---|---|---|"]
    for eq, shapes in VJP_CASES:
        d = derive(eq, shapes=shapes)
        rng = np.random.default_rng(0)
        ops = [rng.standard_normal(s) for s in shapes]
        cot = rng.standard_normal(d.output_shape)
        with_path = median_seconds(lambda: d.vjp(cot, *ops), repeat=20, warmup=2)
        ns = {"np": np, d.cotangent: cot, **dict(zip(d.names, ops))}
        plain = [g.code.split(", optimize=")[0] + ")" for g in d.grads]
        t0 = time.perf_counter()
        for code in plain:
            exec(code, ns)
        without = time.perf_counter() - t0
        got = d.vjp(cot, *ops)
        assert all(np.allclose(ns[g.target], x) for g, x in zip(d.grads, got))
        rows.append(f"| `{eq}` | {shapes[0]} each | {fmt_ms(with_path)} | {fmt_ms(without)} |")
    return rows


def run() -> list[str]:
    return derive_rows() + ["", "Derivation.vjp (NumPy):", ""] + vjp_rows()


if __name__ == "__main__":
    print("\n".join(run()))
