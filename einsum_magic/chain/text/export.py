"""The backward of a whole cell as standalone source: NumPy, ``jax.custom_vjp`` or PyTorch.

This module owns the chain's exported code, as :mod:`einsum_magic.compute.export` does for one
einsum (whose helpers it reuses):

* ``"numpy"``: ``backward(<cotangents>, <inputs>)`` recomputes the forward and returns the
  gradient of every input, in order;
* ``"jax"``: ``cell(<inputs>)``, a :func:`jax.custom_vjp` function returning the sink (a tuple
  for several): its forward keeps the values the backward reads as residuals, its backward is
  the cell's backward program;
* ``"torch"``: ``class Cell(torch.autograd.Function)`` and ``cell(<inputs>)``.

The source is laid out by the one writer of exports (:class:`einsum_magic.compute.export.Module`).
The forward and elementwise lines are the programs' own NumPy lines in the target's spelling
(:func:`einsum_magic.compute.spell.spell`, by syntax tree). Each einsum's gradients are written
as the single-einsum export writes them (:func:`einsum_magic.compute.plan.plan`): contracted
along the forward's path read backwards, a sum's gradient as a broadcast rather than an einsum
with ``ones``, so the export costs no more than autodiff; the plan's own names are renamed to
the program's on the syntax tree.

>>> import numpy as np
>>> from einsum_magic.chain import cell_backward
>>> b = cell_backward("H = X @ W\\nZ = np.tanh(H)", {"X": np.ones((2, 3)), "W": np.ones((3, 4))},
...                   check=False)
>>> source = export(b, "numpy")
>>> "def backward(dL_dZ, X, W):" in source and "return dL_dX, dL_dW" in source
True
"""

from __future__ import annotations

import ast

from ...compute.export import Class, Function, Module, check_target, execute, plan_lines
from ...compute.plan import plan
from ...compute.spell import ADD_AT, imports_for, spell
from ...core.derivation import derive
from ...errors import EinsumError
from .forward import line

__all__ = ["export", "compiled", "TARGETS"]

#: The targets and the name of the callable :func:`compiled` returns for each.
TARGETS = {"numpy": "backward", "jax": "cell", "torch": "cell"}
_RESERVED = {"np", "jnp", "jax", "torch", "math", "add_at", "cell", "cell_fwd", "cell_bwd",
             "backward", "residuals", "ctx", "Cell"}


def export(b, target: str) -> str:
    """Python source of the cell's forward and backward for ``target`` (see the module docstring).

    Raises :class:`~einsum_magic.errors.EinsumError` for an unknown target, a cell with steps
    that are not differentiated, or a name the exported code needs for itself.
    """
    check_target(target, tuple(TARGETS))
    if b.stops:
        raise EinsumError("the cell has steps that are not differentiated (" + "; ".join(b.notes)
                          + "): the export covers cells the backward covers whole")
    clash = _RESERVED & set(b.program.values)
    if clash:
        raise EinsumError(f"the name {sorted(clash)[0]!r} is used by the exported code: rename it "
                          "in the cell")
    return _source(b, target)


def compiled(b, target: str):
    """Execute :func:`export`'s source in a fresh namespace and return its entry point."""
    return execute(export(b, target), TARGETS[target], f"cell_export_{target}")


def _modules(b) -> tuple[str, ...]:
    """Names the lines use as modules: NumPy's, math, and the cell's own modules."""
    return ("np", "math", *(n for n, v in b.constants.items() if type(v).__name__ == "module"))


def _backward_lines(b, target: str) -> list[str]:
    """The backward program for ``target``: einsum steps as the single-einsum export writes them."""
    p = b.program
    out: list[str] = []
    written: set[int] = set()
    taken = set(p.values) | set(p.taken) | {x.target for x in b.lines}
    for bl in b.lines:
        s = p.steps[bl.step] if bl.step is not None else None
        if s is not None and s.kind == "einsum" and len(set(s.args)) == len(s.args):
            if bl.step in written:
                continue
            written.add(bl.step)
            out += _einsum_lines(b, bl.step, target, taken)
            continue
        out += spell(bl.code, target, _modules(b)).lines
    return out


def _einsum_lines(b, i: int, target: str, taken: set) -> list[str]:
    p = b.program
    s = p.steps[i]
    d = derive(s.param, names=s.args, output=s.target, shapes=[p.shapes[a] for a in s.args])
    plan_ = plan(d)
    parts = {x.wrt: x.target for x in b.lines if x.step == i}
    lines = plan_lines(plan_.recompute, target, d) + plan_lines(plan_.backward, target, d)
    # the plan's own names: its gradients → the backward program's, temporaries → fresh names
    rename = {g: parts.get(n) for g, n in zip(plan_.gradients, dict.fromkeys(d.names))}
    stored = {n.id for ln in lines for n in ast.walk(ast.parse(ln))
              if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    for name in sorted(stored):
        if rename.get(name) is not None or name in set(d.names) | {d.output, d.cotangent}:
            continue
        fresh = f"{s.target}_{name}"
        while fresh in taken:
            fresh += "_"
        taken.add(fresh)
        rename[name] = fresh
    return _renamed(lines, {k: v for k, v in rename.items() if v is not None and k != v})


def _renamed(lines: list[str], names: dict) -> list[str]:
    """``lines`` with the variables of ``names`` renamed, on the syntax tree.

    >>> _renamed(["t = np.einsum('ij->i', A)", "A_t = t.sum()"], {"t": "H_t"})
    ["H_t = np.einsum('ij->i', A)", 'A_t = H_t.sum()']
    """
    if not names:
        return lines

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.copy_location(ast.Name(id=names.get(node.id, node.id), ctx=node.ctx), node)

    return [ast.unparse(Rename().visit(ast.parse(ln))) for ln in lines]


def _head(b, target: str, imports: tuple[str, ...]) -> list[str]:
    """The target's imports, then the cell's constants and modules its lines name."""
    out = list(imports)
    code = b.forward_code + "\n" + b.code
    used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    for name, value in sorted(b.constants.items()):
        if name not in used or name in ("np", "math") or name in " ".join(out).split():
            continue
        if type(value).__name__ == "module":
            out.append(f"import {value.__name__} as {name}")
        else:
            out.append(f"{name} = {value!r}")
    return out


def _source(b, target: str) -> str:
    p = b.program
    inputs = tuple(p.inputs)
    cots = [b.cotangent(s) for s in p.sinks]
    grads = [b.gradient(v) for v in p.inputs]
    ret = ", ".join(grads) if len(grads) > 1 else f"({grads[0]},)"
    forward = list(spell("\n".join(line(s) for s in p.steps), target, _modules(b)).lines)
    backward = _backward_lines(b, target)
    imports = imports_for(forward + backward, target)
    helpers = (ADD_AT,) * (target == "torch" and "add_at(" in "\n".join(backward))
    sinks = ", ".join(p.sinks) if len(p.sinks) > 1 else p.sinks[0]
    doc = ("The backward of a cell, derived by einsum_magic.", "",
           "The forward, as read (products as einsums):", "",
           *[f"    {line(s)}" for s in p.steps], "",
           "Shapes: " + ", ".join(f"{v} {p.shapes[v]}" for v in p.inputs + p.sinks)
           + "; the code is written for these shapes.")
    head = tuple(_head(b, target, imports))
    if target == "numpy":
        parts: tuple = (Function("backward", (*cots, *inputs), (*forward, *backward,
                                                                 f"return {ret}"),
                                 doc=f"The gradients of the cell's inputs at {', '.join(cots)}: "
                                     f"{', '.join(grads)}."),)
        return Module(doc, head, parts).source()
    used = {n.id for ln in backward for n in ast.walk(ast.parse(ln)) if isinstance(n, ast.Name)}
    residuals = [v for v in p.values if v in used]
    res = ", ".join(residuals) if len(residuals) != 1 else f"{residuals[0]},"
    cot = ", ".join(cots) if len(cots) == 1 else "cotangents"
    unpack = [] if len(cots) == 1 else [f"{', '.join(cots)} = cotangents"]
    if target == "jax":
        parts = (*helpers,
                 Function("cell", inputs, (*forward, f"return {sinks}"),
                          doc="The cell's forward; under jax.vjp its backward is cell_bwd.",
                          decorators=("jax.custom_vjp",)),
                 Function("cell_fwd", inputs, (*forward, f"return {sinks}, ({res})")),
                 Function("cell_bwd", ("residuals", cot), (*unpack, f"{res} = residuals",
                                                          *backward, f"return {ret}")),
                 "cell.defvjp(cell_fwd, cell_bwd)")
    else:
        parts = (*helpers,
                 Class("Cell", "torch.autograd.Function",
                       "The cell's forward, with the backward derived by einsum_magic.",
                       (Function("forward", ("ctx", *inputs), (
                           *forward, f"ctx.save_for_backward({', '.join(residuals)})",
                           f"return {sinks}"), decorators=("staticmethod",)),
                        Function("backward", ("ctx", *cots), (
                            f"{res} = ctx.saved_tensors", *backward, f"return {ret}"),
                                 decorators=("staticmethod",)))),
                 Function("cell", inputs, (f"return Cell.apply({', '.join(inputs)})",),
                          doc="The cell's forward, differentiable through Cell.backward."))
    return Module(doc, head, parts).source()
