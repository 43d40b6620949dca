"""derive(): parse + the swap rule + loops + readings, uncached and cached (budget: well under 1 ms).

"Uncached" clears every cache first, so it is the cost of a new equation."""

from __future__ import annotations

from common import fmt_ms, median_seconds

from einsum_magic import derive
from einsum_magic.derivation import _derive
from einsum_magic.reading import interpret

CASES = [
    ("ij,jk->ik", None),
    ("ij,jk,kl->il", None),
    ("bhqd,bhkd,bhkv->bhqv", None),
    ("ijji,kji,jj->kj", None),
    ("...ij,...jk->...ik", ((1, 2, 3), (5, 3, 4))),
]


def run() -> list[str]:
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


if __name__ == "__main__":
    print("\n".join(run()))
