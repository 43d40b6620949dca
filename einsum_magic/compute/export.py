"""Write a derivation's backward as standalone source for NumPy, JAX or PyTorch, and run it.

This module owns the exported code. :func:`export` turns the :class:`~einsum_magic.compute.plan.Plan`
of a :class:`~einsum_magic.core.derivation.Derivation` bound to shapes into Python source:

* ``"numpy"``: ``backward(dL_dC, A, B) -> (dL_dA, dL_dB)``, one gradient per distinct operand
  name (the product rule already summed for an array passed twice). It gets only the operands,
  so it first recomputes the forward intermediates the backward reads (:attr:`Plan.recompute`).
  A gradient that is a broadcast comes back as a read-only ``np.broadcast_to`` view.
* ``"jax"``: ``einsum(A, B)``, a :func:`jax.custom_vjp` function: called plainly it is
  ``jnp.einsum``; under ``jax.vjp``/``jax.grad`` its forward keeps the intermediates as residuals
  and its backward is the derived einsums, computed together.
* ``"torch"``: ``class Einsum(torch.autograd.Function)`` with ``forward``/``backward``, and the
  convenience function ``einsum(A, B) = Einsum.apply(A, B)``.

Complex numbers: each target follows its framework's convention. NumPy and JAX take JAX's
(the other operands enter each gradient as they are: ``dL_dA = einsum(dL_dC, B)``); PyTorch's
autograd conjugates them (``dL_dA = einsum(dL_dC, B.conj())``, the conjugate Wirtinger
derivative), so the PyTorch backward conjugates what it saved before using it (for real
tensors ``conj()`` returns the tensor itself). Every einsum, sum, reshape, broadcast and
diagonal step of a backward is linear in each of its inputs, so conjugating the saved
operands and intermediates conjugates every gradient's Jacobian and nothing else.

The backward contracts every derived einsum along the forward's path read backwards, sharing
intermediates (see :mod:`einsum_magic.compute.plan`), so it costs what reverse-mode autodiff costs and
often less; ``naive=True`` writes instead one einsum per gradient, exactly as derived (``eye``
and ``ones`` materialised), to show what the sharing buys.

:func:`compiled` executes that same source in a fresh namespace (cached) and returns its entry
point: what runs is what :func:`export` shows.

The writer: every export, of one einsum or of a whole cell's backward
(:mod:`einsum_magic.chain.export`), is a :class:`Module` (docstring lines, imports, then
:class:`Function` and :class:`Class` parts, with bodies already in the target's spelling;
:mod:`einsum_magic.compute.spell` spells NumPy lines for JAX and PyTorch), and
:meth:`Module.source` is the one place that lays the source out. :func:`check_target` is the
one error for an unknown target.

Shapes: the code is written for the derivation's bound shapes. Its einsum steps accept other
sizes, but the contraction order is chosen for these sizes, size-1 broadcasting is spelled out
for these shapes, and broadcasts and diagonal writes name them literally: for other shapes,
export ``d.bound_to(shapes)``.

>>> from einsum_magic import derive
>>> d = derive("ij,jk->ik", shapes=((2, 3), (3, 4)))
>>> source = export(d, "numpy")
>>> "import numpy as np" in source and "def backward(dL_dC, A, B):" in source
True
>>> print(source[source.rindex("    dL_dA"):].rstrip())
    dL_dA = np.einsum('ik,jk->ij', dL_dC, B, optimize=True)
    dL_dB = np.einsum('ik,ij->jk', dL_dC, A, optimize=True)
    return dL_dA, dL_dB
"""

from __future__ import annotations

import builtins
import functools
import linecache
from dataclasses import dataclass

from ..core.derivation import Derivation, register_export
from ..core.equation import spell_equation
from ..core.names import free_name
from ..errors import EinsumError
from .plan import Plan, PlanStep, plan

__all__ = ["export", "compiled", "execute", "TARGETS", "Function", "Class", "Module",
           "check_target"]

#: The targets and the name of the callable :func:`compiled` returns for each.
TARGETS = {"numpy": "backward", "jax": "einsum", "torch": "einsum"}
_MODULE = {"numpy": "np", "jax": "jnp", "torch": "torch"}
#: Names the exported source defines or imports: operands may not take them.
RESERVED = frozenset({"np", "jnp", "jax", "torch", "einsum", "einsum_fwd", "einsum_bwd", "backward",
                      "residuals", "ctx", "Einsum"})
_IMPORTS = {"numpy": ["import numpy as np"], "jax": ["import jax", "import jax.numpy as jnp"],
            "torch": ["import torch"]}


def export(d: Derivation, target: str, naive: bool = False) -> str:
    """Python source of ``d``'s backward for ``target`` (``"numpy"``, ``"jax"`` or ``"torch"``).

    ``naive=True``: one einsum per gradient as derived, no shared intermediates.
    Raises :class:`EinsumError` for an unknown target or a derivation without shapes.
    """
    check_target(target)
    p = plan(d)
    clash = RESERVED & set(d.names + (d.output,))
    if clash:
        raise EinsumError(f"the name {sorted(clash)[0]!r} is used by the exported code: "
                          "choose another", d.equation)
    return _source(d, p, target, bool(naive))


def compiled(d: Derivation, target: str, naive: bool = False):
    """Execute :func:`export`'s source in a fresh namespace and return its entry point (cached).

    ``numpy``: the ``backward`` function; ``jax``: the ``custom_vjp`` function ``einsum``;
    ``torch``: the function ``einsum`` (its ``Einsum`` class is in ``einsum.__globals__``).

    >>> import numpy as np
    >>> from einsum_magic import derive
    >>> backward = compiled(derive("ij->i", shapes=((2, 3),)), "numpy")
    >>> backward(np.array([1.0, 2.0]), np.zeros((2, 3)))[0]
    array([[1., 1., 1.],
           [2., 2., 2.]])
    """
    return execute(export(d, target, naive), TARGETS[target], f"export_{target}")


@functools.lru_cache(maxsize=256)
def execute(source: str, entry: str, label: str):
    """Run generated ``source`` in a fresh namespace and return its ``entry``.

    The source is registered with :mod:`linecache` under a name made of ``label``, so a
    traceback through the exported code shows its lines. Cached by source: the same text
    is executed once.
    """
    filename = f"<einsum_magic {label} #{len(linecache.cache)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": f"einsum_magic_{label}"}
    exec(builtins.compile(source, filename, "exec"), namespace)
    return namespace[entry]


# -- the writer: one data structure, one layout ---------------------------------------------

def check_target(target: str, valid=("numpy", "jax", "torch")) -> None:
    """Raise :class:`EinsumError` in one line naming the valid targets unless ``target`` is one.

    >>> check_target("tensorflow")
    Traceback (most recent call last):
    ...
    einsum_magic.errors.EinsumError: unknown export target 'tensorflow': choose numpy, jax or torch
    """
    if target not in valid:
        choices = ", ".join(valid[:-1]) + f" or {valid[-1]}" if len(valid) > 1 else valid[0]
        raise EinsumError(f"unknown export target {target!r}: choose {choices}")


@dataclass(frozen=True)
class Function:
    """One function of an exported module: its name, parameters, docstring and body lines.

    ``body`` is already in the target's spelling, unindented; ``decorators`` go above the
    ``def`` (``jax.custom_vjp``, ``staticmethod`` inside a :class:`Class`).

    >>> print("\\n".join(Function("f", ("x",), ("return x",), doc="The identity.").lines()))
    def f(x):
        \"\"\"The identity.\"\"\"
        return x
    """

    name: str
    params: tuple[str, ...]
    body: tuple[str, ...]
    doc: str = ""
    decorators: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        doc = [f'    """{self.doc}"""'] if self.doc else []
        return ([f"@{d}" for d in self.decorators]
                + [f"def {self.name}({', '.join(self.params)}):", *doc, *_indent(list(self.body))])


@dataclass(frozen=True)
class Class:
    """A class of an exported module (PyTorch's ``autograd.Function``): methods a blank line apart."""

    name: str
    base: str
    doc: str
    methods: tuple[Function, ...]

    def lines(self) -> list[str]:
        out = [f"class {self.name}({self.base}):", f'    """{self.doc}"""']
        for m in self.methods:
            out += [""] + _indent(m.lines())
        return out


@dataclass(frozen=True)
class Module:
    """An exported module: docstring lines, imports, then parts two blank lines apart.

    A part is a :class:`Function`, a :class:`Class` or one top-level statement (a string).

    >>> m = Module(("Doubles.",), ("import numpy as np",),
    ...            (Function("double", ("x",), ("return np.multiply(2, x)",)),))
    >>> print(m.source(), end="")
    \"\"\"Doubles.
    \"\"\"
    import numpy as np
    <BLANKLINE>
    <BLANKLINE>
    def double(x):
        return np.multiply(2, x)
    """

    doc: tuple[str, ...]
    imports: tuple[str, ...]
    parts: tuple[Function | Class | str, ...]

    def source(self) -> str:
        head = ['"""' + self.doc[0], *self.doc[1:], '"""', *self.imports, "", ""]
        body: list[str] = []
        for k, part in enumerate(self.parts):
            body += (["", ""] if k else []) + ([part] if isinstance(part, str) else part.lines())
        return "\n".join(head + body) + "\n"


#: ``Derivation.export`` / ``.compile`` are these two (core imports nothing above it).
register_export(export, compiled)


# -- writing the source ------------------------------------------------------------------

def _source(d: Derivation, p: Plan, target: str, naive: bool) -> str:
    m = _MODULE[target]
    operands = ", ".join(p.operands)
    shapes = dict(zip(d.names, d.shapes))
    forward = f"{d.output} = einsum({d.equation!r}, {', '.join(d.names)})"
    doc = [f"{forward} and its backward for {_TITLE[target]}, derived by einsum_magic.", "",
           "Shapes: " + ", ".join(f"{n} {shapes[n]}" for n in p.operands)
           + f" -> {d.output} {d.output_shape}; the code is written for these shapes.", ""]
    if naive:
        doc.append("Each gradient is its derived einsum as written (the swap trick, eye and ones "
                   "materialised):")
    else:
        doc += ["The derived gradients (the swap trick), computed together below along the "
                "forward's", "contraction path read backwards, so that intermediates are shared:"]
    doc += [f"    {g.code}" for g in d.grads] + [f"    {t.code}" for t in d.totals]
    if target == "torch":
        doc += ["", "PyTorch's convention for complex tensors: the backward reads the conjugated "
                "operands", "(dL_dA = einsum(dL_dC, B.conj())); for real tensors conj() changes "
                "nothing."]
    if target == "numpy" and p.recompute and not naive:
        doc += ["", "backward() gets only the operands: it first recomputes the forward "
                "intermediates it reads."]
    if naive:
        fwd = [f"{d.output} = {m}.einsum({d.equation!r}, {', '.join(d.names)})"]
        residuals = p.operands
        bwd = [_naive_line(d, g, target) for g in d.grads] + [t.code for t in d.totals]
        recompute: list[str] = []
    else:
        fwd = plan_lines(p.forward, target, d)
        residuals = p.residuals
        bwd = plan_lines(p.backward, target, d)
        recompute = plan_lines(p.recompute, target, d)
    grads = ", ".join(p.gradients) if len(p.gradients) > 1 else f"({p.gradients[0]},)"
    res = ", ".join(residuals) if len(residuals) != 1 else f"({residuals[0]},)"
    params = tuple(p.operands)

    if target == "numpy":
        parts: tuple = (Function("backward", (d.cotangent, *params), (*recompute, *bwd,
                                 f"return {grads}"),
                                 doc=f"The gradients of {forward} at {d.cotangent}: "
                                     f"{', '.join(p.gradients)}."),)
    elif target == "jax":
        parts = (Function("einsum", params, (f"return jnp.einsum({d.equation!r}, "
                                             f"{', '.join(d.names)})",),
                          doc=f"{forward}; under jax.vjp its backward is einsum_bwd.",
                          decorators=("jax.custom_vjp",)),
                 Function("einsum_fwd", params, (*fwd, f"return {d.output}, ({res})"
                                                 if residuals else f"return {d.output}, ()")),
                 Function("einsum_bwd", ("residuals", d.cotangent),
                          (*([f"{res} = residuals"] if residuals else []), *bwd,
                           f"return {grads}")),
                 "einsum.defvjp(einsum_fwd, einsum_bwd)")
    else:
        saved = ([f"{res} = (t.conj() for t in ctx.saved_tensors)  # PyTorch's convention"]
                 if residuals else [])
        parts = (Class("Einsum", "torch.autograd.Function",
                       f"{forward}, with the backward derived by einsum_magic.",
                       (Function("forward", ("ctx", *params), (
                           *fwd, *([f"ctx.save_for_backward({', '.join(residuals)})"]
                                   if residuals else []), f"return {d.output}"),
                                 decorators=("staticmethod",)),
                        Function("backward", ("ctx", d.cotangent), (*saved, *bwd,
                                                                     f"return {grads}"),
                                 decorators=("staticmethod",)))),
                 Function("einsum", params, (f"return Einsum.apply({operands})",),
                          doc=f"{forward}, differentiable through Einsum.backward."))
    return Module(tuple(doc), tuple(_IMPORTS[target]), parts).source()


_TITLE = {"numpy": "NumPy", "jax": "JAX", "torch": "PyTorch"}


def _indent(lines: list[str], depth: int = 1) -> list[str]:
    return ["    " * depth + line for line in lines]


def _naive_line(d: Derivation, g, target: str) -> str:
    m = _MODULE[target]
    args = [d.cotangent] + [d.names[k] for k in range(len(d.names)) if k != g.position]
    dtype = "dtype=" + (f"{d.cotangent}.dtype" if target != "torch" else
                        f"{d.cotangent}.dtype, device={d.cotangent}.device")
    for a in g.aux:
        n = d.sizes[a.letter]
        args.append(f"{m}.{a.kind}({n}, {dtype})")
    extra = ", optimize=True" if target == "numpy" else ""
    return f"{g.target} = {m}.einsum({g.equation!r}, {', '.join(args)}{extra})"


def plan_lines(steps: tuple[PlanStep, ...], target: str, d: Derivation) -> list[str]:
    taken = set(d.names) | {d.output, d.cotangent} | {s.target for s in steps}
    out: list[str] = []
    for s in steps:
        out += _step_lines(s, target, taken, d.sizes)
    return out


def _step_lines(s: PlanStep, target: str, taken: set, sizes: dict) -> list[str]:
    m = _MODULE[target]
    t, args = s.target, ", ".join(s.inputs)
    if s.kind == "einsum":
        extra = ", optimize=True" if target == "numpy" and len(s.inputs) == 2 else ""
        return [f"{t} = {m}.einsum({s.equation!r}, {args}{extra})"]
    if s.kind == "add":
        return [f"{t} = {' + '.join(s.inputs)}"]
    if s.kind == "reshape":
        return [f"{t} = {args}.reshape({s.shape})"]
    if s.kind == "broadcast":
        return [f"{t} = {_broadcast(s, target, sizes)}"]
    # diagonal (a gather) and scatter (a diagonal write): index arrays over the distinct letters
    (x,) = s.inputs
    full, distinct = (s.subscripts[0], s.output) if s.kind == "diagonal" else (s.output,
                                                                              s.subscripts[0])
    names = {c: free_name(f"{c}_", taken) for c in distinct}
    lines = _index_lines(distinct, names, sizes, target, x)
    where = ", ".join(names[c] for c in full)
    if s.kind == "diagonal":
        return lines + [f"{t} = {x}[{where}]"]
    if target == "jax":
        return lines + [f"{t} = jnp.zeros({s.shape}, {x}.dtype).at[{where}].set({x})"]
    zeros = f"np.zeros({s.shape}, {x}.dtype)" if target == "numpy" else f"{x}.new_zeros({s.shape})"
    return lines + [f"{t} = {zeros}", f"{t}[{where}] = {x}"]


def _index_lines(letters: str, names: dict, sizes: dict, target: str, like: str) -> list[str]:
    """Index arrays that broadcast to the shape of ``letters`` (what ``np.ix_`` returns)."""
    m = _MODULE[target]
    if len(letters) == 1:
        c = letters
        device = f", device={like}.device" if target == "torch" else ""
        return [f"{names[c]} = {m}.arange({sizes[c]}{device})"]
    if target != "torch":
        ranges = ", ".join(f"{m}.arange({sizes[c]})" for c in letters)
        return [f"{', '.join(names[c] for c in letters)} = {m}.ix_({ranges})"]
    lines = []
    for i, c in enumerate(letters):
        after = len(letters) - 1 - i
        shape = f".reshape({sizes[c]}{', 1' * after})" if after else ""
        lines.append(f"{names[c]} = torch.arange({sizes[c]}, device={like}.device){shape}")
    return lines


def _broadcast(s: PlanStep, target: str, sizes: dict) -> str:
    """The backward of a sum inside one operand: the gradient broadcast back (no FLOPs)."""
    m = _MODULE[target]
    (g,), (have,), want = s.inputs, s.subscripts, s.output
    kept = "".join(c for c in want if c in have)
    expr = g if kept == have else f"{m}.einsum({spell_equation((have,), kept)!r}, {g})"
    if not want.endswith(kept):   # a summed axis after a kept one: make it size 1 first
        expr = f"{expr}.reshape({tuple(sizes[c] if c in have else 1 for c in want)})"
    if target == "torch":
        return f"{expr}.expand({s.shape})"
    return f"{m}.broadcast_to({expr}, {s.shape})"
