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
* An **escape** is a value the cell turned into a Python number (``float(x)``,
  ``x.item()``, ``x.tolist()``, ``math.sqrt(x)``, ``int(x)``): what the cell computes from
  that number the record meets as a constant. :attr:`Recording.escaped` says where each
  value left and whether the number fed a later line (``scale = math.sqrt(s)``, read later)
  or was only printed or logged; one that fed is no start of the backward (it was read),
  and, for NumPy, is not derived through as if it had not left
  (:mod:`~einsum_magic.chain.program`).
* :attr:`Recording.values` holds *references* to the run's arrays, not copies. A snapshot
  (a copy) is taken only when an in-place operation is about to change an array whose
  current value a node has read or produced (``W[:] = 0`` after ``X @ W``).
* **Bounded**: the arrays the record holds for the backward (results of nodes and
  snapshots) count against :attr:`Recording.budget` bytes (:data:`BUDGET`, 256 MB by
  default), and one call of one line may be recorded :data:`MAX_REPEATS` times (a long
  loop; a loop whose length the cell's source tells, ``for i in range(1000)``, stops the
  record at its second step, :attr:`Recording.loops`). Past either the record drops
  everything it holds, records nothing more, and :attr:`Recording.stopped` says why in one
  line.

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

__all__ = ["Ref", "Node", "Escape", "Recording", "recording", "renamed", "Recorder", "BUDGET",
           "MAX_NODES",
           "MAX_REPEATS"]

#: Default budget of a record in bytes: the arrays it holds beyond the user's own.
BUDGET = 256 * 2**20

#: Most nodes one record keeps.
MAX_NODES = 20_000

#: Most times one call of one line is recorded: a loop that runs more (a training loop)
#: stops the record there, so that the rest of the run pays almost nothing. 32 covers an
#: RNN unrolled over 25 steps (min-char-rnn's ``seq_length``); each recorded step of a loop
#: costs several µs a call (benchmarks/bench_record.py), which a 1,000-step loop of small
#: arrays pays for every step before the cap.
MAX_REPEATS = 32


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


def _ref(v: int) -> Ref:
    """``Ref(v)``, its field set at once (see :meth:`Recording.record`)."""
    r = _NEW(Ref)
    r.__dict__["id"] = v
    return r


def _walk(obj) -> Iterable:
    if isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _walk(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _walk(o)
    else:
        yield obj


def renamed(parts, rename: dict) -> list[Node]:
    """A decomposition's ``parts`` with the values of ``rename`` (id → id) renamed, where
    they are made and where they are read: the parts' results become the decomposed call's
    own. No part works in place (the call they make up did, if any).

    >>> p = Node(0, "torch", "torch.ops.aten.mul", None, (Ref(1), 2), (), (5,))
    >>> q = Node(0, "torch", "torch.ops.aten.add", None, (Ref(5), 1), (), (6,))
    >>> [(n.refs, n.outs) for n in renamed([p, q], {5: 9})]
    [((1,), (9,)), ((9,), (6,))]
    """
    def ref(r: Ref) -> Ref:
        return Ref(rename.get(r.id, r.id))

    return [Node(p.index, p.framework, p.op, p.func, map_refs(p.args, ref),
                 map_refs(p.kwargs, ref), tuple(rename.get(o, o) for o in p.outs), p.line,
                 p.where, False, tuple(rename.get(r, r) for r in p.refs)) for p in parts]


class Recorder:
    """What the NumPy and JAX recorders share: entering runs :meth:`_start`, and where it
    fails halfway, :meth:`_exit` puts back what it had done before the error goes on;
    leaving runs :meth:`_exit` (which must be safe to run twice)."""

    def __enter__(self):
        try:
            self._start()
        except BaseException:
            self._exit()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._exit()
        return False

    def _start(self) -> None:
        raise NotImplementedError

    def _exit(self) -> None:
        raise NotImplementedError


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


@dataclass(frozen=True)
class Escape:
    """Where a value left the record as a Python number: ``how`` (``float()``, ``item()``),
    the cell's ``line`` and user function ``where``, and ``fed``: whether the line binds a
    name that a later line of the cell reads (``scale = math.sqrt(s)`` then ``X / scale``:
    the number fed what came next) rather than printing or logging it."""

    how: str
    line: int
    where: str
    fed: bool


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
        self.escaped: dict[int, Escape] = {}   # id → where it left as a Python number (first)
        self.grad_reset: set[int] = set()      # id(obj) of arrays whose .grad the cell reset
        self.stopped = ""
        self.unrecorded = ""                   # a framework left out of the record, and why
        self.observed: set[str] = set()        # frameworks whose recorder observed the run
        self.held = 0                          # bytes held for the backward
        self._current: dict[int, int] = {}     # id(obj) → id of its current version
        self._read: set[int] = set()           # ids a node read or produced
        self._memory: dict = {}                 # memory key → ids recorded with it
        self._bytes: dict[int, int] = {}
        self._repeats: dict = {}
        self._next = 1
        self._on_stop: list = []
        #: cell line → ``steps()``: the steps of the loop the line runs in, counted when one
        #: of its calls repeats, ``(steps, why)`` or None (set by
        #: :func:`~einsum_magic.chain.recorders.recording` from the cell's source)
        self.loops: dict[int, Callable[[], tuple[int, str] | None]] = {}
        #: cell line → whether it binds a name a later line reads (:class:`Escape` ``fed``;
        #: set from the cell's source by :func:`~einsum_magic.chain.recorders.recording`)
        self.feeds: Callable[[int], bool] = lambda line: True

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
        current = self._current
        for a in arrays:
            v = current.get(id(a))
            if v is None:
                v = self._new(a, framework, None, describe)
            out.append(_ref(v))
        return out

    def ref_of(self, a, framework: str = "python", describe=None) -> Ref:
        """:meth:`refs_of` of one array."""
        v = self._current.get(id(a))
        if v is None:
            v = self._new(a, framework, None, describe)
        return _ref(v)

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
        node, or None once the record has stopped. ``kwargs``: a dict, or already a tuple of
        ``(name, value)`` pairs.
        """
        if self.stopped:
            return None
        index = len(self.nodes)
        key = (line, where, count_as or op)
        repeats = self._repeats
        seen = repeats.get(key, 0) + 1
        repeats[key] = seen
        if seen > MAX_REPEATS:
            at = f"line {line}" if line else "the cell"
            self.stop(f"{at} ran `{op}` more than {MAX_REPEATS} times (a loop): the cell "
                      "backward covers runs without long loops")
            return None
        if seen == 2 and line in self.loops:       # a loop's second step: how many follow?
            long = self.loops[line]()
            if long is not None and long[0] > MAX_REPEATS:
                self.stop(f"line {line} runs {long[0]} times ({long[1]}), more than "
                          f"{MAX_REPEATS}: the cell backward covers runs without long loops")
                return None
        new = self._new
        ids = tuple([new(a, framework, index, describe) for a in outs])
        if refs is None:
            refs = tuple([r.id for r in _walk((args, kwargs)) if isinstance(r, Ref)])
        # a frozen dataclass's __init__ sets each field through object.__setattr__: the
        # record writes its nodes' fields at once (the same object, a few µs less a call)
        node = _NEW(Node)
        node.__dict__.update(index=index, framework=framework, op=op, func=func,
                             args=args if type(args) is tuple else tuple(args),
                             kwargs=kwargs if type(kwargs) is tuple else tuple(kwargs.items()),
                             outs=ids, line=line, where=where, inplace=inplace, refs=refs)
        self.nodes.append(node)
        read = self._read
        read.update(refs)
        read.update(ids)
        nbytes = self._bytes
        for v in ids:
            self.held += nbytes[v]
        if self.held > self.budget:
            self.stop(f"the run's values exceeded the record's budget of {_mb(self.budget)} "
                      f"at {node.at()} ({op})")
        elif len(self.nodes) >= self.max_nodes:
            self.stop(f"the run made more than {self.max_nodes} array operations "
                      f"(stopped at {node.at()})")
        return node

    def escape(self, obj, how: str, line: int, where: str) -> None:
        """``obj`` (an array of the run) was turned into a Python number by ``how``: note where
        its current version left (the first time its number fed a later line, else the first
        time), if the record met it and it is floating."""
        v = self._current.get(id(obj))
        if v is None or self.stopped or not self.info[v].floating:
            return
        fed = self.feeds(line)
        if v not in self.escaped or (fed and not self.escaped[v].fed):   # the first that fed
            self.escaped[v] = Escape(how, line, where, fed)

    def before_inplace(self, aliases: Iterable[int], copy, reading: Iterable[int] = ()) -> None:
        """Snapshot every value in ``aliases`` (ids sharing the changed memory) a node used,
        or that the in-place call itself reads (``reading``: its target's version before,
        ``V *= 2`` on an input no node read yet).

        ``copy(array)`` → an independent copy (the framework's ``clone``).
        """
        aliases = list(aliases)
        reading = set(reading)
        for v in aliases:
            if (v in self._read or v in reading) and v not in self.snapshots \
                    and self.values.get(v) is not None:
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
        self.escaped.clear()
        self.values.clear()
        self.info.clear()
        self._current.clear()
        self._memory.clear()
        hooks, self._on_stop = self._on_stop, []
        for fn in hooks:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a recorder's own clean-up never fails the cell
                pass

    def on_stop(self, fn) -> None:
        """Call ``fn()`` once when the record stops (a recorder letting go of what it holds)."""
        self._on_stop.append(fn)

    # -- internals --------------------------------------------------------------------------

    def _new(self, a, framework, producer, describe, constant=False, why="") -> int:
        v = self._next
        self._next = v + 1
        d = describe(a) if describe is not None else (None, "", False, 0)
        shape, dtype, floating, nbytes = d[0], d[1], d[2], d[3]
        self._bytes[v] = nbytes
        self.values[v] = a
        info = _NEW(ValueInfo)          # as Node in record(): the fields at once
        info.__dict__.update(framework=framework,
                             shape=shape if type(shape) is tuple else
                             (tuple(shape) if shape is not None else ()),
                             dtype=dtype if type(dtype) is str else str(dtype),
                             floating=bool(floating), producer=producer,
                             constant=constant, why=why)
        self.info[v] = info
        self._current[id(a)] = v
        if len(d) > 4:
            self._memory.setdefault(d[4], []).append(v)
        return v


_NEW = object.__new__


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
