"""The torch recorder: every user-level torch call of the run, through ``TorchFunctionMode``.

This module owns the arrow *a torch run → nodes of the record*
(:class:`~einsum_magic.chain.record.Recording`). ``TorchFunctionMode`` sees the calls as the
user's code wrote them (``C[Xb]``, ``emb.view(…)``, ``@``, ``logits.max(1, keepdim=True)``,
``F.cross_entropy``, ``F.linear`` inside ``nn.Linear.forward``), with or without
``requires_grad``. Calls made *inside* an observed call are not seen (the mode is off
while its handler runs): ``F.cross_entropy`` is one node, not its parts.

What becomes what:

* a call with a tensor among its inputs, grad mode on, is a node (``op``:
  ``torch.Tensor.matmul``, ``torch.tanh``, ``torch.nn.functional.cross_entropy``,
  ``torch.Tensor.T``); one with no floating result (``mask == 0``, ``Xtr[ix]``) is never
  differentiated, but kept so that the backward can recompute it and the check replay it;
* a call that returns one of its inputs itself (``.float()`` of a float32 tensor,
  ``.contiguous()``, ``requires_grad_``) changes nothing: the identity is kept;
* an in-place call (a name ending in ``_``, ``__setitem__``, ``__iadd__`` …, ``out=``) is a
  node whose target gets a new version; before it runs, every recorded value sharing the
  target's memory that a node used is copied (:meth:`Recording.before_inplace`);
* results of calls under ``torch.no_grad`` (grad mode off) and of ``detach``,
  ``zeros_like`` and the like are constant leaves; results of
  calls without tensor inputs (``torch.randn``, ``torch.tensor``) are leaves: the run's
  draws, never drawn again;
* ``repr``, ``item``, ``tolist``, ``numpy``, ``backward`` and the like are not recorded;
  ``loss.backward()`` marks ``loss`` as a sink the cell differentiated itself, and
  ``item``, ``tolist``, ``float()`` note where a value left as a Python number (a constant
  to torch's autograd as to the backward: it is no sink).

Once the record has stopped (a long loop, the budget) the mode passes every call straight
through: its first statement. It stays on torch's mode stack until the run ends: torch
pushes a mode back after its handler returns, so a handler cannot leave, and switching
torch functions off instead (``DisableTorchFunction``) would also switch off the user's
own tensor subclasses and modes (``torch.device`` as a context, ``set_default_device``).
A call then costs about a µs more than without the magic (benchmarks/bench_record.py).
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

from ..record import Recording, cell_line, renamed

__all__ = ["TorchRecorder", "op_name", "describe"]

#: Calls never recorded (their results are no arrays of the computation).
IGNORED = frozenset({
    "torch.Tensor.__repr__", "torch.Tensor.__str__", "torch.Tensor.__format__",
    "torch.Tensor.item", "torch.Tensor.tolist", "torch.Tensor.numpy", "torch.Tensor.backward",
    "torch.Tensor.retain_grad", "torch.Tensor.register_hook", "torch.Tensor.__len__",
    "torch.Tensor.__bool__", "torch.Tensor.__hash__", "torch.Tensor.__reduce_ex__",
    "torch.Tensor.__deepcopy__", "torch.Tensor.grad.__set__", "torch.Tensor.__array__",
    "torch.Tensor.__iter__", "torch.Tensor.storage", "torch.Tensor.untyped_storage",
    "torch.Tensor.data_ptr", "torch.Tensor.__dlpack__", "torch.autograd.backward",
    "torch.Tensor.requires_grad.__set__", "torch.Tensor.data.__set__",
    "torch.Tensor.__float__", "torch.Tensor.__complex__", "torch.Tensor.__int__",
})
#: Ignored calls that turn a tensor into Python numbers (noted: :attr:`Recording.escaped`).
ESCAPES = {"torch.Tensor.item": "item()", "torch.Tensor.tolist": "tolist()",
           "torch.Tensor.__float__": "float()", "torch.Tensor.__complex__": "complex()",
           "torch.Tensor.__int__": "int()"}

#: Calls whose results are constants of the backward although a floating tensor went in.
CONSTANT = frozenset({
    "torch.Tensor.detach", "torch.detach", "torch.Tensor.data", "torch.Tensor.grad",
    "torch.zeros_like", "torch.ones_like", "torch.empty_like", "torch.full_like",
    "torch.rand_like", "torch.randn_like", "torch.randint_like", "torch.Tensor.new_zeros",
    "torch.Tensor.new_ones", "torch.Tensor.new_empty", "torch.Tensor.new_full",
    "torch.Tensor.new_tensor", "torch.bernoulli", "torch.Tensor.bernoulli",
    "torch.Tensor.bernoulli_", "torch.normal", "torch.Tensor.normal_",
    "torch.Tensor.uniform_", "torch.Tensor.random_", "torch.Tensor.exponential_",
    "torch.nn.init.kaiming_uniform_", "torch.nn.init.kaiming_normal_",
    "torch.nn.init.uniform_", "torch.nn.init.normal_", "torch.nn.init.xavier_uniform_",
    "torch.nn.init.xavier_normal_", "torch.nn.init.zeros_", "torch.nn.init.ones_",
    "torch.nn.init.constant_", "torch.nn.init.trunc_normal_", "torch.Tensor.zero_",
    "torch.Tensor.fill_",
})

_INPLACE_DUNDERS = frozenset({"__setitem__", "__iadd__", "__isub__", "__imul__",
                              "__itruediv__", "__idiv__", "__ipow__", "__imatmul__",
                              "__iand__", "__ior__", "__ixor__", "__ilshift__", "__irshift__",
                              "__ifloordiv__", "__imod__"})

_NAMES: dict = {}


def op_name(func) -> str:
    """The framework's own name of an observed call.

    >>> op_name(torch.Tensor.matmul), op_name(torch.tanh), op_name(torch.Tensor.T.__get__)
    ('torch.Tensor.matmul', 'torch.tanh', 'torch.Tensor.T')
    >>> import torch.nn.functional as F
    >>> op_name(F.linear), op_name(F.cross_entropy), op_name(torch.einsum)
    ('torch.nn.functional.linear', 'torch.nn.functional.cross_entropy', 'torch.einsum')
    >>> op_name(torch.linalg.eigh)
    'torch.linalg.eigh'
    """
    try:
        return _NAMES[func]
    except (KeyError, TypeError):
        pass
    owner = getattr(func, "__self__", None)
    if type(func).__name__ == "method-wrapper" and owner is not None:
        name = f"torch.Tensor.{getattr(owner, '__name__', '?')}"
        kind = getattr(func, "__name__", "__get__")
        return name if kind == "__get__" else f"{name}.{kind}"
    qual = getattr(func, "__qualname__", "") or ""
    name = getattr(func, "__name__", qual) or qual
    module = getattr(func, "__module__", None) or ""
    if qual.startswith(("TensorBase.", "Tensor.", "_TensorBase.")):
        out = f"torch.Tensor.{name}"
    elif qual.startswith("_VariableFunctionsClass.") or module in ("torch", "torch.functional"):
        out = f"torch.{name}"
    elif module in ("torch._C._nn", "torch.nn.functional"):
        out = f"torch.nn.functional.{name}"
    elif module.startswith("torch._C._"):             # torch.linalg.eigh, torch.fft.fft, …
        sub = module[len("torch._C._"):]
        out = f"torch.{sub}.{name[len(sub) + 1:] if name.startswith(sub + '_') else name}"
    elif module.startswith("torch.nn.init"):
        out = f"torch.nn.init.{name}"
    else:
        out = f"{module}.{name}" if module else name
    try:
        _NAMES[func] = out
    except TypeError:
        pass
    return out


def describe(t):
    """(shape, dtype, floating, nbytes, memory key) of a tensor."""
    try:
        memory = t.untyped_storage().data_ptr()
    except Exception:  # noqa: BLE001 - tensors without storage (meta, functional)
        memory = id(t)
    dtype = t.dtype
    known = _DTYPES.get(dtype)
    if known is None:
        known = _DTYPES[dtype] = (str(dtype).replace("torch.", ""),
                                  dtype.is_floating_point or dtype.is_complex)
    return tuple(t.shape), known[0], known[1], t.element_size() * t.nelement(), memory


_DTYPES: dict = {}


def _tensors(obj, out: list) -> list:
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif type(obj) in (tuple, list) or isinstance(obj, tuple):
        for o in obj:
            if isinstance(o, torch.Tensor):
                out.append(o)
            elif isinstance(o, (tuple, list, dict)):
                _tensors(o, out)
    elif isinstance(obj, dict):
        for o in obj.values():
            _tensors(o, out)
    return out


def _is_inplace(op: str, kwargs: dict) -> bool:
    if kwargs and (kwargs.get("out") is not None or kwargs.get("inplace") is True):
        return True
    return _inplace_name(op)


_INPLACE_NAMES: dict = {}


def _inplace_name(op: str) -> bool:
    """Whether ``op``'s name says it changes its input in place (``add_``, ``__iadd__``)."""
    known = _INPLACE_NAMES.get(op)
    if known is None:
        short = op.rsplit(".", 1)[-1]
        known = _INPLACE_NAMES[op] = (short in _INPLACE_DUNDERS or (
            short.endswith("_") and not short.endswith("__")))
    return known


def _flat_tensors(args) -> list:
    """:func:`_tensors` of a call's positional arguments, with a fast path for the common
    flat case (tensors and numbers)."""
    out = []
    for o in args:
        t = type(o)
        if t is _Tensor or isinstance(o, _Tensor):
            out.append(o)
        elif t is tuple or t is list or t is dict or isinstance(o, tuple):
            _tensors(o, out)
    return out


_Tensor = torch.Tensor
#: True while torch.compile (Dynamo) traces: then the mode passes every call through, so that
#: the graph is the user's code alone (the record sees the compiled function's calls when
#: they run eagerly, never while traced).
_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)


class TorchRecorder(TorchFunctionMode):
    """Records every observed torch call into ``rec`` (a context manager; see the module doc)."""

    def __init__(self, rec: Recording):
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func, types, args=(), kwargs=None):
        __tracebackhide__ = True            # noqa: F841 (IPython hides this frame)
        if self.rec.stopped or _compiling():    # stopped, or traced: a pass-through
            return func(*args, **kwargs) if kwargs else func(*args)
        kwargs = kwargs or {}
        rec = self.rec
        op = op_name(func)
        if op in IGNORED:
            if op == "torch.Tensor.backward" and args and isinstance(args[0], torch.Tensor):
                v = rec.current(args[0])
                if v is not None:
                    rec.backwarded.append(v)
            elif op == "torch.Tensor.grad.__set__" and args:
                rec.grad_reset.add(id(args[0]))
            elif op in ESCAPES and args and isinstance(args[0], torch.Tensor):
                line, where = cell_line(rec.namespace, 1)
                rec.escape(args[0], ESCAPES[op], line, where)
            return func(*args, **kwargs)
        inplace = _is_inplace(op, kwargs)
        target = None
        if inplace:
            found = _tensors(kwargs.get("out"), []) or _tensors(args, []) or _tensors(kwargs, [])
            target = found[0] if found else None
            if target is not None:
                try:
                    rec.before_inplace(rec.ids_of_memory(describe(target)[4]),
                                       lambda t: t.detach().clone())
                except Exception as e:  # noqa: BLE001 - never fail the user's cell
                    rec.stop(f"the record failed before {op}: {type(e).__name__}: {e}")
        out = func(*args, **kwargs)
        try:
            self._record(func, op, args, kwargs, out, inplace, target)
        except Exception as e:  # noqa: BLE001 - never fail the user's cell
            rec.stop(f"the record failed at {op}: {type(e).__name__}: {e}")
        return out

    def _record(self, func, op, args, kwargs, out, inplace, target) -> None:
        rec = self.rec
        if rec.stopped:
            return
        if type(out) is _Tensor or isinstance(out, _Tensor):
            outs = [out]
        else:
            outs = _tensors(out, [])
        if inplace and target is not None and not outs:
            outs = [target]                      # __setitem__ returns None
        if not outs:
            return
        ins = _flat_tensors(args)
        if kwargs:
            _tensors(kwargs, ins)
        if not inplace:
            for o in outs:
                for i in ins:
                    if o is i:
                        return                   # returns its input: identity kept
        grad = torch.is_grad_enabled()
        if not ins:                              # torch.randn, torch.tensor: the run's
            rec.leaf(outs, "torch", describe)
            return
        if not grad or op in CONSTANT:
            why = op if op in CONSTANT else ("torch.no_grad" if not grad else "")
            # a tensor changed in place under no_grad (an optimizer step) stays a leaf
            keep = inplace and not grad and op not in CONSTANT
            rec.leaf(outs, "torch", describe, constant=not keep, why=why)
            return
        line, where = cell_line(rec.namespace, 1)
        ids: list[int] = []
        conv_args = _refs(rec, args, ids)
        conv_kwargs = {k: _refs(rec, v, ids) for k, v in kwargs.items()} if kwargs else {}
        rec.record("torch", op, func, conv_args, conv_kwargs, outs, describe, inplace=inplace,
                   line=line, where=where, refs=tuple(ids))


def _refs(rec: Recording, obj, ids: list):
    if type(obj) is _Tensor or isinstance(obj, _Tensor):
        ref = rec.ref_of(obj, "torch", describe)
        ids.append(ref.id)
        return ref
    if type(obj) is tuple:
        return tuple([_refs(rec, o, ids) for o in obj])
    if type(obj) is list:
        return [_refs(rec, o, ids) for o in obj]
    return obj


def decompose(rec: Recording, node):
    """``node`` as torch's own decomposition into prims, or None where there is none.

    Traced once with fake tensors (``make_fx`` with ``torch._decomp.decomposition_table``:
    no side effect, no random draw), then evaluated on copies of the recorded inputs so that
    every part's value is known; the parts' last results are the node's own results (their
    ids), and a decomposition that does not reproduce them is refused. Each part is a
    :class:`~einsum_magic.chain.record.Node` with ``op`` ``torch.ops.prims.exp.default``
    and the like, at the node's index, line and function. Called after the run, only for a
    node without a rule on a path to a sink.
    """
    import operator

    from torch._decomp import decomposition_table
    from torch.fx.experimental.proxy_tensor import make_fx

    from ..record import Node, Ref, map_refs

    ids = list(dict.fromkeys(node.refs))
    values = [rec.values[v] for v in ids]

    def call(*ts):
        env = dict(zip(ids, ts))
        args = map_refs(node.args, lambda r: env[r.id])
        kwargs = map_refs(dict(node.kwargs), lambda r: env[r.id])
        return node.func(*args, **kwargs)

    with torch.random.fork_rng(devices=[]):          # a part that draws draws from a copy
        try:
            return _decomposed(rec, node, ids, values, call, make_fx, decomposition_table,
                               operator, Node, Ref, map_refs)
        except Exception:  # noqa: BLE001 - no decomposition: the node stays opaque
            return None


def _decomposed(rec, node, ids, values, call, make_fx, decomposition_table, operator, Node,
                Ref, map_refs):
    graph = make_fx(call, decomposition_table=decomposition_table,
                    tracing_mode="fake")(*[v.detach() for v in values])
    known: dict = {}            # fx node → Ref, or a tuple of Refs (multi-result)
    real: dict = {}             # fx node → the value, evaluated
    placeholders = iter(zip(ids, values))
    parts = []
    outputs = []
    for fx in graph.graph.nodes:
        if fx.op == "placeholder":
            v, value = next(placeholders)
            known[fx], real[fx] = Ref(v), value.detach().clone()
        elif fx.op == "call_function" and fx.target is operator.getitem:
            base, k = fx.args
            known[fx], real[fx] = known[base][k], real[base][k]
        elif fx.op == "call_function":
            args = _fx_map(fx.args, known)
            kwargs = _fx_map(dict(fx.kwargs), known)
            with torch.no_grad():
                result = fx.target(*_fx_map(fx.args, real), **_fx_map(dict(fx.kwargs), real))
            flat = _tensors(result, [])
            if not flat:
                return None
            new = [Ref(rec._new(t, "torch", node.index, describe)) for t in flat]
            real[fx] = result
            known[fx] = new[0] if isinstance(result, torch.Tensor) else tuple(new)
            refs = tuple(r.id for r in _walk_refs((args, kwargs)))
            parts.append(Node(node.index, "torch", f"torch.ops.{fx.target}", fx.target,
                              tuple(args), tuple(kwargs.items()), tuple(r.id for r in new),
                              node.line, node.where, False, refs))
        elif fx.op == "output":
            outputs = _tensors_fx(fx.args[0])
    if len(outputs) != len(node.outs):
        return None
    rename = {}
    for fx, v in zip(outputs, node.outs):
        got, run = real[fx], rec.values[v]
        if tuple(got.shape) != tuple(run.shape) or not torch.allclose(
                got.double(), run.detach().double(), rtol=1e-5, atol=1e-8, equal_nan=True):
            return None
        rename[known[fx].id] = v
    return renamed(parts, rename)


def _fx_map(obj, table):
    import torch.fx

    if isinstance(obj, torch.fx.Node):
        return table[obj]
    if isinstance(obj, tuple):
        return tuple(_fx_map(o, table) for o in obj)
    if isinstance(obj, list):
        return [_fx_map(o, table) for o in obj]
    if isinstance(obj, dict):
        return {k: _fx_map(v, table) for k, v in obj.items()}
    return obj


def _walk_refs(obj):
    from ..record import Ref

    if isinstance(obj, Ref):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _walk_refs(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _walk_refs(o)


def _tensors_fx(obj) -> list:
    import torch.fx

    if isinstance(obj, torch.fx.Node):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [n for o in obj for n in _tensors_fx(o)]
    return []
