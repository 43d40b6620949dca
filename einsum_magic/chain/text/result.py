"""The backward of a whole cell: :class:`CellBackward`, and :func:`cell_backward` that builds it.

This module owns the chain's public record (what ``-o NAME`` stores as ``NAME.backward``)
and the one function that runs the arrow source → program → bound program → backward
program → check. Where the forward values come from is one argument, ``inputs`` (a mapping
name → array): today the user's namespace (or arrays of ``--sizes``), later a capture of
the run can feed it the same way.

>>> import numpy as np
>>> b = cell_backward("H = X @ W\\nZ = np.tanh(H)", {"X": np.ones((2, 3)), "W": np.ones((3, 4))},
...                   check=False)
>>> b.inputs, b.sinks
(('X', 'W'), ('Z',))
>>> print(b.code)
dL_dH = dL_dZ * (1 - Z ** 2)
dL_dX = np.einsum('ik,jk->ij', dL_dH, W)
dL_dW = np.einsum('ik,ij->jk', dL_dH, X)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ...cell.source import tree as parsed
from .backward import BackLine, backward_lines, gradient_names
from .forward import bind, line
from .program import Program
from .reading import read

__all__ = ["CellBackward", "cell_backward", "for_cell", "or_none"]


@dataclass(frozen=True)
class CellBackward:
    """The backward program of a cell, bound to its arrays.

    ``code``: runnable NumPy that, executed with the forward values (:attr:`values`, or
    :attr:`forward_code` run first) and ``dL_d<sink>`` for each sink, assigns ``dL_d<input>``
    for each input (and for each ``stop`` step's result). ``check`` is the
    :class:`~einsum_magic.chain.text.check.ChainCheck` (``None`` with ``check_note`` saying why).
    """

    program: Program                  # bound: products as einsums, shapes known
    lines: tuple[BackLine, ...]
    notes: tuple[str, ...] = ()
    check: Any = None
    check_note: str = ""
    values: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    constants: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names the cell reads from outside: each gets ``dL_d<name>``."""
        return self.program.inputs

    @property
    def stops(self) -> tuple[str, ...]:
        """Results of steps that are not differentiated: the backward stops there."""
        return tuple(s.target for s in self.program.steps if s.kind == "stop")

    @property
    def sinks(self) -> tuple[str, ...]:
        """Values the cell computes that nothing later reads: each takes ``dL_d<sink>``."""
        return self.program.sinks

    @property
    def forward_code(self) -> str:
        """The forward program as NumPy lines (one per step, products as einsums)."""
        return "\n".join(line(s) for s in self.program.steps)

    @property
    def code(self) -> str:
        """The backward program: runnable NumPy, one line per gradient."""
        return "\n".join(b.code for b in self.lines)

    def cotangent(self, sink: str) -> str:
        """The name :attr:`code` reads the cotangent of ``sink`` from (``dL_d<sink>``)."""
        return gradient_names(self.program)[sink]

    def gradient(self, value: str) -> str:
        """The name :attr:`code` assigns the gradient of ``value`` to (``dL_d<value>``)."""
        return gradient_names(self.program)[value]

    def namespace(self) -> dict:
        """``np``, the constants and modules the steps' text names, and every forward value."""
        ns = dict(self.constants)
        ns["np"] = np
        ns.update(self.values)
        return ns

    def run(self, cotangents: Mapping[str, Any]) -> dict[str, Any]:
        """Execute :attr:`code` with the forward values and ``cotangents`` (``dL_d<sink>`` →
        array).

        Returns ``dL_d<leaf>`` → gradient for every input and stop result.
        """
        missing = [self.cotangent(s) for s in self.sinks if self.cotangent(s) not in cotangents]
        if missing:
            raise ValueError(f"give the cotangent of every sink: missing {', '.join(missing)}")
        ns = self.namespace()
        ns.update(cotangents)
        exec(compile(self.code, "<einsum_magic cell backward>", "exec"), ns)
        return {self.gradient(v): ns[self.gradient(v)] for v in self.program.leaves}

    def export(self, target: str) -> str:
        """The cell's forward and backward as one NumPy function, ``jax.custom_vjp`` or
        ``torch.autograd.Function`` (:mod:`einsum_magic.chain.text.export`)."""
        from .export import export

        return export(self, target)

    def compile(self, target: str):
        """Run :meth:`export`'s source and return its entry point."""
        from .export import compiled

        return compiled(self, target)


#: The check's budget: the cell's values, all together, in elements (float64, twice: NumPy
#: and JAX). A bigger cell is derived, but checked only on request (``check_backward``).
CHECK_ELEMENTS = 4_000_000


def cell_backward(source: str, inputs: Mapping[str, Any],
                  namespace: Mapping[str, Any] | None = None, *, check: bool = True,
                  seed: int = 0, program: Program | None = None,
                  max_elements: int = CHECK_ELEMENTS,
                  known: Mapping[str, Any] | None = None) -> CellBackward:
    """Read ``source``, bind it to ``inputs`` (name → array), derive its backward and check it.

    ``namespace`` (the user's, read only) gives modules and numeric constants; ``inputs``
    the arrays of the names the cell reads from outside (the namespace itself will do).
    ``known``: the values the run gave the cell's ``stop`` steps (the results of what is
    not differentiated), used as they are. Raises
    :class:`~einsum_magic.chain.text.forward.BindError` when an input is missing or the forward
    fails on these arrays.
    """
    namespace = dict(namespace if namespace is not None else inputs)
    read_program = program if program is not None else read(source, namespace)
    bound, values = bind(read_program, inputs, namespace, known)
    constants = {n: namespace[n] for n in bound.constants if n in namespace}
    constants.update((n, v) for n, v in namespace.items() if _is_module(v))
    result = CellBackward(bound, backward_lines(bound), bound.notes, values=values,
                          constants=constants)
    if not check:
        return result
    size = sum(int(np.size(v)) for v in values.values())
    if size > max_elements:
        return dataclasses.replace(result, check_note=(
            f"not run: the cell's values hold {size} elements, over the check's budget of "
            f"{max_elements} (run einsum_magic.chain.text.check.check_backward(b) to check anyway)"))
    if any(np.iscomplexobj(v) for v in values.values()):
        return dataclasses.replace(result, check_note="not run: complex values (the cell check "
                                                      "compares real gradients)")
    from ...check.report import JaxNotInstalled, jax_available
    from .check import check_backward

    if not jax_available():
        return dataclasses.replace(result, check_note=f"not run: {JaxNotInstalled()}")
    try:
        return dataclasses.replace(result, check=check_backward(result, seed))
    except Exception as e:  # noqa: BLE001 - JAX failing on a program it was given
        return dataclasses.replace(result, check_note=f"could not run: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}")


def _is_module(value) -> bool:
    import types

    return isinstance(value, types.ModuleType)


#: Kinds read from products written without einsum: a cell with one of them gets a backward.
PRODUCTS = frozenset({"matmul", "dot", "inner", "outer", "tensordot", "trace", "diagonal",
                      "transpose", "swapaxes"})


def for_cell(source: str, namespace: Mapping[str, Any], *, ran: bool, sizes: Mapping[str, int]
             | None = None, check: bool = True, seed: int = 0, skipped: str = ""
             ) -> tuple[CellBackward | None, str]:
    """The magic's entry: ``(CellBackward or None, a note or '')`` for a cell's source.

    A cell gets a backward when it has at least two steps, or a product written without
    einsum (constants, steps that are not differentiated and transposes do not count: an
    einsum of ``A.T`` is one einsum), except a cell that is one product alone
    (:func:`~einsum_magic.chain.text.products.single_product`: its einsum's display says it all).

    Input arrays come from ``namespace`` (read only); an input the cell rebinds is not read
    from it after the run (it holds the new value). An input with no array that
    only einsums read gets seeded random values of the shape ``sizes`` (``--sizes``) and the
    defaults give (:func:`einsum_magic.core.shapes.shapes_from`); any other missing input leaves
    the cell without a backward, and the note says which. ``skipped``: why the check is off.
    """
    try:
        program = read(source, namespace)
    except SyntaxError:
        return None, ""
    except Exception as e:  # noqa: BLE001 - never fail the user's cell over its reading
        return None, f"cell backward: not derived: the cell could not be read ({e})"
    steps = [s for s in program.steps
             if s.kind not in ("const", "stop", "transpose", "swapaxes")]
    if len(steps) < 2 and not any(s.kind in PRODUCTS for s in steps):
        return None, ""
    from .products import single_product

    if or_none(single_product, source, namespace) is not None:     # its einsum's display
        return None, ""
    rebound = set(dict(program.renamed).values())
    inputs: dict[str, Any] = {}
    missing = []
    for v in program.inputs:
        value = namespace.get(v)
        if value is not None and hasattr(value, "shape") and not (ran and v in rebound):
            inputs[v] = value
        else:
            missing.append(v)
    made, note = _from_sizes(program, missing, inputs, dict(sizes or {}), seed)
    if note:
        return None, note
    inputs.update(made)
    known = _stop_values(program, source, namespace) if ran else {}
    try:
        result = cell_backward(source, inputs, namespace, check=check, seed=seed,
                               program=program, known=known)
    except Exception as e:  # noqa: BLE001 - BindError, or derive() refusing a bound einsum
        return None, f"cell backward: not derived: {str(e).splitlines()[0]}"
    if not check and skipped:
        result = dataclasses.replace(result, check_note=f"skipped ({skipped})")
    if made:
        result = dataclasses.replace(result, notes=result.notes + (
            f"{', '.join(made)}: seeded random arrays of the shapes --sizes and the defaults "
            "give (no array of the cell's)",))
    return result, ""


def _stop_values(program: Program, source: str, namespace: Mapping[str, Any]) -> dict:
    """The run's values of the cell's top-level ``stop`` results (what is not differentiated).

    Only a name the cell assigns and keeps (its last version) holds, after the run, the
    value the step computed.
    """
    import ast

    assigned = {t.id for node in parsed(source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}
    return {s.target: namespace[s.target] for s in program.steps
            if s.kind == "stop" and s.target in assigned
            and hasattr(namespace.get(s.target), "shape")}


def or_none(fn, *args):
    """``fn(*args)``, or None where it raises (the alone-product display is an extra)."""
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None


def _from_sizes(program: Program, missing, inputs, sizes, seed):
    """Arrays for missing inputs that einsums read, from ``--sizes`` and the defaults."""
    from ...core.shapes import shapes_from

    rng = np.random.default_rng(seed)
    made: dict[str, Any] = {}
    for v in missing:
        shape = None
        for s in program.steps:
            if s.kind == "einsum" and v in s.args:
                known = {k: np.shape(inputs.get(a, made.get(a))) for k, a in enumerate(s.args)
                         if a in inputs or a in made}
                shapes, _ = shapes_from(s.param, known, sizes)
                shape = shapes[s.args.index(v)]
                break
        if shape is None:
            return {}, (f"cell backward: not derived: {v} has no array here (define it, or run "
                        "the cell), and no einsum fixes its shape")
        made[v] = rng.standard_normal(shape)
    return made, ""
