"""The two-layer MLP with a softmax that several chain tests run as a NumPy cell.

:data:`MLP_CELL` is the cell; :func:`arrays` its inputs, drawn from one seeded generator
(a test module passes its own generator, so that what it draws next stays as it was).

>>> sorted(arrays(1)), arrays(1)["W1"].shape
(['W1', 'W2', 'X', 'b1'], (3, 5))
"""

from __future__ import annotations

import numpy as np

MLP_CELL = """H = np.einsum('bi,ij->bj', X, W1) + b1
Z = np.maximum(H, 0)
S = np.einsum('bj,jk->bk', Z, W2)
P = np.exp(S - S.max(axis=1, keepdims=True)); P = P / P.sum(axis=1, keepdims=True)
"""


def arrays(rng) -> dict:
    """X (4, 3), W1 (3, 5), b1 (5,), W2 (5, 2), standard normal, in that order, from ``rng``
    (a seed, or a generator the test module goes on drawing from)."""
    rng = np.random.default_rng(rng)
    return {"X": rng.normal(size=(4, 3)), "W1": rng.normal(size=(3, 5)),
            "b1": rng.normal(size=5), "W2": rng.normal(size=(5, 2))}
