"""Backward rules: one recorded node → NumPy lines in the swap trick's words.

This package owns the arrow *a node of the record → its contribution to the backward
program*. One module per framework registers its rules here by the framework's own
name of the call (:attr:`Node.op <einsum_magic.chain.record.Node>`):

* :mod:`~einsum_magic.chain.rules.torch`: ``torch.Tensor.matmul``, ``torch.tanh``, …
* :mod:`~einsum_magic.chain.rules.numpy`: ``numpy.matmul``, ``numpy.ndarray.__getitem__``, …
* :mod:`~einsum_magic.chain.rules.jax`: ``jax.lax.dot_general``, ``jax.lax.tanh``, …

A rule is a function ``rule(node, ctx) -> list[Back]``. ``ctx`` (a :class:`Context`, given
by :mod:`~einsum_magic.chain.program`) names what the rule may read: ``ctx.x(arg)`` the
forward value of an argument (a NumPy name the backward code reads, or a constant's
literal), ``ctx.g(k)`` the cotangent of the node's ``k``-th result (``None`` when nothing
downstream needs it), ``ctx.out(k)`` the forward value of that result, ``ctx.shape(arg)``,
``ctx.tmp(hint)`` a fresh name for a setup line. Each :class:`Back` is one contribution
``expr`` to the gradient of one :class:`~einsum_magic.chain.record.Ref` (of the node's
shape: broadcasting summed back by the rule), after its ``setup`` lines. Linear ops are
written as ``np.einsum`` through :func:`einsum_magic.core.derivation.derive` (the swap
trick), gathers as ``np.add.at`` scatter-adds (the one-hot einsum they equal), and
elementwise functions with the framework's own subgradient at kinks.

:func:`rule_for` finds a node's rule; a node without one is opaque
(:mod:`~einsum_magic.chain.program` says which inputs it cuts off). :data:`RULES` is a
plain dict: a test may remove or replace one rule to see the check FAIL or go PARTIAL.
"""

from __future__ import annotations

from typing import Callable

from .registry import ALIASES, RULES, Back, Context, NoRule, as_ruled, rule

__all__ = ["Back", "Context", "RULES", "ALIASES", "rule", "rule_for", "as_ruled", "NoRule"]


def rule_for(node) -> Callable | None:
    """The rule of ``node``'s op, or None (the node is opaque, or decomposed). A rule with
    an ``applies(node)`` attribute covers only the nodes it says it does."""
    _load(node.framework)
    found = RULES.get(node.op)
    applies = getattr(found, "applies", None)
    if applies is not None and not applies(node):
        return None
    if found is None and node.op.startswith("torch.ops."):
        packet = ".".join(node.op.split(".")[2:4])            # prims.exp, aten.mm
        found = RULES.get(ALIASES.get(packet, ""))
    return found


_LOADED: set = set()


def _load(framework: str) -> None:
    if framework in _LOADED:
        return
    _LOADED.add(framework)
    if framework == "torch":
        from . import torch as _torch  # noqa: F401 - registers its rules
    elif framework == "numpy":
        from . import numpy as _numpy  # noqa: F401 - registers its rules
    elif framework == "jax":
        from . import jax as _jax  # noqa: F401 - registers its rules
