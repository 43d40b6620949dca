"""The reverse pass over a record: one program of NumPy lines, and what it could not derive.

This module owns the arrow *a :class:`~einsum_magic.chain.record.Recording` + its
:class:`~einsum_magic.chain.names.Names` → a :class:`Program`*. The contract:

* **Sinks** are the values the cell differentiated itself (``loss.backward()``), else the
  floating results of calls that are not in place, that no later node read and that the
  user named (if none is named: every such result); where one of those is a scalar (the
  loss), the scalars alone: a value nothing reads that does not lead to the loss (running
  statistics, an errors array) takes no cotangent. Each sink gets ``dL_d<sink>`` (1 for a
  scalar). A value the cell turned into a Python number that fed a later line
  (``scale = math.sqrt((X ** 2).sum())``; :attr:`Recording.escaped
  <einsum_magic.chain.record.Recording>`) was read: it is a sink only where no other scalar
  is (``lv = float(loss)`` read later). One only printed or logged stays what it was.
* A NumPy value whose number fed a later line and that is no sink cuts the paths through
  it: what the cell computed from the number (``X / scale``) the record met as a constant,
  so the values it was computed from are *not derived* (across ``float()``, its line),
  never derived as if the number had been a constant of the math (``int()`` is exact: its
  derivative is 0). torch's autograd, the reference of a torch cell, treats ``item()`` as
  a constant itself: there it is one.
* **Inputs** are the floating leaves that are not constants and reach a sink.
* Nodes are visited in reverse; a node whose results carry a cotangent contributes, by its
  rule (:mod:`~einsum_magic.chain.rules`), one term to each input's gradient. A value read
  by several nodes gets its first term assigned and the others added with ``+=``.
* A node without a rule is replaced by its framework's own decomposition where there is
  one whose parts all have rules (torch: ``torch._decomp`` down to prims, e.g.
  ``F.softplus`` → ``exp``, ``log1p``, ``where``).
* A node without a rule (or whose rule refuses it) is **opaque**: every value whose path
  to a sink crosses it is *not derived* (:attr:`Program.not_derived` names the opaque
  node(s)); its gradient is never shown as if it were whole. The others are still derived.
* The lines read forward values by their NumPy names (:attr:`Program.read_names`); the
  :attr:`Program.preamble` binds them from the user's namespace (``W1_np =
  W1.detach().numpy()``) or recomputes a temporary from the names it has, so that
  ``preamble + lines`` runs pasted after the cell. A name is read only where the
  namespace's object is that very version now (:attr:`Names.bound
  <einsum_magic.chain.names.Names>`); an older version made in place (``h += b``) is
  recomputed by the same call out of place; a call that draws (dropout in training) is
  never made again. A value the namespace no longer holds and that cannot be recomputed
  is listed in :attr:`Program.unavailable`: the lines still run through
  :meth:`CellBackward.run <einsum_magic.chain.result.CellBackward.run>`, which binds
  the run's recorded values.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, replace

from .names import READERS, Names
from .record import Node, Recording, Ref, map_refs
from .rules import Context, NoRule, as_ruled, rule_for

__all__ = ["BackLine", "Program", "build", "Opaque"]


@dataclass(frozen=True)
class BackLine:
    """One line of the backward: its code, the cell line and node it comes from, its rule.

    ``target``: the value id whose gradient the line assigns or adds to (``None`` for a
    setup line of a rule).
    """

    code: str
    line: int = 0
    node: int | None = None
    target: int | None = None
    rule: str = ""


@dataclass(frozen=True)
class Opaque:
    """A node the backward does not cross: its op, where it ran, and why."""

    node: int
    op: str
    line: int
    where: str
    why: str

    def words(self) -> str:
        at = f"line {self.line}" if self.line else "the cell"
        if self.where:
            at += f", in {self.where}"
        return f"`{self.op}`, {at}"


@dataclass(frozen=True)
class Program:
    """The backward program of a record (see the module doc)."""

    lines: tuple[BackLine, ...]
    sinks: tuple[int, ...]
    inputs: tuple[int, ...]
    derived: tuple[int, ...]                     # ids whose gradient the lines assign, whole
    not_derived: dict = field(default_factory=dict)   # id → tuple of Opaque it crosses
    opaque: tuple[Opaque, ...] = ()
    reads: tuple[int, ...] = ()                  # forward values the lines read, in order
    read_names: dict = field(default_factory=dict)
    grad_names: dict = field(default_factory=dict)
    preamble: tuple[str, ...] = ()
    unavailable: tuple[int, ...] = ()
    zeros: tuple[int, ...] = ()          # inputs no rule differentiates: gradient 0
    parts: tuple[Node, ...] = ()         # nodes of decompositions (their values are read)

    @property
    def code(self) -> str:
        return "\n".join(b.code for b in self.lines)


class _Ctx(Context):
    def __init__(self, build: "_Builder", node: Node):
        self.b, self.node = build, node

    def x(self, arg) -> str:
        if not isinstance(arg, Ref):
            raise NoRule(f"a constant where a value was expected: {arg!r}")
        return self.b.read(arg.id)

    def g(self, k: int = 0):
        v = self.node.outs[k]
        return self.b.grad_names[v] if v in self.b.have else None

    def gname(self, k: int = 0) -> str:
        return self.b.grad_names[self.node.outs[k]][len("dL_d"):]

    def out(self, k: int = 0) -> str:
        return self.b.read(self.node.outs[k])

    def shape(self, arg) -> tuple:
        return tuple(self.b.rec.info[arg.id].shape) if isinstance(arg, Ref) else ()

    def dtype(self, arg) -> str:
        return self.b.rec.info[arg.id].dtype if isinstance(arg, Ref) else ""

    def value(self, arg):
        reader = READERS[self.b.rec.info[arg.id].framework][1]
        return reader(self.b.rec.values[arg.id])

    def tmp(self, hint: str) -> str:
        return self.b.fresh(hint)


class _Builder:
    def __init__(self, rec: Recording, names: Names):
        self.rec, self.names = rec, names
        self.taken = set(names.ident.values()) | set(rec.namespace)
        self.grad_names = {v: self._free(f"dL_d{names.ident[v]}") for v in rec.info}
        self.read_names: dict[int, str] = {}
        self.reads: list[int] = []
        self.have: dict[int, int] = {}      # id → number of terms emitted so far

    def _free(self, name: str) -> str:
        while name in self.taken:
            name += "_"
        self.taken.add(name)
        return name

    def fresh(self, hint: str) -> str:
        k = 0
        while True:
            name = hint if k == 0 else f"{hint}_{k}"
            if name not in self.taken:
                self.taken.add(name)
                return name
            k += 1

    def read(self, v: int) -> str:
        if v not in self.read_names:
            info = self.rec.info[v]
            suffix = "" if info.framework == "numpy" else "_np"
            ident = self.names.ident[v]
            if info.framework == "numpy" and (self.names.bound.get(v) == ident or (
                    v not in self.names.bound and ident not in self.rec.namespace)):
                self.read_names[v] = ident     # the user's array or a temporary, as it is
            else:
                self.read_names[v] = self._free(ident + suffix)
            self.reads.append(v)
        return self.read_names[v]


def _sinks(rec: Recording, names: Names, consumed: set, active: set) -> tuple[int, ...]:
    """The values the backward starts from (see the module doc).

    What the cell differentiated itself (``loss.backward()``) is the sink. Else the candidates
    are the floating results nothing read (the named ones, if any is named); a scalar among
    them is the loss, and then the others (running statistics, an errors array, a
    hand-derived ``dW``) are values the cell keeps, not sinks: they take no cotangent.
    Without a scalar, every candidate is a sink (``Z = np.tanh(X @ W)``, with ``dL_dZ``).
    """
    out = tuple(dict.fromkeys(v for v in rec.backwarded if v in rec.info and v in active))
    if out:
        return out
    free = [o for n in rec.nodes for o in n.outs
            if o not in consumed and rec.info[o].floating and not n.inplace and o in active]
    named = [v for v in free if v in names.user]
    candidates = named or free
    escaped = rec.escaped
    # a number that fed a later line was read (``scale = math.sqrt((X ** 2).sum())``); one
    # printed or logged (``print(loss.item())``, ``losses.append(float(loss))``) was not
    kept = [v for v in candidates if v not in escaped or not escaped[v].fed]
    scalars = [v for v in kept if not rec.info[v].shape] or [
        v for v in candidates if not rec.info[v].shape]       # (``lv = float(loss)``, read)
    return tuple(dict.fromkeys(scalars or kept or candidates))


#: Why a NumPy value that left the record as a Python number cuts the paths through it.
LEFT = ("it left the record as Python numbers, which a later line read: what the cell "
        "computed from them is a constant to the backward")


def _escapes(rec: Recording, sinks: tuple, active: set) -> list[tuple[int, set]]:
    """(value, the values it was computed from) for each NumPy value that left the record as a
    Python number that fed a later line, and is no sink: the gradients of those values would
    cross what the cell did with the number, which the record did not see (torch's autograd,
    the reference of a torch cell, treats ``item()`` as a constant too: not cut there)."""
    out = []
    for v, e in rec.escaped.items():
        if (v in sinks or not e.fed or e.how == "int()" or v not in active
                or rec.info[v].framework != "numpy"):   # (an int's derivative is 0: exact)
            continue
        seen, todo = {v}, [v]
        while todo:
            p = rec.info[todo.pop()].producer
            if p is not None:
                for r in rec.nodes[p].refs:
                    if r in active and r not in seen:
                        seen.add(r)
                        todo.append(r)
        out.append((v, seen))
    return out


def _decompose(rec: Recording, node: Node):
    """The framework's own decomposition of a node without a rule, or None."""
    if node.framework == "torch":
        from .recorders.torch import decompose

        return decompose(rec, node)
    if node.framework == "jax":                 # a jit's equations; a custom_jvp function
        from .recorders.jax import decompose    # with a rule is kept whole among them
        from .rules import rule_for as ruled

        return decompose(rec, node, keep=lambda op, params: ruled(
            Node(node.index, "jax", op, None, (), tuple(params.items()), ())) is not None)
    return None


def _expanded(rec: Recording, upstream: set) -> tuple[list[Node], dict]:
    """The nodes, each one without a rule on a path to a sink replaced by its parts.

    Returns (nodes, part → the node it is a part of).
    """
    out: list[Node] = []
    whole: dict = {}
    for n in rec.nodes:
        if rule_for(n) is None and any(o in upstream for o in n.outs):
            parts = _decompose(rec, n)
            if parts:
                for p in parts:
                    whole[id(p)] = n
                out.extend(parts)
                continue
        out.append(n)
    return out, whole


def build(rec: Recording, names: Names) -> Program:
    """The backward program of ``rec`` (see the module doc)."""
    b = _Builder(rec, names)
    consumed = {r for n in rec.nodes for r in n.refs}
    active: set[int] = {v for v in rec.leaves
                        if rec.info[v].floating and not rec.info[v].constant}
    for n in rec.nodes:
        if any(r in active for r in n.refs):
            active.update(o for o in n.outs if rec.info[o].floating)
    sinks = _sinks(rec, names, consumed, active)
    # values upstream of a sink
    upstream = set(sinks)
    for n in reversed(rec.nodes):
        if any(o in upstream for o in n.outs):
            upstream.update(r for r in n.refs if r in active)
    nodes, whole = _expanded(rec, upstream)
    for v in rec.info:                           # the parts' values: temporaries named
        if v not in names.ident:                 # for the call they are part of
            base = names.ident[rec.nodes[rec.info[v].producer].outs[0]] \
                if rec.info[v].producer is not None else "part"
            names.name[v] = names.ident[v] = b.fresh(f"{base}_part")
            b.grad_names[v] = b._free(f"dL_d{names.ident[v]}")
    for n in nodes:                              # the parts' values
        if id(n) in whole and any(r in active for r in n.refs):
            active.update(o for o in n.outs if rec.info[o].floating)
    for n in reversed(nodes):
        if id(n) in whole and any(o in upstream for o in n.outs):
            upstream.update(r for r in n.refs if r in active)
    uses: dict[int, int] = {}
    for n in nodes:
        if any(o in upstream for o in n.outs):
            for r in n.refs:
                uses[r] = uses.get(r, 0) + 1
    for s in sinks:
        b.have[s] = 1
    crosses: dict[int, set] = {}
    lines: list[BackLine] = []
    opaque: dict[int, Opaque] = {}
    for k, (v, before) in enumerate(_escapes(rec, sinks, active)):
        key = len(rec.nodes) + k                 # after every node: listed last
        e = rec.escaped[v]
        opaque[key] = Opaque(key, e.how, e.line, e.where, LEFT)
        for u in before:
            crosses.setdefault(u, set()).add(key)
    for n in reversed(nodes):
        outs = [o for o in n.outs if o in b.have or o in crosses]
        if not outs:
            continue
        needed = [r for r in dict.fromkeys(n.refs) if r in active and r in upstream]
        if not needed:
            continue
        cut = set().union(*(crosses.get(o, set()) for o in outs))
        backs = None
        if not cut:
            fn = rule_for(n)
            why = "no rule"
            if fn is not None:
                try:
                    ruled = as_ruled(n)
                    backs = fn(ruled, _Ctx(b, ruled))
                except NoRule as e:
                    why = f"no rule for {e}"
                except Exception as e:  # noqa: BLE001 - a rule failing is an opaque node
                    why = f"its rule failed: {type(e).__name__}: {e}"
            if backs is None:
                at = whole.get(id(n), n)
                op = at.op
                if at is not n:
                    why = f"its decomposition: {why} ({n.op.replace('torch.ops.', '')})"
                    if n.framework == "jax":      # a jit's name says little: its primitive
                        op = n.op
                opaque[at.index] = Opaque(at.index, op, at.line, at.where, why)
                cut = {at.index}
        if cut:
            for r in needed:
                crosses.setdefault(r, set()).update(cut)
            continue
        short = n.op.rsplit(".", 1)[-1].strip("_")     # a rule without words: its op's name
        backs = [bk if bk.rule else replace(bk, rule=short) for bk in backs]
        emitted = [bk for bk in backs if isinstance(bk.ref, Ref) and bk.ref.id in needed]
        if not emitted:
            continue
        seen_setup = set()
        for bk in backs:
            for s in bk.setup:
                if s not in seen_setup:
                    seen_setup.add(s)
                    lines.append(BackLine(s, n.line, n.index, None, bk.rule))
        for bk in emitted:
            v = bk.ref.id
            name = b.grad_names[v]
            if v not in b.have:
                expr = bk.expr
                if bk.view and uses.get(v, 1) > 1:
                    expr = f"np.array({expr})"
                lines.append(BackLine(f"{name} = {expr}", n.line, n.index, v, bk.rule))
                b.have[v] = 1
            else:
                lines.append(BackLine(f"{name} += {bk.expr}", n.line, n.index, v, bk.rule))
                b.have[v] += 1
    not_derived = {}
    for v, cut in crosses.items():
        not_derived[v] = tuple(opaque[i] for i in sorted(cut))
    # terms of a gradient that is not whole (x * y before x's path through an opaque
    # step) are never shown as if they were
    lines = [x for x in lines if x.target not in not_derived]
    inputs = tuple(v for v in rec.leaves if v in active and v in upstream)
    derived = tuple(v for v in b.have if v not in not_derived and v not in sinks)
    zeros = []
    for v in inputs:
        if v not in b.have and v not in not_derived:     # reaches a sink only through
            lines.append(BackLine(f"{b.grad_names[v]} = np.zeros_like({b.read(v)})",
                                  0, None, v, "no path"))  # steps that do not differentiate
            derived += (v,)                                # it (batch_norm's running_mean)
            zeros.append(v)
    code = "\n".join(x.code for x in lines)
    words = set(re.findall(r"\w+", code))                 # a name is read where it is a word
    b.reads = [v for v in b.reads if b.read_names[v] in words]
    b.read_names = {v: b.read_names[v] for v in b.reads}
    made = {o: n for n in nodes for o in n.outs}
    made.update({o: n for n in rec.nodes for o in n.outs})     # a whole call reads best
    preamble, unavailable = _preamble(rec, names, b, made)
    return Program(tuple(lines), sinks, inputs, derived, not_derived,
                   tuple(opaque[i] for i in sorted(opaque)), tuple(b.reads),
                   dict(b.read_names), dict(b.grad_names), preamble, unavailable,
                   tuple(zeros), tuple(n for n in nodes if id(n) in whole))


def _preamble(rec: Recording, names: Names, b: _Builder, made: dict
              ) -> tuple[tuple[str, ...], tuple]:
    """Lines binding every read value from the namespace, recomputing temporaries."""
    out: list[str] = []
    unavailable: list[int] = []
    torch_names: dict[int, str] = dict(names.bound)      # id → framework-side expression

    def framework_side(v: int, depth=0) -> str | None:
        if v in torch_names:
            return torch_names[v]
        node = made.get(v)
        if node is None:
            return _literal(rec, v)            # a small index array the cell made: np.arange(7)
        if depth > 50:
            return None
        if _draws(node):                     # a draw is never made again: the preamble
            return None                        # would get another mask than the run's
        if node.inplace:                     # an older version made in place (h += b):
            node = _out_of_place(node)         # the same call out of place, or nothing
            if node is None:
                return None
        args = {}
        for r in node.refs:
            e = framework_side(r, depth + 1)
            if e is None:
                return None
            args[r] = e
        call = _render(node, args)
        if call is None:
            return None
        name = names.ident[v]
        if name in rec.namespace or v in names.user:    # an older version of a user's name:
            name = b.fresh(f"{name}_t")                   # never rebind theirs
        k = node.outs.index(v)
        out.append(f"{name} = {call}" + (f"[{k}]" if len(node.outs) > 1 else ""))
        torch_names[v] = name
        return name

    for v in sorted(b.reads):           # in the run's order: each finds the one before it
        expr = framework_side(v)           # named, however long the chain (a 30-step loop)
        if expr is None:
            unavailable.append(v)
            continue
        template = READERS.get(rec.info[v].framework, ("{}", None))[0]
        if b.read_names[v] != template.format(expr):
            out.append(f"{b.read_names[v]} = {template.format(expr)}")
    return tuple(out), tuple(unavailable)


#: Most elements of an integer or boolean NumPy leaf the preamble writes out as a literal.
LITERAL_ELEMENTS = 64


def _literal(rec: Recording, v: int) -> str | None:
    """A small integer or boolean NumPy leaf as source (an index the cell made with
    ``np.arange(n)``: no name holds it), or None.

    >>> import numpy as np
    >>> rec = Recording(); (r,) = rec.refs_of([np.arange(3)], "numpy",
    ...     lambda a: (a.shape, a.dtype, False, a.nbytes))
    >>> _literal(rec, r.id)
    'np.array([0, 1, 2])'
    """
    info, value = rec.info[v], rec.values.get(v)
    if (info.framework != "numpy" or info.floating or value is None
            or not hasattr(value, "tolist") or getattr(value, "size", 0) > LITERAL_ELEMENTS
            or value.dtype.kind not in "biu"):
        return None
    default = {"b": "bool", "i": "int64"}.get(value.dtype.kind)
    dtype = "" if str(value.dtype) == default else f", dtype=np.{value.dtype}"
    return f"np.array({value.tolist()!r}{dtype})"


#: In-place torch calls → their out-of-place namesake (the same value, a new tensor).
_OUT_OF_PLACE = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div",
                 "__idiv__": "div", "__ipow__": "pow", "__imatmul__": "matmul"}
_OUT_OF_PLACE.update({f"{n}_": n for n in (
    "add", "sub", "mul", "div", "pow", "clamp", "clip", "relu", "tanh", "sigmoid", "exp", "log",
    "sqrt", "rsqrt", "neg", "abs", "masked_fill", "squeeze", "unsqueeze", "t", "transpose")})


def _out_of_place(node: Node) -> Node | None:
    """The in-place ``node`` as its out-of-place call (``h += b`` → ``torch.Tensor.add``; a
    NumPy ufunc that wrote into its first argument, ``f -= m``, is recorded without its
    ``out=``: the same call), or None where there is none (``__setitem__``, ``fill``,
    ``np.add.at``, torch's ``out=``): for the preamble to recompute an older version of an
    array the cell changed in place.

    >>> _out_of_place(Node(0, "torch", "torch.Tensor.__iadd__", None, (), (), (), inplace=True)).op
    'torch.Tensor.add'
    >>> import numpy as np
    >>> _out_of_place(Node(0, "numpy", "numpy.subtract", np.subtract, (), (), (), inplace=True)).inplace
    False
    """
    import dataclasses

    if node.framework == "numpy":
        ufunc = getattr(node.func, "__self__", node.func)     # ``np.subtract.__call__``
        if type(ufunc).__name__ == "ufunc" and node.op.count(".") == 1:
            return dataclasses.replace(node, inplace=False)
        return None
    short = node.op.rsplit(".", 1)[-1]
    if (node.framework != "torch" or not node.op.startswith("torch.Tensor.")
            or short not in _OUT_OF_PLACE or "out" in node.kw()):
        return None
    return dataclasses.replace(node, op=f"torch.Tensor.{_OUT_OF_PLACE[short]}", inplace=False)


#: Calls that draw random numbers (besides every kind of dropout), by their short name.
_DRAWS = frozenset({"rrelu", "gumbel_softmax", "bernoulli", "multinomial", "normal", "poisson",
                    "rand_like", "randn_like", "randint_like", "uniform", "exponential",
                    "random", "cauchy", "geometric", "log_normal"})


def _draws(node: Node) -> bool:
    """Whether calling ``node`` again could draw anew (dropout in training, rrelu, …).

    >>> _draws(Node(0, "torch", "torch.nn.functional.dropout", None, (None, 0.1, True), (), ()))
    True
    >>> _draws(Node(0, "torch", "torch.nn.functional.dropout", None, (None, 0.1, False), (), ()))
    False
    >>> _draws(Node(0, "torch", "torch.nn.functional.normalize", None, (), (), ()))
    False
    """
    parts = node.op.split(".")
    short = parts[3] if node.op.startswith("torch.ops.") and len(parts) > 3 else parts[-1]
    if "dropout" in short and node.op.startswith("torch.nn.functional."):
        kw = node.kw()                    # F.dropout(input, p, training, inplace): off is no draw
        p = node.args[1] if len(node.args) > 1 else kw.get("p", 0.5)
        training = node.args[2] if len(node.args) > 2 else kw.get("training", True)
        return bool(training) and p != 0
    return "dropout" in short or short.rstrip("_") in _DRAWS


def _render(node: Node, exprs: dict) -> str | None:
    """``node``'s call as source over ``exprs`` (id → expression), or None."""
    class _Code(str):
        def __repr__(self):
            return str(self)

    def conv(r: Ref):
        return _Code(exprs[r.id])

    args = map_refs(node.args, conv)
    kwargs = map_refs(dict(node.kwargs), conv)
    try:
        parts = [_source(a) for a in args] + [f"{k}={_source(v)}" for k, v in kwargs.items()]
    except ValueError:
        return None
    short = node.op.rsplit(".", 1)[-1]
    if node.op in ("torch.Tensor.__getitem__", "numpy.ndarray.__getitem__"):
        return f"{parts[0]}[{_key(node.args[1], conv)}]"
    if node.op in ("torch.Tensor.T", "torch.Tensor.mT", "numpy.ndarray.T", "numpy.ndarray.mT"):
        return f"{parts[0]}.{short}"
    if node.op.startswith("numpy.ndarray."):         # a method: x.max(axis=1)
        return f"{parts[0]}.{short}({', '.join(parts[1:])})"
    if node.op.startswith("numpy."):                 # NumPy as the cell spells it: np.
        return f"np.{node.op[len('numpy.'):]}({', '.join(parts)})"
    if node.framework == "jax" and node.op.startswith("jax.lax."):
        # a primitive with its own params (``weak_type``, ``sharding``), which its
        # jax.lax function does not take: bound as the run bound it
        lax = sys.modules.get("jax.lax")
        if lax is None or not hasattr(lax, f"{short}_p"):
            return None
        return f"jax.lax.{short}_p.bind({', '.join(parts)})"
    return f"{node.op}({', '.join(parts)})"


def _key(key, conv) -> str:
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for k in parts:
        if isinstance(k, Ref):
            out.append(str(conv(k)))
        elif isinstance(k, slice):
            out.append(f"{'' if k.start is None else k.start}:{'' if k.stop is None else k.stop}"
                       + ("" if k.step is None else f":{k.step}"))
        else:
            out.append(_source(k))
    return ", ".join(out) + ("," if isinstance(key, tuple) and len(parts) == 1 else "")


def _source(value) -> str:
    """Source text of a constant argument, or ValueError.

    >>> import numpy as np
    >>> _source((np.int64(6), np.float64(0.5), np.bool_(True))), _source(np.dtype("float32"))
    ('(6, 0.5, True)', "np.dtype('float32')")
    """
    if type(value).__module__.split(".")[0] == "numpy":
        if type(value).__name__.endswith("DType") or type(value).__name__ == "dtype":
            return f"np.dtype({str(value)!r})"
        if getattr(value, "shape", None) == () and hasattr(value, "item"):
            return _source(value.item())          # a NumPy scalar: np.prod(x.shape[1:])
    base = next((t for t in (bool, int, float) if isinstance(value, t)), None)
    if base is not None and type(value) is not base:    # JAX's typed literals (TypedInt)
        dtype = getattr(value, "dtype", None)
        text = _source(base(value))
        return f"np.{dtype}({text})" if dtype is not None else text
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, (bool, int, float, str, type(None))) or type(value).__name__ == "_Code":
        return repr(value)
    if isinstance(value, (tuple, list)):
        inner = ", ".join(_source(v) for v in value)
        if isinstance(value, tuple):
            return f"({inner}{',' if len(value) == 1 else ''})"
        return f"[{inner}]"
    if isinstance(value, range):
        return repr(value)
    if isinstance(value, slice):
        return repr(value)
    if type(value).__module__ == "torch" and type(value).__name__ in (
            "dtype", "Size", "device", "layout", "memory_format"):
        text = repr(value)
        return text if text.startswith("torch.") else f"torch.{text}"
    raise ValueError(f"no source for a constant of type {type(value).__name__}")
