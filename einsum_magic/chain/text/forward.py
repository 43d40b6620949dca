"""Binding the program to the cell's arrays: products become einsums, every step gets its shape.

This module owns the forward of the chain. :func:`bind` walks the read
:class:`~einsum_magic.chain.text.program.Program` with the values of its inputs (from the user's
namespace, a capture of the run, or arrays of ``--sizes``), turns every product written
without einsum into the einsum it is for those shapes (``A @ B`` with batch broadcasting is
``'...ij,...jk->...ik'``; ``x.sum(axis=1, keepdims=True)`` is ``'ij->i'`` then a reshape;
a mean divides that by the count), and runs each step's NumPy line (:func:`line`): what is
shown is what runs. :func:`line` writes a step for NumPy or jax.numpy.

>>> import numpy as np
>>> from einsum_magic.chain.text.reading import read
>>> p, values = bind(read("C = A @ B.T"), {"A": np.ones((2, 3)), "B": np.ones((4, 3))})
>>> [line(s) for s in p.steps]
["t1 = np.einsum('ij->ji', B)", "C = np.einsum('ij,jk->ik', A, t1)"]
>>> values["C"].shape
(2, 4)
"""

from __future__ import annotations

import dataclasses
import numbers
import string
from typing import Any, Mapping

import numpy as np

from .program import BINARY, UNARY, Program, Step

__all__ = ["bind", "line", "evaluate", "BindError"]

_LETTERS = "ijklmnopqrstuvwxyzabcdefgh"


class BindError(ValueError):
    """The forward program cannot be run on these arrays; the message says which step and why."""


def line(s: Step, m: str = "np") -> str:
    """The step as one line of Python for module ``m`` (``np`` or ``jnp``)."""
    t, a = s.target, s.args
    if s.kind == "einsum":
        return f"{t} = {m}.einsum({s.param!r}, {', '.join(a)})"
    if s.kind in BINARY:
        return f"{t} = {atom(a[0])} {BINARY[s.kind]} {atom(a[1])}"
    if s.kind == "neg":
        return f"{t} = -{atom(a[0])}"
    if s.kind == "pow":
        return f"{t} = {atom(a[0])} ** {atom(s.param)}"
    if s.kind in UNARY:
        return f"{t} = {m}.{UNARY[s.kind]}({a[0]})"
    if s.kind == "relu":
        return f"{t} = {m}.maximum({a[0]}, 0)"
    if s.kind == "max":
        axes, keep, stop = s.param
        expr = f"{m}.max({a[0]}, axis={axes!r}, keepdims={keep})"
        if stop and m == "jnp":
            expr = f"jax.lax.stop_gradient({expr})"
        return f"{t} = {expr}"
    if s.kind == "reshape":
        return f"{t} = {a[0]}.reshape({s.param})"
    if s.kind in ("const", "stop"):
        return f"{t} = {s.param}"
    raise ValueError(f"no line for a {s.kind} step")


def atom(text: str) -> str:
    """``text`` as an operand of a binary operator: parenthesised unless it is one token."""
    plain = text.replace("_", "").replace(".", "")
    return text if plain.isalnum() and not text.startswith("-") else f"({text})"


def evaluate(s: Step, ns: dict) -> None:
    """Run the step's NumPy line in ``ns`` (values by name, ``np``, constants)."""
    exec(line(s), ns)


def bind(program: Program, inputs: Mapping[str, Any], outside: Mapping[str, Any] | None = None,
         known: Mapping[str, Any] | None = None) -> tuple[Program, dict]:
    """``(bound program, values)``: products as einsums, every step run with NumPy.

    ``inputs`` holds an array for every name of ``program.inputs``; ``outside`` (the user's
    namespace) gives constants and modules the steps' text names; ``known`` the values the
    run gave ``stop`` steps (the backward stops there, so they are leaves: taking them from
    the run never calls the user's code again, e.g. a random generator). Values are float64
    NumPy arrays (complex128 where an input is complex). Raises :class:`BindError` naming
    the line that fails.
    """
    known = known or {}
    ns: dict = {}
    for name, value in (outside or {}).items():
        if name in program.constants or _is_module(value):
            ns[name] = value
    ns["np"] = np
    for name in program.inputs:
        if name not in inputs:
            raise BindError(f"{name} has no value: the cell's backward needs its array")
        ns[name] = _array(inputs[name])
    taken = set(program.taken) | set(program.values)
    counter = [0]

    def temp() -> str:
        while True:
            counter[0] += 1
            name = f"t{counter[0]}"
            if name not in taken:
                taken.add(name)
                return name

    steps: list[Step] = []
    for s in program.steps:
        for b in _primitive(s, ns, temp):
            if b.kind == "stop" and b.target in known:
                ns[b.target] = known[b.target]
            elif b.kind == "stop" and isinstance(outside, Mapping) and _reads_objects(b, outside):
                raise BindError(f"line {s.line}: {s.what or b.param} is not differentiated and its "
                                "value is not known without running the cell")
            else:
                try:
                    evaluate(b, ns)
                except Exception as e:  # noqa: BLE001 - the program failing on these arrays
                    raise BindError(f"line {s.line}, {line(b)}: {type(e).__name__}: {e}") from None
            value = ns[b.target]
            if b.kind == "stop" and not hasattr(value, "shape") \
                    and not isinstance(value, numbers.Number):
                continue      # an object (a random generator, a model): no value to derive
            if b.kind == "stop" or (b.kind == "const" and _numeric(value)):
                value = ns[b.target] = _array(value)
            steps.append(dataclasses.replace(b, shape=tuple(np.shape(value))))
    values = {v: ns[v] for v in program.inputs + tuple(s.target for s in steps)}
    bound = dataclasses.replace(program, steps=tuple(steps), taken=frozenset(taken),
                                input_shapes=tuple(np.shape(ns[v]) for v in program.inputs))
    return bound, values


def _reads_objects(s: Step, outside: Mapping[str, Any]) -> bool:
    """Whether a ``stop`` step's text reads an outside object that is no array or number."""
    import ast

    names = {n.id for n in ast.walk(ast.parse(s.param)) if isinstance(n, ast.Name)}
    return any(n in outside and not hasattr(outside[n], "shape") and not _is_module(outside[n])
               and not isinstance(outside[n], numbers.Number) for n in names)


def _is_module(value) -> bool:
    import types

    return isinstance(value, types.ModuleType)


def _numeric(x) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.number) if not isinstance(x, str) else False


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):                # a torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def _primitive(s: Step, ns: dict, temp) -> list[Step]:
    """The step as primitive steps for the shapes of its arguments (products → einsums)."""
    k = s.kind
    dims = [np.ndim(ns[a]) for a in s.args if a in ns]
    def as_einsum(equation: str) -> list[Step]:
        return [dataclasses.replace(s, kind="einsum", param=equation)]

    if k == "matmul":
        na, nb = dims
        if na == 0 or nb == 0:
            raise BindError(f"line {s.line}: matmul of a 0-d array ({s.what})")
        if na == 1 and nb == 1:
            return as_einsum("j,j->")
        if na == 1:
            return as_einsum("j,...jk->...k")
        if nb == 1:
            return as_einsum("...ij,j->...i")
        if na == nb == 2:
            return as_einsum("ij,jk->ik")
        return as_einsum("...ij,...jk->...ik")
    if k == "dot":
        na, nb = dims
        a = _LETTERS[:na]
        if nb == 0 or na == 0:
            b = _LETTERS[na:na + nb]
            return as_einsum(f"{a},{b}->{a}{b}")
        c = a[-1]
        rest = _LETTERS[na:na + nb - 1]
        b = rest[:-1] + c + rest[-1:] if nb > 1 else c
        return as_einsum(f"{a},{b}->{a[:-1]}{rest}")
    if k == "inner":
        na, nb = dims
        if na == 0 or nb == 0:
            a, b = _LETTERS[:na], _LETTERS[na:na + nb]
            return as_einsum(f"{a},{b}->{a}{b}")
        a = _LETTERS[:na]
        b = _LETTERS[na:na + nb - 1] + a[-1]
        return as_einsum(f"{a},{b}->{a[:-1]}{b[:-1]}")
    if k == "outer":
        if dims != [1, 1]:
            raise BindError(f"line {s.line}: {s.what}: outer of arrays that are not vectors")
        return as_einsum("i,j->ij")
    if k == "tensordot":
        na, nb = dims
        axes = s.param
        if isinstance(axes, int):
            ax_a, ax_b = list(range(na - axes, na)), list(range(axes))
        else:
            ax_a, ax_b = ([x] if isinstance(x, int) else list(x) for x in axes)
        ax_a = [x % na for x in ax_a]
        ax_b = [x % nb for x in ax_b]
        a = list(_LETTERS[:na])
        b = list(_LETTERS[na:na + nb])
        for i, j in zip(ax_a, ax_b):
            b[j] = a[i]
        out = [c for i, c in enumerate(a) if i not in ax_a] + [c for j, c in enumerate(b)
                                                                if j not in ax_b]
        return as_einsum(f"{''.join(a)},{''.join(b)}->{''.join(out)}")
    if k in ("trace", "diagonal"):
        (n,) = dims
        if n < 2:
            raise BindError(f"line {s.line}: {s.what}: needs at least 2 dimensions")
        rest = _LETTERS[2:n]
        return as_einsum(f"ii{rest}->{rest}" + ("i" if k == "diagonal" else ""))
    if k in ("transpose", "swapaxes"):
        (n,) = dims
        order = list(range(n))
        if k == "swapaxes":
            i, j = (x % n for x in s.param)
            order[i], order[j] = order[j], order[i]
        elif s.param is None:
            order = order[::-1]
        else:
            order = [x % n for x in s.param]
        a = _LETTERS[:n]
        return as_einsum(f"{a}->{''.join(a[i] for i in order)}")
    if k in ("sum", "mean"):
        (n,) = dims
        axes, keep = s.param
        axes = tuple(range(n)) if axes is None else tuple(x % n for x in axes)
        a = _LETTERS[:n]
        out = "".join(c for i, c in enumerate(a) if i not in axes)
        shape = np.shape(ns[s.args[0]])
        steps = [dataclasses.replace(s, kind="einsum", param=f"{a}->{out}")]
        if keep:
            kept = tuple(1 if i in axes else shape[i] for i in range(n))
            last = steps[-1]
            steps[-1] = dataclasses.replace(last, target=temp())
            steps.append(dataclasses.replace(s, kind="reshape", args=(steps[-1].target,),
                                             param=repr(kept)))
        if k == "mean":
            count = int(np.prod([shape[i] for i in axes]))
            last = steps[-1]
            steps[-1] = dataclasses.replace(last, target=temp())
            steps.append(dataclasses.replace(s, kind="div", args=(steps[-1].target, str(count)),
                                             param=None))
        return steps
    if k == "max":
        (n,) = dims
        axes, keep, stop = s.param
        axes = tuple(range(n)) if axes is None else tuple(sorted(x % n for x in axes))
        return [dataclasses.replace(s, param=(axes, keep, stop))]
    if k == "reshape":
        return [s]
    return [s]
