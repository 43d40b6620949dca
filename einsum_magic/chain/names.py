"""Names the user knows for the values of a record.

This module owns the arrow *a :class:`~einsum_magic.chain.record.Recording` and the
namespace after the run → a name for every value*. By identity, never by reading values:

* a value whose array the namespace holds *now* (and that no in-place change has replaced
  since) is named as the namespace names it: ``W1``; a parameter of a module in the
  namespace by its path: ``model[0].weight``, ``wte.weight``;
* a name the cell binds more than once gets versions in the order of the run: ``att``,
  ``att_1``, ``att_2`` (the first assignment keeps the plain name); an array changed in
  place (``x += 1``, ``W[:] = 0``) gets one version per change the same way; a local of
  a function the cell defines gets its local name, one version per call (``f.h`` where
  the namespace holds another ``h``). The cell's source is used here only for this:
  which line assigns which name;
* any other value is a temporary named for what made it: ``matmul``, ``getitem_1``.

:attr:`Names.ident` is the name as an identifier (``model_0_weight``): the backward code
calls the gradient of value ``v`` ``dL_d<ident>``. :attr:`Names.bound` is the expression
that holds the value in the namespace now (``None`` for a temporary or an older version):
the shown code reads only those, or recomputes the rest in a short preamble.

:data:`READERS` says, per framework, how the NumPy backward reads a value: the source text
that turns the user's array into NumPy (``{}.detach().numpy()`` for torch) and the function
that does it for :meth:`CellBackward.run <einsum_magic.chain.result.CellBackward.run>`.
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from .record import Recording

__all__ = ["Names", "names_for", "READERS", "identifier"]


def _torch_numpy(t):
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if str(t.dtype) in ("torch.bfloat16",):
        t = t.float()
    return t.numpy()


#: framework → (source template reading a value as NumPy, function doing the same).
READERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "torch": ("{}.detach().numpy()", _torch_numpy),
}

_SKIP = frozenset({"In", "Out", "exit", "quit", "get_ipython"})


def identifier(path: str) -> str:
    """A path as an identifier.

    >>> identifier("model[0].weight"), identifier("W1"), identifier("h.attn.c_attn.weight")
    ('model_0_weight', 'W1', 'h_attn_c_attn_weight')
    """
    out = re.sub(r"[^0-9A-Za-z_]+", "_", path).strip("_") or "value"
    if out[0].isdigit() or keyword.iskeyword(out):
        out = "v_" + out
    return out


def _path(owner: str, dotted: str) -> str:
    """``model`` + ``0.weight`` → ``model[0].weight``."""
    out = owner
    for part in dotted.split("."):
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


@dataclass(frozen=True)
class Names:
    """Value id → name (``name``), as identifier (``ident``), and what holds it now (``bound``)."""

    name: dict = field(default_factory=dict)
    ident: dict = field(default_factory=dict)
    bound: dict = field(default_factory=dict)
    user: frozenset = frozenset()          # ids the user named (not temporaries)


def _assignments(source: str | None) -> dict[int, str]:
    """Line → the one name a simple assignment there binds (in the cell's functions too).

    >>> _assignments("def f(x):\\n    h = x @ W\\n    return h\\ny = f(x)")
    {2: 'h', 4: 'y'}
    """
    if not source:
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(
                node.targets[0], ast.Name):
            out[node.lineno] = node.targets[0].id
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(
                node.target, ast.Name):
            out[node.lineno] = node.target.id
    return dict(sorted(out.items()))


def names_for(rec: Recording, namespace: dict, source: str | None = None) -> Names:
    """Name every value of ``rec`` (see the module doc)."""
    holders: dict[int, str] = {}          # id(obj) → namespace path
    for key, value in list(namespace.items()):
        if key.startswith("_") or key in _SKIP:
            continue
        if rec.current(value) is not None and id(value) not in holders:
            holders[id(value)] = key
    for key, value in list(namespace.items()):
        if key.startswith("_") or key in _SKIP:
            continue
        params = getattr(value, "named_parameters", None)
        if callable(params) and not isinstance(value, type):
            try:
                items = list(params()) + list(value.named_buffers())
            except Exception:  # noqa: BLE001 - not a module after all
                continue
            for dotted, t in items:
                if rec.current(t) is not None and id(t) not in holders:
                    holders[id(t)] = _path(key, dotted)
    chains: dict[str, list[int]] = {}      # user name → its versions' ids
    bound: dict[int, str] = {}
    objects = {id(o): o for o in rec.values.values() if o is not None}
    for oid, path in holders.items():
        obj = objects.get(oid)
        if obj is None:
            continue
        versions = rec.versions(obj)
        if versions:
            bound[versions[-1]] = path
            chains.setdefault(path, []).extend(versions)
    lines = _assignments(source)
    # the value a line assigns: the last floating result of each run of nodes on that line
    # (a line inside a function runs once per call: each call's value is one version)
    assigned: list[tuple[str, str, int]] = []
    previous = None
    for node in rec.nodes:
        floating = [o for o in node.outs if rec.info[o].floating]
        if node.line not in lines:
            previous = None
            continue
        if not floating:                    # a mask on the way: the same run goes on
            continue
        key = (node.line, node.where)
        item = (lines[node.line], node.where, floating[0])
        if key == previous:
            assigned[-1] = item
        else:
            assigned.append(item)
        previous = key
    for name, where, v in assigned:
        if where and name in namespace and rec.current(namespace[name]) is None:
            name = f"{where}.{name}"        # a local named like one of the user's values
        chains.setdefault(name, []).append(v)
    name: dict[int, str] = {}
    taken = {k for k in namespace if not k.startswith("_")} | set(dir(builtins))
    for path, ids in chains.items():
        for k, v in enumerate(sorted(set(ids))):
            if v not in name:
                name[v] = path if k == 0 else f"{path}_{k}"
    user = frozenset(name)
    taken |= {identifier(n) for n in name.values()}
    counts: dict[str, int] = {}
    for v, info in rec.info.items():
        if v in name:
            continue
        if info.producer is not None:
            base = _temporary(rec.nodes[info.producer].op)
        else:
            base = "const" if info.constant else "leaf"
        k = counts.get(base, 0)
        while True:
            candidate = base if k == 0 else f"{base}_{k}"
            k += 1
            if candidate not in taken:
                break
        counts[base] = k
        taken.add(candidate)
        name[v] = candidate
    ident = {v: identifier(n) for v, n in name.items()}
    return Names(name, ident, bound, user)


_TEMP = {"T": "transpose", "mT": "transpose", "t": "transpose", "__getitem__": "getitem",
         "__setitem__": "setitem", "__rsub__": "rsub", "__rdiv__": "rdiv",
         "__rpow__": "rpow", "__radd__": "add", "__rmul__": "mul", "__matmul__": "matmul"}


def _temporary(op: str) -> str:
    short = op.rsplit(".", 1)[-1]
    short = _TEMP.get(short, short.strip("_"))
    return identifier(short.rstrip("_") or "value")
