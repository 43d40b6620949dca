"""The recorded cell backward as standalone source for NumPy, JAX or PyTorch.

This module owns the arrow *a* :class:`~einsum_magic.chain.result.CellBackward` *→ exported
source* (what :meth:`CellBackward.export <einsum_magic.chain.result.CellBackward.export>`
returns). The source is laid out by the one writer of exports
(:class:`einsum_magic.compute.export.Module`), the same as a single einsum's: a docstring,
the imports, and ``cell_backward(<cotangents>, <forward values read>)`` returning
``{name: gradient}`` for every value the backward derives. Its body is the backward program
(:attr:`Program.code <einsum_magic.chain.program.Program>`, the lines :meth:`CellBackward.run
<einsum_magic.chain.result.CellBackward.run>` executes) in the target's spelling
(:func:`einsum_magic.compute.spell.spell`):

* ``"numpy"``: the program's lines as they are;
* ``"jax"``: ``jax.numpy`` namesakes, written functionally, so that :func:`jax.jit`
  compiles the function (XLA's FLOPs against ``jax.vjp``: ``benchmarks/bench_chain.py``);
  except where the backward indexes with a boolean mask: a gradient gathered through it has
  a shape that depends on the mask's values, so that function runs eagerly only;
* ``"torch"``: PyTorch's spelling, on tensors (index ranges it makes, ``torch.arange``,
  are on the CPU).

:func:`compiled` runs exactly that source; :func:`arguments` gives its arguments at the run's
values, as the target's arrays (a scalar sink's cotangent defaults to 1).
"""

from __future__ import annotations

import ast

import numpy as np

from ..compute.export import Function, Module, check_target, execute
from ..compute.spell import spell
from ..errors import EinsumError
from .names import READERS

__all__ = ["export", "compiled", "arguments", "TARGETS", "ENTRY"]

TARGETS = ("numpy", "jax", "torch")
#: The exported function's name.
ENTRY = "cell_backward"
#: Names the exported source defines or imports: a parameter may not take them.
RESERVED = frozenset({"np", "jnp", "jax", "torch", "math", "add_at", ENTRY})


def _parameters(b) -> tuple[str, ...]:
    p = b.program
    return tuple(p.grad_names[s] for s in p.sinks) + tuple(p.read_names[v] for v in p.reads)


def export(b, target: str = "numpy") -> str:
    """Python source of ``b``'s backward for ``target`` (see the module doc).

    Raises :class:`~einsum_magic.errors.EinsumError` for an unknown target, a parameter
    that takes a name the source needs, or a line the target cannot spell.
    """
    check_target(target, TARGETS)
    params = _parameters(b)
    clash = RESERVED & set(params)
    if clash:
        raise EinsumError(f"the name {sorted(clash)[0]!r} is used by the exported code: "
                          "rename it in the cell")
    spelled = spell(b.program.code, target)
    names = b.names.name
    derived = ", ".join(f"{names[v]!r}: {b.program.grad_names[v]}" for v in b.program.derived)
    title = {"numpy": "NumPy", "jax": "JAX", "torch": "PyTorch"}[target]
    sinks = ", ".join(b.program.grad_names[s] for s in b.program.sinks)
    doc = (f"The backward of a cell for {title}, derived by einsum_magic from the record of its "
           "run.", "", f"cell_backward takes the cotangent of each sink ({sinks}) and the "
           "forward values", "the backward reads; it returns {name: gradient} for every value "
           "it derives.")
    body = (*spelled.lines, f"return {{{derived}}}")
    fn = Function(ENTRY, params, body, doc=f"The gradients of the cell at {sinks}.")
    return Module(doc, spelled.imports, (*spelled.helpers, fn)).source()


def compiled(b, target: str = "numpy"):
    """Execute :func:`export`'s source in a fresh namespace and return ``cell_backward``."""
    return execute(export(b, target), ENTRY, f"cell_export_{target}")


def arguments(b, target: str = "numpy", cotangents=None) -> dict:
    """``{parameter: value}`` for :func:`compiled`'s function at the run's values.

    ``cotangents``: ``{dL_d<sink> or sink name: array}``; a scalar sink takes 1 by default.
    Values are the target's arrays (``jnp.asarray``, ``torch.tensor``), dtypes kept.
    """
    check_target(target, TARGETS)
    p, rec = b.program, b.recording
    given = dict(cotangents or {})
    read = {n.id for n in ast.walk(ast.parse(p.code)) if isinstance(n, ast.Name)}
    values = {}
    for s in p.sinks:
        grad, name = p.grad_names[s], b.names.name[s]
        value = given.get(grad, given.get(name))
        if value is None and rec.info[s].shape and grad in read:
            raise ValueError(f"give the cotangent of every sink that is not a scalar: "
                             f"missing {grad}")
        if value is None:                # a scalar: 1; a sink every path of which is opaque: 0
            value = 1.0 if grad in read else 0.0
        sink = np.asarray(_numpy(rec, s))
        values[grad] = np.array(np.broadcast_to(np.asarray(_numpy_any(value), dtype=sink.dtype),
                                                sink.shape))     # its own, writable
    for v in p.reads:
        values[p.read_names[v]] = np.asarray(_numpy(rec, v))
    if target == "jax":
        import jax.numpy as jnp

        return {k: jnp.asarray(x) for k, x in values.items()}
    if target == "torch":
        import torch

        # PyTorch takes an unsigned integer array for a mask, NumPy for indices: int64
        return {k: torch.tensor(x.astype(np.int64) if x.dtype.kind == "u" else x)
                for k, x in values.items()}
    return values


def _numpy(rec, v):
    return READERS.get(rec.info[v].framework, ("", np.asarray))[1](rec.values[v])


def _numpy_any(value):
    if hasattr(value, "detach"):                 # a tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)
