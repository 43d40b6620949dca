"""The backward of a whole cell: :class:`CellBackward`, built from the record of its run.

This module owns the chain's public record (what ``-o NAME`` stores as ``NAME.backward``)
and the one function the magic calls, :func:`for_cell`: record → names → program → check.

* :attr:`CellBackward.code`: runnable NumPy, pasted after the cell it runs in the user's
  namespace: a preamble binds the forward values it reads (``W1_np = W1.detach().numpy()``,
  temporaries recomputed) and the cotangents (1 for a scalar sink; for another, the
  ``dL_d<sink>`` the user defined before pasting, else ones), then one line per gradient
  term. A value the namespace no longer holds in the version the backward needs (changed
  in place after use, a random draw) is never recomputed: with ``-o r`` the code reads it
  from ``r.backward.value(name)``, the run's value the record keeps; without, it says so
  and leaves the lines that need it as comments.
* :meth:`CellBackward.gradients` → ``{name: array}`` for every input and named
  intermediate; :meth:`CellBackward.grad_of` → the gradient of one array, tensor or
  parameter object; :meth:`CellBackward.run` → ``{dL_d<name>: array}``. These execute
  the same lines, bound to the run's recorded values (references, not copies).
* :attr:`CellBackward.check`: a :class:`~einsum_magic.check.records.CheckReport` (the one
  report of einsums and cells), or ``None`` with :attr:`CellBackward.check_note` saying why.

A cell that did not run (``--no-run``) goes to :func:`numpy_text_backward`, the retiring
reading of the cell's text (:mod:`einsum_magic.chain.text`): the one place it is still
reachable from. A run that recorded nothing has no cell backward (never a reading of its
text).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .names import READERS, Names, names_for
from .program import Program, build
from .record import Recording

__all__ = ["CellBackward", "for_cell", "from_recording", "numpy_text_backward", "ALONE"]

#: A record of one of these calls alone is one einsum: its own display says it all (the
#: magic shows a NumPy product alone, ``C = A @ B``, as the einsum it is).
ALONE = frozenset({"torch.einsum", "numpy.einsum", "opt_einsum.contract", "einops.einsum",
                   "numpy.matmul", "numpy.dot",
                   "numpy.ndarray.dot", "numpy.inner", "numpy.outer", "numpy.tensordot",
                   "numpy.trace", "numpy.ndarray.trace", "numpy.diagonal",
                   "numpy.ndarray.diagonal", "numpy.transpose", "numpy.ndarray.transpose",
                   "numpy.ndarray.T", "numpy.swapaxes", "numpy.ndarray.swapaxes",
                   "numpy.sum", "numpy.ndarray.sum"})

#: NumPy operand expressions of that one einsum (``np.einsum('ij,jk', A.T.T, B)``): the
#: einsum's display shows them (``op1 = A.T.T``).
LAYOUT = frozenset({"numpy.ndarray.T", "numpy.transpose", "numpy.ndarray.transpose",
                    "numpy.swapaxes", "numpy.ndarray.swapaxes", "numpy.reshape",
                    "numpy.ndarray.reshape"})


@dataclass(frozen=True)
class CellBackward:
    """The backward program of a cell's recorded run (see the module doc)."""

    recording: Recording = dataclasses.field(repr=False, compare=False)
    names: Names = dataclasses.field(repr=False, compare=False)
    program: Program
    check: Any = None
    check_note: str = ""
    notes: tuple[str, ...] = ()
    source: str = ""                  # the cell's code, as it ran (lines count from 1)
    #: the expression that reaches this object after the cell (``r.backward`` for ``-o r``),
    #: or ``''``: :attr:`code` binds from it the run's values the namespace no longer holds
    holder: str = ""

    # -- what it reads and gives -------------------------------------------------------

    @property
    def inputs(self) -> tuple[str, ...]:
        """The leaves differentiated (the cell's parameters and inputs), by name."""
        return tuple(self.names.name[v] for v in self.program.inputs)

    @property
    def sinks(self) -> tuple[str, ...]:
        """The values the backward starts from (each takes ``dL_d<sink>``)."""
        return tuple(self.names.name[v] for v in self.program.sinks)

    @property
    def intermediates(self) -> tuple[str, ...]:
        """Named values the cell computed whose gradient the backward derives."""
        return tuple(self.names.name[v] for v in self.program.derived
                     if v in self.names.user and v not in self.program.inputs)

    @property
    def not_derived(self) -> dict[str, str]:
        """Name → what it crosses, for inputs and named values whose gradient is not derived."""
        return {self.names.name[v]: "; ".join(o.words() for o in cut)
                for v, cut in self.program.not_derived.items()
                if v in self.program.inputs or v in self.names.user}

    @property
    def lines(self):
        return self.program.lines

    def _id(self, name: str) -> int:
        for v, n in self.names.name.items():
            if n == name:
                return v
        raise KeyError(f"{name!r} is no value of the cell's backward (inputs: "
                       f"{', '.join(self.inputs)})")

    def gradient(self, value: str) -> str:
        """The name :attr:`code` assigns the gradient of ``value`` to (``dL_d<value>``)."""
        return self.program.grad_names[self._id(value)]

    def cotangent(self, sink: str) -> str:
        """The name :attr:`code` reads the cotangent of ``sink`` from."""
        return self.program.grad_names[self._id(sink)]

    # -- the code ---------------------------------------------------------------------

    def _default_cotangents(self) -> list[str]:
        out = []
        for s in self.program.sinks:
            name = self.program.grad_names[s]
            if self.recording.info[s].shape:
                # a non-scalar sink: the cotangent the user defined before pasting, read
                # as NumPy (a tensor too), never replaced by ones over theirs
                out.append(f"{name} = np.asarray({name}) if {name!r} in globals() else "
                           f"np.ones({tuple(self.recording.info[s].shape)})  "
                           f"# the cotangent of {self.names.name[s]}: define {name} first")
            else:
                out.append(f"{name} = 1.0")
        return out

    def value(self, name: str):
        """The run's value of ``name`` as NumPy, read-only: the version the backward reads,
        also where the namespace no longer holds it (an array the cell changed in place
        after using it, ``W[:] = 0``; a random draw; a temporary). :attr:`code` reads these
        through it (``W_ = r.backward.value('W')``) when the result is kept (``-o r``)."""
        v = self._id(name)
        rec = self.recording
        x = np.asarray(READERS.get(rec.info[v].framework, ("", np.asarray))[1](rec.values[v]))
        view = x.view()
        view.flags.writeable = False
        return view

    @property
    def code(self) -> str:
        """Preamble, cotangents and backward lines: runs pasted after the cell.

        A forward value the namespace no longer holds and the preamble cannot recompute
        (:attr:`Program.unavailable <einsum_magic.chain.program.Program>`: the version of an
        array the cell changed in place after using it, a random draw) is never recomputed
        otherwise: where the result is kept (``-o r``, :attr:`holder`) the code binds the
        run's value from it (``W_ = r.backward.value('W')``); else it is named in one
        comment line and the lines that need it, directly or through a gradient they make,
        are shown as comments, so that the rest still runs (:meth:`run` runs them all).
        """
        head = list(self.program.preamble)
        lines = [b.code for b in self.program.lines]
        missing = [self.names.name[v] for v in self.program.unavailable]
        if missing and self.holder:
            head.extend(f"{self.program.read_names[v]} = {self.holder}.value("
                        f"{self.names.name[v]!r})" for v in self.program.unavailable)
        elif missing:
            lines = _commented_out(lines, {self.program.read_names[v]
                                           for v in self.program.unavailable})
        used = "\n".join(head + lines)
        for alias, module in (("math", math), ("np", np)):   # what the lines call, where
            bound = self.recording.namespace.get(alias)        # the user's namespace lacks
            if bound is not module and (alias == "np" or re.search(rf"\b{alias}\.", used)):
                head.insert(0, f"import {module.__name__}" + (f" as {alias}" if alias !=
                               module.__name__ else "") + ("" if bound is None else
                               f"  # the backward's {alias}: yours is rebound"))
        if missing and self.holder:
            head.insert(0, f"# not in the namespace any more, so read from the run's values "
                           f"{self.holder} keeps: {', '.join(missing)}")
        elif missing:
            head.insert(0, f"# not in the namespace any more (b.run() binds the run's values; "
                           f"with -o NAME, this code reads them from NAME.backward.value), so "
                           f"the lines that need them are comments: {', '.join(missing)}")
        return "\n".join(head + self._default_cotangents() + lines)

    # -- running it -------------------------------------------------------------------

    def _values(self) -> dict[int, Any]:
        rec = self.recording
        return {v: READERS.get(rec.info[v].framework, ("", np.asarray))[1](rec.values[v])
                for v in self.program.reads}

    def execute(self, values: Mapping[int, Any], cotangents: Mapping[int, Any]) -> dict:
        """Run the backward lines with forward ``values`` and ``cotangents`` (both by id).

        Returns value id → gradient for every derived value.
        """
        ns: dict[str, Any] = {"np": np, "math": math}     # what rules call
        for v, x in values.items():
            ns[self.program.read_names[v]] = x
        for s, c in cotangents.items():
            ns[self.program.grad_names[s]] = c
        exec(compile(self.program.code, "<einsum_magic cell backward>", "exec"), ns)
        return {v: ns[self.program.grad_names[v]] for v in self.program.derived
                if self.program.grad_names[v] in ns}

    def _cotangents(self, cotangents) -> dict[int, Any]:
        given = dict(cotangents or {})
        out = {}
        for s in self.program.sinks:
            name, grad = self.names.name[s], self.program.grad_names[s]
            if grad in given:
                out[s] = given[grad]
            elif name in given:
                out[s] = given[name]
            elif not self.recording.info[s].shape:
                out[s] = 1.0
            elif not re.search(rf"\b{grad}\b", self.program.code):
                out[s] = 0.0              # every path from it crosses an opaque step
            else:
                raise ValueError(f"give the cotangent of every sink that is not a scalar: "
                                 f"missing {grad}")
        return out

    def gradients_by_id(self, cotangents=None) -> dict[int, Any]:
        """Value id → gradient (the run's values; scalar sinks default to cotangent 1)."""
        cots = self._cotangents({self.program.grad_names[k] if isinstance(k, int) else k: c
                                 for k, c in dict(cotangents or {}).items()})
        return self.execute(self._values(), cots)

    def contributions(self, name: str, cotangents=None) -> tuple[tuple[int, Any], ...]:
        """``((cell line, term), …)``: the terms of ``name``'s gradient, one per use of it.

        A value the cell uses on two lines has two terms (the product rule's sum); they
        add up to :meth:`gradients`' entry. Each term is what the lines derived from one
        recorded use added to ``dL_d<name>``, in the order of the cell's lines.
        """
        v = self._id(name)
        grad = self.program.grad_names.get(v)
        if grad is None or v not in self.program.derived:
            return ()
        ns: dict[str, Any] = {"np": np, "math": math}     # what rules call
        for r, x in self._values().items():
            ns[self.program.read_names[r]] = x
        for s, c in self._cotangents(cotangents).items():
            ns[self.program.grad_names[s]] = c
        terms: dict[Any, list] = {}
        before = 0.0
        for b in self.program.lines:
            exec(compile(b.code, "<einsum_magic cell backward>", "exec"), ns)
            if b.target == v and grad in ns:
                now = np.array(ns[grad], copy=True)
                key = b.node if b.node is not None else len(terms)
                terms.setdefault(key, [b.line, 0.0])[1] = terms.get(key, [0, 0.0])[1] + (now - before)
                before = now
        return tuple(sorted(((line, term) for line, term in terms.values()), key=lambda t: t[0]))

    def run(self, cotangents: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``dL_d<name>`` → gradient for every derived value, at the run's values."""
        got = self.gradients_by_id(cotangents)
        return {self.program.grad_names[v]: g for v, g in got.items()}

    def gradients(self, cotangents: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``{name: gradient}`` for every input and named intermediate that is derived."""
        got = self.gradients_by_id(cotangents)
        keep = set(self.program.inputs) | set(self.names.user)
        return {self.names.name[v]: g for v, g in got.items() if v in keep}

    def grad_of(self, obj, cotangents: Mapping[str, Any] | None = None):
        """The gradient of the array, tensor or parameter ``obj``: of the version its plain
        name is (:mod:`~einsum_magic.chain.names`): an input as the cell received it (also
        where the cell changed it in place afterwards), a value the cell made as the cell
        left it; else its last version."""
        v = self.recording.current(obj)
        if v is None:
            raise KeyError("that object is no value the cell's run recorded")
        v = self.names.plain.get(v, v)
        if v in self.program.not_derived:
            crosses = "; ".join(o.words() for o in self.program.not_derived[v])
            raise KeyError(f"the gradient of {self.names.name[v]} is not derived (crosses "
                           f"{crosses})")
        got = self.gradients_by_id(cotangents)
        if v not in got:
            raise KeyError(f"{self.names.name[v]} does not reach a sink of the cell")
        return got[v]

    def export(self, target: str = "numpy") -> str:
        """The backward as one function's source for ``target``: ``"numpy"``, ``"jax"``
        or ``"torch"`` (:mod:`einsum_magic.chain.export`)."""
        from .export import export

        return export(self, target)


def from_recording(rec: Recording, namespace: dict, source: str | None = None, *,
                   check: bool = True, seed: int = 0, skipped: str = "",
                   holder: str = "") -> CellBackward:
    """Name, derive and check the backward of a recorded run; ``holder``: the expression
    that will reach it after the cell (:attr:`CellBackward.holder`)."""
    names = names_for(rec, namespace, source)
    program = build(rec, names)
    notes = []
    if program.opaque:
        notes.append("not derived across " + "; ".join(f"{o.words()} ({o.why})"
                                                       for o in program.opaque))
    result = CellBackward(rec, names, program, notes=tuple(notes), source=source or "",
                          holder=holder)
    if not check:
        return dataclasses.replace(result, check_note=f"skipped ({skipped})" if skipped
                                   else "not run")
    from .check import check_program

    try:
        report = check_program(result, seed)
    except Exception as e:  # noqa: BLE001 - the check failing is said, never raised
        return dataclasses.replace(result, check_note=f"could not run: {type(e).__name__}: "
                                   f"{str(e).splitlines()[0] if str(e) else ''}")
    return dataclasses.replace(result, check=report)


#: JAX's conversions of the operands before an einsum (NumPy arrays made JAX arrays).
_JAX_LAYOUT = frozenset({"jax.lax.convert_element_type", "jax.lax.device_put"})


def _jax_einsum_alone(rec) -> bool:
    """A JAX record of one einsum (``jnp.einsum``, alone in a jitted function too), after
    the conversions of its operands."""
    last = rec.nodes[-1]
    if last.framework != "jax" or not all(n.op in _JAX_LAYOUT for n in rec.nodes[:-1]):
        return False
    from .recorders.jax import is_einsum

    return is_einsum(last)


def for_cell(rec: Recording | None, source: str, namespace: Mapping[str, Any], *, ran: bool,
             sizes=None, check: bool = True, seed: int = 0, skipped: str = "",
             output: str = ""):
    """The magic's entry: ``(backward or None, a note or '')`` for a cell and its record;
    ``output``: the ``-o NAME`` the result is kept under (its backward is ``NAME.backward``).

    A record with nodes gives a :class:`CellBackward`; a record that stopped gives its one
    line; a run that recorded nothing gives none; a cell that did not run goes to
    :func:`numpy_text_backward`.
    """
    if rec is not None and rec.stopped:
        return None, f"cell backward: not recorded: {rec.stopped}"
    if rec is not None and rec.nodes:
        if ((len(rec.nodes) == 1 and rec.nodes[0].op.rsplit(".", 1)[-1] in _PRODUCTS)
                or (rec.nodes[-1].op in ALONE and all(n.op in LAYOUT for n in rec.nodes[:-1]))
                or _jax_einsum_alone(rec)):
            return None, ""                       # one product: its own display says it all
        try:
            return from_recording(rec, dict(namespace), source, check=check, seed=seed,
                                  skipped=skipped,
                                  holder=f"{output}.backward" if output else ""), ""
        except Exception as e:  # noqa: BLE001 - never fail the user's cell over its backward
            return None, f"cell backward: not derived: {type(e).__name__}: {e}"
    if rec is not None and ran:        # the run recorded no array operation: nothing to derive,
        return None, (f"cell backward: not recorded: {rec.unrecorded}"    # or left out
                      if rec.unrecorded else "")
    return numpy_text_backward(source, namespace, ran=ran, sizes=sizes, check=check,
                               seed=seed, skipped=skipped)


def _commented_out(lines: list[str], missing: set[str]) -> list[str]:
    """``lines`` with every line that reads a name of ``missing`` turned into a comment, and
    what it assigns or fills (``t[...] = …``, ``np.add.at(t, …)``) missing from then on.

    >>> _commented_out(["a = x_np * 2", "b = y_np + 1", "c = a + b", "np.add.at(d, i, a)",
    ...                 "e = d * 1", "a += b", "f = b"], {"x_np"})   # doctest: +NORMALIZE_WHITESPACE
    ['# a = x_np * 2', 'b = y_np + 1', '# c = a + b', '# np.add.at(d, i, a)', '# e = d * 1',
     '# a += b', 'f = b']
    """
    import ast

    missing = set(missing)
    out = []
    for line in lines:
        try:
            tree = ast.parse(line)
        except SyntaxError:
            out.append(line)
            continue
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)
                 and isinstance(n.ctx, ast.Load)}
        loads |= {n.target.id for n in ast.walk(tree) if isinstance(n, ast.AugAssign)
                  and isinstance(n.target, ast.Name)}              # ``g += …`` reads g
        if not loads & missing:
            out.append(line)
            continue
        out.append(f"# {line}")
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            elif isinstance(node, ast.Call) and node.args:     # np.add.at(t, …) fills t
                targets = [node.args[0]]
            for t in targets:
                while isinstance(t, (ast.Subscript, ast.Attribute)):
                    t = t.value
                if isinstance(t, ast.Name):
                    missing.add(t.id)
    return out


_PRODUCTS = frozenset({"einsum", "matmul", "__matmul__", "mm", "bmm", "mv", "dot"})


def numpy_text_backward(source, namespace, *, ran, sizes=None, check=True, seed=0,
                        skipped=""):
    """The retiring reading of a NumPy cell's text (:mod:`einsum_magic.chain.text`).

    Reached only for runs that recorded nothing; the NumPy recorder replaces it.
    """
    from .text.result import for_cell as text_for_cell

    return text_for_cell(source, namespace, ran=ran, sizes=sizes, check=check, seed=seed,
                         skipped=skipped)
