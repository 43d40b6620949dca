"""The registry of backward rules: what a rule is (:class:`Back`, :class:`Context`,
:class:`NoRule`), :data:`RULES` (op → rule) and :data:`ALIASES` (a decomposition's part →
the user-level op whose rule it shares).

Each framework's module (:mod:`~einsum_magic.chain.rules.torch`, …) registers into it with
:func:`rule`; :func:`einsum_magic.chain.rules.rule_for` loads those modules and finds a
node's rule. This module imports none of them, so that they can import it.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["Back", "Context", "RULES", "ALIASES", "rule", "as_ruled", "NoRule"]


@dataclass(frozen=True)
class Back:
    """One contribution to the gradient of ``ref``: ``setup`` lines, then ``expr``.

    ``view``: ``expr`` may share memory with another gradient (``dL_dy.reshape(…)``),
    so the program copies it before accumulating into it. ``rule``: the trick's words
    for the display (``swap: ik,jk->ij``).
    """

    ref: object
    expr: str
    setup: tuple[str, ...] = ()
    view: bool = False
    rule: str = ""


class NoRule(Exception):
    """A rule refuses a node it cannot derive (an argument it does not cover): opaque."""


class Context:
    """What a rule may read (implemented by :mod:`~einsum_magic.chain.program`)."""

    def x(self, arg) -> str: ...            # forward value: a NumPy name or a literal
    def g(self, k: int = 0) -> str | None: ...   # cotangent of result k
    def out(self, k: int = 0) -> str: ...    # forward value of result k
    def shape(self, arg) -> tuple: ...
    def dtype(self, arg) -> str: ...
    def tmp(self, hint: str) -> str: ...


#: op → rule, for every framework (keys carry the framework: ``torch.tanh``).
RULES: dict[str, Callable] = {}


def rule(*ops: str):
    """Register the decorated function as the rule of ``ops``."""

    def register(fn):
        for op in ops:
            RULES[op] = fn
        return fn

    return register


#: Parts of a framework's decomposition → the rule they share with a user-level call
#: (``torch.ops.prims.exp.default`` → ``torch.exp``); each framework's module fills it.
ALIASES: dict[str, str] = {}


def as_ruled(node):
    """``node`` with the op its rule is written for (a decomposition's part → its alias)."""
    if node.op.startswith("torch.ops.") and node.op not in RULES:
        packet = ".".join(node.op.split(".")[2:4])
        target = ALIASES.get(packet)
        if target is not None:
            import dataclasses

            return dataclasses.replace(node, op=target)
    return node
