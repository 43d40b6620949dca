"""The backward of a whole cell as standalone source: NumPy, ``jax.custom_vjp`` or PyTorch.

This module owns the chain's exported code, as :mod:`einsum_magic.compute.export` does for one
einsum (whose helpers it reuses):

* ``"numpy"``: ``backward(<cotangents>, <inputs>)`` recomputes the forward and returns the
  gradient of every input, in order;
* ``"jax"``: ``cell(<inputs>)``, a :func:`jax.custom_vjp` function returning the sink (a tuple
  for several): its forward keeps the values the backward reads as residuals, its backward is
  the cell's backward program;
* ``"torch"``: ``class Cell(torch.autograd.Function)`` and ``cell(<inputs>)``.

The elementwise lines are the backward program's own. Each einsum's gradients are written as
the single-einsum export writes them (:func:`einsum_magic.compute.cost.plan`): contracted along the
forward's path read backwards, a sum's gradient as a broadcast rather than an einsum with
``ones``, so the export costs no more than autodiff.

>>> import numpy as np
>>> from einsum_magic.chain import cell_backward
>>> b = cell_backward("H = X @ W\\nZ = np.tanh(H)", {"X": np.ones((2, 3)), "W": np.ones((3, 4))},
...                   check=False)
>>> source = export(b, "numpy")
>>> "def backward(dL_dZ, X, W):" in source and "return dL_dX, dL_dW" in source
True
"""

from __future__ import annotations

import re

from ...compute.cost import plan
from ...core.derivation import derive
from ...errors import EinsumError
from ...compute.export import plan_lines, execute
from .forward import line

__all__ = ["export", "compiled", "TARGETS"]

#: The targets and the name of the callable :func:`compiled` returns for each.
TARGETS = {"numpy": "backward", "jax": "cell", "torch": "cell"}
_MODULE = {"numpy": "np", "jax": "jnp", "torch": "torch"}
_RESERVED = {"np", "jnp", "jax", "torch", "cell", "cell_fwd", "cell_bwd", "backward", "residuals",
             "ctx", "Cell"}
_NP = re.compile(r"\bnp\.")
_WORD = re.compile(r"[A-Za-z_]\w*")


def export(b, target: str) -> str:
    """Python source of the cell's forward and backward for ``target`` (see the module docstring).

    Raises :class:`~einsum_magic.errors.EinsumError` for an unknown target, a cell with steps
    that are not differentiated, or a name the exported code needs for itself.
    """
    if target not in TARGETS:
        raise EinsumError(f"unknown export target {target!r}: choose numpy, jax or torch")
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
        out.append(_for(bl.code, target))
    return out


def _einsum_lines(b, i: int, target: str, taken: set) -> list[str]:
    p = b.program
    s = p.steps[i]
    shapes = p.shapes
    d = derive(s.param, names=s.args, output=s.target, shapes=[shapes[a] for a in s.args])
    plan_ = plan(d)
    parts = {x.wrt: x.target for x in b.lines if x.step == i}
    lines = plan_lines(plan_.recompute, target, d) + plan_lines(plan_.backward, target, d)
    # the plan's own names: its gradients → the backward program's, temporaries → fresh names
    rename = {g: parts.get(n, None) for g, n in zip(plan_.gradients, dict.fromkeys(d.names))}
    internal = {w for ln in lines for w in [ln.split(" = ", 1)[0].split("[")[0].strip()]}
    internal |= {w for ln in lines for w in _WORD.findall(ln.split(" = ", 1)[0])}
    for name in sorted(internal):
        if name in rename and rename[name] is not None:
            continue
        if name in set(d.names) | {d.output, d.cotangent}:
            continue
        fresh = f"{s.target}_{name}"
        while fresh in taken:
            fresh += "_"
        taken.add(fresh)
        rename[name] = fresh
    rename = {k: v for k, v in rename.items() if v is not None and k != v}
    if not rename:
        return lines

    def sub(match):
        return rename.get(match.group(0), match.group(0))

    return [_WORD.sub(sub, ln) for ln in lines]


def _for(code: str, target: str) -> str:
    if target != "jax":
        return code
    return _NP.sub(f"{_MODULE[target]}.", code)


def _head(b, target: str) -> list[str]:
    imports = {"numpy": ["import numpy as np"],
               "jax": ["import jax", "import jax.numpy as jnp", "import numpy as np"],
               "torch": ["import numpy as np", "import torch"]}[target]
    code = b.forward_code + "\n" + b.code
    used = set(_WORD.findall(code))
    for name, value in sorted(b.constants.items()):
        if name not in used or name in ("np",):
            continue
        if hasattr(value, "__name__") and type(value).__name__ == "module":
            imports.append(f"import {value.__name__} as {name}")
        else:
            imports.append(f"{name} = {value!r}")
    return imports


def _source(b, target: str) -> str:
    p = b.program
    inputs = ", ".join(p.inputs)
    cots = [b.cotangent(s) for s in p.sinks]
    grads = [b.gradient(v) for v in p.inputs]
    ret = ", ".join(grads) if len(grads) > 1 else f"({grads[0]},)"
    m = _MODULE[target]
    forward = [line(s, m) for s in p.steps]
    backward = _backward_lines(b, target)
    if target == "torch":
        forward = [_torch(ln) for ln in forward]
        backward = [_torch(ln) for ln in backward]
    sinks = ", ".join(p.sinks) if len(p.sinks) > 1 else p.sinks[0]
    doc = ['"""The backward of a cell, derived by einsum_magic.', "",
           "The forward, as read (products as einsums):", "",
           *[f"    {line(s)}" for s in p.steps], "",
           "Shapes: " + ", ".join(f"{v} {p.shapes[v]}" for v in p.inputs + p.sinks)
           + "; the code is written for these shapes.", '"""']
    head = doc + _head(b, target) + ["", ""]
    if target == "numpy":
        body = [f"def backward({', '.join(cots)}, {inputs}):",
                f'    """The gradients of the cell\'s inputs at {", ".join(cots)}: '
                f'{", ".join(grads)}."""',
                *[f"    {ln}" for ln in forward + backward], f"    return {ret}"]
    else:
        used = set(_WORD.findall("\n".join(backward)))
        residuals = [v for v in p.values if v in used]
        res = ", ".join(residuals) if len(residuals) != 1 else f"{residuals[0]},"
        cot = ", ".join(cots) if len(cots) == 1 else "cotangents"
        unpack = [] if len(cots) == 1 else [f"    {', '.join(cots)} = cotangents"]
        if target == "jax":
            body = ["@jax.custom_vjp", f"def cell({inputs}):",
                    '    """The cell\'s forward; under jax.vjp its backward is cell_bwd."""',
                    *[f"    {ln}" for ln in forward], f"    return {sinks}", "", "",
                    f"def cell_fwd({inputs}):", *[f"    {ln}" for ln in forward],
                    f"    return {sinks}, ({res})", "", "",
                    f"def cell_bwd(residuals, {cot}):", *unpack, f"    {res} = residuals",
                    *[f"    {ln}" for ln in backward], f"    return {ret}", "", "",
                    "cell.defvjp(cell_fwd, cell_bwd)"]
        else:
            body = ["class Cell(torch.autograd.Function):",
                    '    """The cell\'s forward, with the backward derived by einsum_magic."""', "",
                    "    @staticmethod", f"    def forward(ctx, {inputs}):",
                    *[f"        {ln}" for ln in forward],
                    f"        ctx.save_for_backward({', '.join(residuals)})",
                    f"        return {sinks}", "",
                    "    @staticmethod", f"    def backward(ctx, {', '.join(cots)}):",
                    f"        {res} = ctx.saved_tensors",
                    *[f"        {ln}" for ln in backward], f"        return {ret}", "", "",
                    f"def cell({inputs}):",
                    '    """The cell\'s forward, differentiable through Cell.backward."""',
                    f"    return Cell.apply({inputs})"]
    return "\n".join(head + body) + "\n"


#: NumPy functions of the backward program and PyTorch's spelling (constants keep NumPy's).
_TORCH = ("einsum", "ones", "eye", "zeros_like", "sign", "cos", "sin", "sum", "broadcast_to",
          "exp", "log", "tanh", "sqrt", "abs", "max", "maximum")


def _torch(code: str) -> str:
    """A line of the program in PyTorch's spelling (the few names that differ).

    >>> _torch("Z = torch.maximum(H, 0)")
    'Z = torch.clamp(H, min=0)'
    >>> _torch("g = np.expand_dims(y, (1,)) * np.sign(x) / (np.sqrt(K.shape[-1]))")
    'g = y.unsqueeze(1) * torch.sign(x) / (np.sqrt(K.shape[-1]))'
    """
    code = re.sub(r"np\.expand_dims\((\w+), \((-?\d+),\)\)", r"\1.unsqueeze(\2)", code)
    code = re.sub(r"\bnp\.(" + "|".join(_TORCH) + r")\((?!\w+\.shape\[-?\d+\]\))",
                  r"torch.\1(", code)
    code = re.sub(r"torch\.maximum\(([^,]+), 0\)", r"torch.clamp(\1, min=0)", code)
    code = re.sub(r"torch\.max\((\w+), axis=(\([^)]*\)), keepdims=(\w+)\)",
                  r"torch.amax(\1, dim=\2, keepdim=\3)", code)
    code = re.sub(r"torch\.sum\((.+?), axis=(\([^)]*\)), keepdims=True\)",
                  r"torch.sum(\1, dim=\2, keepdim=True)", code)
    code = re.sub(r"torch\.(ones|eye)\((\w+)\.shape\[(\d+)\]\)",
                  r"torch.\1(\2.shape[\3], dtype=\2.dtype, device=\2.device)", code)
    return code
