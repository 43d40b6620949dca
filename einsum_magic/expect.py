"""Teaching: judge a learner's proposed backward einsum (``%%einsum_grad --expect A=SPEC``).

This module owns one question: is ``SPEC`` a right backward einsum for an operand of a
derivation bound to shapes? It answers numerically, on seeded random operands, so any
relabelling of the letters passes, and in words: correct, wrong output shape (what it
is and what it must be), wrong values, or not a valid einsum (with the caret).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

from .equation import bind, parse
from .errors import EinsumError

__all__ = ["Expectation", "judge"]


@dataclass(frozen=True)
class Expectation:
    """The verdict on one ``--expect TARGET=PROPOSAL``.

    ``verdict`` is ``'correct'``, ``'wrong shape'``, ``'wrong values'`` or ``'invalid'``;
    ``message`` says why in words (an invalid einsum adds the caret lines).
    """

    target: str
    proposal: str
    verdict: str
    message: str

    @property
    def passed(self) -> bool:
        return self.verdict == "correct"



def judge(derivation, target: str, proposal: str, seed: int = 0) -> Expectation:
    """Check a proposed backward einsum for gradient ``target`` of a shaped ``derivation``.

    The proposal is evaluated with ``np.einsum`` on seeded random float64 operands
    over (the cotangent, the other operands in order) — or those followed by the
    derived auxiliary tensors (``np.eye``/``np.ones``) in the derived order — and
    compared with the derived gradient, so any relabelling passes. When that order
    gives the wrong answer, the other orders of the same operands are tried: a
    proposal that is right with its operands reordered passes, and says so.

    >>> from einsum_magic import derive
    >>> d = derive("ij,jk->ik", names=("A", "B"), output="C", shapes=((2, 3), (3, 4)))
    >>> judge(d, "dL_dA", "ab,cb->ac").verdict
    'correct'
    >>> judge(d, "dL_dA", "ik,jk->i").message
    "wrong output shape: the proposal gives (2,), dL_dA must have A's shape (2, 3)"
    >>> judge(d, "dL_dA", "ik,jl->ij").verdict
    'wrong values'
    >>> judge(d, "dL_dA", "jk,ik->ij").message
    'correct, with the operands in the order (B, dL_dC)'
    """
    grad = next(g for g in derivation.grads if g.target == target)
    try:
        eq = parse(proposal)
    except EinsumError as e:
        return Expectation(target, proposal, "invalid", f"not a valid einsum: {e}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EinsumError(f"the seed must be a non-negative integer, not {seed!r}")
    rng = np.random.default_rng(seed)
    ops = [rng.standard_normal(s) for s in derivation.shapes]
    cot = rng.standard_normal(derivation.output_shape)
    others = [ops[m] for m in range(len(ops)) if m != grad.position]
    aux = [getattr(np, a.kind)(ops[grad.position].shape[a.axis]) for a in grad.aux]
    want = np.einsum(grad.equation, cot, *others, *aux)
    n = len(eq.inputs)
    labels = [derivation.cotangent] + [grad.arguments[1 + m] for m in range(len(others))]
    if n == 1 + len(others):
        args = [cot, *others]
    elif aux and n == 1 + len(others) + len(aux):
        args = [cot, *others, *aux]
        labels += list(grad.arguments[1 + len(others):])
    else:
        expected = f"{1 + len(others)}" + (f" (or {1 + len(others) + len(aux)} with the "
                                           f"auxiliary tensors)" if aux else "")
        return Expectation(target, proposal, "invalid",
                           f"not a valid backward: it takes {n} operand(s), the backward of "
                           f"{grad.wrt} takes {expected}: {', '.join(labels)}")
    got, error = _evaluate(eq, args, labels)
    if got is not None and got.shape == want.shape and np.allclose(got, want, rtol=1e-9,
                                                                   atol=1e-12):
        return Expectation(target, proposal, "correct",
                           f"correct: {target} = einsum({proposal!r}, {', '.join(labels)})")
    if len(args) <= 6:
        for order in itertools.permutations(range(len(args))):
            if order == tuple(range(len(args))):
                continue
            alt, _ = _evaluate(eq, [args[k] for k in order], labels)
            if alt is not None and alt.shape == want.shape and np.allclose(alt, want, rtol=1e-9,
                                                                           atol=1e-12):
                named = ", ".join(labels[k] for k in order)
                return Expectation(target, proposal, "correct",
                                   f"correct, with the operands in the order ({named})")
    if got is None:
        return Expectation(target, proposal, "invalid",
                           f"not a valid einsum over ({', '.join(labels)}): {error}")
    if got.shape != want.shape:
        return Expectation(target, proposal, "wrong shape",
                           f"wrong output shape: the proposal gives {tuple(got.shape)}, "
                           f"{target} must have {grad.wrt}'s shape {tuple(want.shape)}")
    return Expectation(target, proposal, "wrong values",
                       f"wrong values: the shape {tuple(got.shape)} is right but the values "
                       f"differ from {target} on random inputs")


def _evaluate(eq, args, labels):
    """``np.einsum`` of the proposal, or ``None`` and why not in the learner's words."""
    try:
        bind(eq, [a.shape for a in args])
    except EinsumError as e:
        reason = re.sub(r"operand (\d+)", lambda m: labels[int(m.group(1)) - 1], e.reason)
        return None, reason
    return np.einsum(eq.explicit, *args), ""
