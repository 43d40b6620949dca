"""The record of a cell's run: every array operation it performed, in its framework's terms.

This module owns the first arrow of the cell backward: *the one run of the cell → a*
:class:`Recording`. It is the data model every recorder writes and every later step
(:mod:`~einsum_magic.chain.rules`, :mod:`~einsum_magic.chain.program`,
:mod:`~einsum_magic.chain.names`, :mod:`~einsum_magic.chain.check`) reads. The source text
of the cell is never read here: lines and function names come from the frames of the run.

The contract:

* A **value** is one version of one array object of the run, named by an integer id
  (``Ref(id)``), in the order the record met it. An in-place operation (``add_``,
  ``__setitem__``, ``+=``) gives its target a new version: a new id for the same object.
* A :class:`Node` is one recorded call: ``outs = func(*args, **kwargs)``, with every
  recorded array in ``args``/``kwargs`` replaced by its :class:`Ref` (also inside tuples
  and lists, e.g. an index ``(range(n), Yb)``) and everything else kept as the plain
  constant the call received. ``op`` is the framework's own name of the call
  (``torch.Tensor.matmul``, ``torch.nn.functional.cross_entropy``); ``func`` the callable
  itself, so that a check can *replay* the node exactly; ``outs`` the ids of the array
  results, flattened in order (``max(1)`` → ``(values, indices)``); ``line`` the cell's
  line the call ran from (0 when unknown) and ``where`` the user's function it ran in
  (``''`` at the cell's top level).
* **Leaves** are values no recorded node produced: arrays from before the cell, random
  draws, arrays made from Python data, and results of calls the record keeps as constants
  (grad-mode off, ``detach``, ``zeros_like``). Leaves in :attr:`Recording.constants`
  are never differentiated.
* :attr:`Recording.values` holds *references* to the run's arrays, not copies. A snapshot
  (a copy) is taken only when an in-place operation is about to change an array whose
  current value a node has read or produced (``W[:] = 0`` after ``X @ W``).
* **Bounded**: the arrays the record holds for the backward (results of nodes and
  snapshots) count against :attr:`Recording.budget` bytes (:data:`BUDGET`, 256 MB by
  default), and one call of one line may be recorded :data:`MAX_REPEATS` times (a long
  loop). Past either the record drops everything it holds, records nothing more, and
  :attr:`Recording.stopped` says why in one line.

A recorder (one per framework, :mod:`einsum_magic.chain.recorders`) calls
:meth:`Recording.record` for each call it observes, and :meth:`Recording.before_inplace`
before an in-place one. :func:`einsum_magic.chain.recorders.recording` is the one context manager the magic
enters around the run; it starts every framework's recorder that is imported.

>>> rec = Recording()
>>> import operator
>>> a, b = [1.0, 2.0], [3.0, 4.0]
>>> (x,), (y,) = rec.refs_of([a]), rec.refs_of([b])
>>> rec.values[x.id] is a, sorted(rec.leaves)
(True, [1, 2])
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

__all__ = ["Ref", "Node", "Recording", "recording", "BUDGET", "MAX_NODES", "MAX_REPEATS"]

#: Default budget of a record in bytes: the arrays it holds beyond the user's own.
BUDGET = 256 * 2**20

#: Most nodes one record keeps.
MAX_NODES = 20_000

#: Most times one call of one line is recorded: a loop that runs more (a training loop)
#: stops the record there, so that the rest of the run pays almost nothing.
MAX_REPEATS = 256


@dataclass(frozen=True)
class Ref:
    """A recorded value inside a node's arguments: the id of one version of one array."""

    id: int

    def __repr__(self) -> str:
        return f"Ref({self.id})"


@dataclass(frozen=True)
class Node:
    """One recorded call of the run: ``outs = func(*args, **kwargs)`` (see the module doc).

    ``kwargs`` is a tuple of ``(name, value)`` pairs (the node is frozen and hashable
    where its constants are). ``inplace``: the call changed ``args[0]`` (or the first
    :class:`Ref` it received) in place; its version before is an argument, after an out.
    """

    index: int
    framework: str
    op: str
    func: Callable = field(repr=False, compare=False)
    args: tuple
    kwargs: tuple
    outs: tuple[int, ...]
    line: int = 0
    where: str = ""
    inplace: bool = False
    #: the ids this node read, in the order they appear (repeats kept: ``x * x``)
    refs: tuple[int, ...] = None

    def __post_init__(self):
        if self.refs is None:
            object.__setattr__(self, "refs", tuple(
                r.id for r in _walk((self.args, self.kwargs)) if isinstance(r, Ref)))

    def kw(self) -> dict:
        """The keyword arguments as a dict."""
        return dict(self.kwargs)

    def at(self) -> str:
        """Where the call ran, in words: ``line 3``, ``line 3, in forward``."""
        where = f"line {self.line}" if self.line else "the cell"
        return f"{where}, in {self.where}" if self.where else where


def _walk(obj) -> Iterable:
    if isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _walk(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _walk(o)
    else:
        yield obj


def map_refs(obj, fn):
    """``obj`` with every :class:`Ref` replaced by ``fn(ref)`` (tuples, lists, dicts kept).

    >>> map_refs((Ref(1), [2, Ref(3)], {"k": Ref(1)}), lambda r: r.id * 10)
    (10, [2, 30], {'k': 10})
    """
    if isinstance(obj, Ref):
        return fn(obj)
    if isinstance(obj, tuple):
        items = [map_refs(o, fn) for o in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    if isinstance(obj, list):
        return [map_refs(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: map_refs(v, fn) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class ValueInfo:
    """What the record knows of one value besides the array itself."""

    framework: str
    shape: tuple
    dtype: str
    floating: bool             # differentiable dtype (floating or complex)
    producer: int | None       # index of the node that produced it; None for a leaf
    constant: bool = False     # a leaf the backward never differentiates
    why: str = ""              # for a constant: what made it one ("torch.no_grad", …)


class Recording:
    """The record of one run (see the module doc): nodes, values, leaves, budget.

    Recorders call :meth:`refs_of`, :meth:`record`, :meth:`leaf` and
    :meth:`before_inplace`; every other module only reads.
    """

    def __init__(self, budget: int = BUDGET, namespace: dict | None = None,
                 max_nodes: int = MAX_NODES):
        self.budget = budget
        self.max_nodes = max_nodes
        self.namespace = namespace if namespace is not None else {}
        self.nodes: list[Node] = []
        self.values: dict[int, Any] = {}
        self.info: dict[int, ValueInfo] = {}
        self.snapshots: set[int] = set()     # ids whose value is a copy taken before a change
        self.backwarded: list[int] = []       # ids the cell called ``.backward()`` on
        self.grad_reset: set[int] = set()      # id(obj) of arrays whose .grad the cell reset
        self.stopped = ""
        self.observed: set[str] = set()        # frameworks whose recorder observed the run
        self.held = 0                          # bytes held for the backward
        self._current: dict[int, int] = {}     # id(obj) → id of its current version
        self._read: set[int] = set()           # ids a node read or produced
        self._memory: dict = {}                 # memory key → ids recorded with it
        self._bytes: dict[int, int] = {}
        self._repeats: dict = {}
        self._next = 1

    # -- reading -------------------------------------------------------------------------

    @property
    def leaves(self) -> tuple[int, ...]:
        """Ids of values no recorded node produced, in the order they were met."""
        return tuple(v for v, i in self.info.items() if i.producer is None)

    @property
    def constants(self) -> tuple[int, ...]:
        """Ids of leaves the backward never differentiates."""
        return tuple(v for v, i in self.info.items() if i.constant)

    def current(self, obj) -> int | None:
        """The id of ``obj``'s current version, or None if the record never met it."""
        v = self._current.get(id(obj))
        return v if v is not None and self.values.get(v) is not None else v

    def versions(self, obj) -> list[int]:
        """Every id ``obj`` had, oldest first (one per in-place change)."""
        current = self.current(obj)
        out = []
        v = current
        while v is not None:
            out.append(v)
            p = self.info[v].producer
            node = self.nodes[p] if p is not None else None
            v = node.refs[0] if node is not None and node.inplace and node.refs else None
        return out[::-1]

    # -- writing (recorders) ---------------------------------------------------------------

    def refs_of(self, arrays, framework: str = "python", describe=None) -> list[Ref]:
        """A :class:`Ref` for each array: its current version, or a new leaf."""
        out = []
        for a in arrays:
            v = self._current.get(id(a))
            if v is None:
                v = self._new(a, framework, None, describe)
            out.append(Ref(v))
        return out

    def leaf(self, arrays, framework: str, describe=None, *, constant: bool = False,
             why: str = "") -> None:
        """Make each array's current version a new leaf; ``constant``: never differentiated
        (``why``: what made it one, e.g. ``torch.no_grad``)."""
        for a in arrays:
            self._new(a, framework, None, describe, constant=constant, why=why)

    def record(self, framework: str, op: str, func, args, kwargs, outs, describe, *,
               inplace: bool = False, line: int = 0, where: str = "",
               refs: tuple[int, ...] | None = None, count_as: str = "") -> Node | None:
        """Append one node; ``args``/``kwargs`` already hold :class:`Ref` s (:meth:`refs_of`).

        ``outs``: the array results, flattened; ``describe(a)`` → (shape, dtype, floating,
        nbytes, memory key); ``refs``: the ids in ``args``/``kwargs`` in order, where the
        recorder knows them already; ``count_as``: what :data:`MAX_REPEATS` counts the call
        as (default ``op``; JAX's ``jit`` calls count by the function they call). Returns the
        node, or None once the record has stopped.
        """
        if self.stopped:
            return None
        index = len(self.nodes)
        key = (line, where, count_as or op)
        seen = self._repeats.get(key, 0) + 1
        self._repeats[key] = seen
        if seen > MAX_REPEATS:
            at = f"line {line}" if line else "the cell"
            self.stop(f"{at} ran `{op}` more than {MAX_REPEATS} times (a loop): the cell "
                      "backward covers runs without long loops")
            return None
        ids = tuple([self._new(a, framework, index, describe) for a in outs])
        node = Node(index, framework, op, func, tuple(args), tuple(kwargs.items()),
                    ids, line, where, inplace, refs)
        self.nodes.append(node)
        self._read.update(node.refs)
        self._read.update(ids)
        for v in ids:
            self.held += self._bytes[v]
        if self.held > self.budget:
            self.stop(f"the run's values exceeded the record's budget of {_mb(self.budget)} "
                      f"at {node.at()} ({op})")
        elif len(self.nodes) >= self.max_nodes:
            self.stop(f"the run made more than {self.max_nodes} array operations "
                      f"(stopped at {node.at()})")
        return node

    def before_inplace(self, aliases: Iterable[int], copy) -> None:
        """Snapshot every value in ``aliases`` (ids sharing the changed memory) a node used.

        ``copy(array)`` → an independent copy (the framework's ``clone``).
        """
        aliases = list(aliases)
        for v in aliases:
            if v in self._read and v not in self.snapshots and self.values.get(v) is not None:
                self.values[v] = copy(self.values[v])
                self.snapshots.add(v)
                self.held += _nbytes(self.values[v])
                if self.held > self.budget:
                    self.stop(f"the run's values exceeded the record's budget of "
                              f"{_mb(self.budget)} (copies kept before in-place changes)")
                    return

    def ids_of_memory(self, key) -> list[int]:
        """Ids recorded with memory ``key`` (:meth:`_new`'s ``describe`` gives it) that an
        in-place change there could still affect: those not copied yet (a copy is the
        version's value for good). A recorder may hold a version through another object
        than the user's (NumPy's plain view of a boxed array), so identity does not decide."""
        ids = [v for v in self._memory.get(key, ()) if v not in self.snapshots]
        if key in self._memory:
            self._memory[key] = ids
        return list(ids)

    def stop(self, why: str) -> None:
        """Record nothing more and let go of every array held; ``why`` is the one line."""
        self.stopped = why
        self.nodes.clear()
        self.values.clear()
        self.info.clear()
        self._current.clear()
        self._memory.clear()

    # -- internals --------------------------------------------------------------------------

    def _new(self, a, framework, producer, describe, constant=False, why="") -> int:
        v = self._next
        self._next += 1
        shape, dtype, floating, nbytes, *memory = (describe(a) if describe is not None
                                                   else (None, "", False, 0))
        self._bytes[v] = nbytes
        self.values[v] = a
        self.info[v] = ValueInfo(framework, tuple(shape) if shape is not None else (),
                                 str(dtype), bool(floating), producer, constant, why)
        self._current[id(a)] = v
        if memory:
            self._memory.setdefault(memory[0], []).append(v)
        return v


def _nbytes(a) -> int:
    n = getattr(a, "nbytes", None)
    if n is None and hasattr(a, "element_size"):
        n = a.element_size() * a.nelement()
    return int(n or 0)


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


def cell_line(namespace: dict, depth: int = 2) -> tuple[int, str]:
    """(the cell's line, the user's function) of the call being recorded, from the frames.

    The cell's top level is the frame that runs with the user's namespace as its globals
    and ``<module>`` as its code; the innermost frame with those globals but another code
    name is the user's function (``''`` at the top level). A function the cell itself
    defines gives the line in its body; one defined elsewhere, the cell's line that called it.
    """
    frame = sys._getframe(depth)
    inner = None
    while frame is not None:
        if frame.f_globals is namespace:
            if frame.f_code.co_name == "<module>":
                if inner is None:
                    return frame.f_lineno, ""
                if inner.f_code.co_filename == frame.f_code.co_filename:
                    return inner.f_lineno, inner.f_code.co_name
                return frame.f_lineno, inner.f_code.co_name
            if inner is None:
                inner = frame
        frame = frame.f_back
    return 0, inner.f_code.co_name if inner is not None else ""
