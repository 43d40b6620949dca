"""Names the user knows for the values of a record.

This module owns the arrow *a :class:`~einsum_magic.chain.record.Recording` and the
namespace after the run → a name for every value*. By identity, never by reading values:

* a value whose array the namespace holds *now* (and that no in-place change has replaced
  since) is named as the namespace names it: ``W1``; a parameter of a module in the
  namespace by its path: ``model[0].weight``, ``wte.weight``; an array held by a list,
  tuple or dict of the namespace, or as an attribute of a plain object there, by its path
  too: ``layers[0].weight`` (a few levels deep, never calling a property);
* a name the cell binds more than once gets versions in the order of the run: ``att``,
  ``att_1``, ``att_2`` (the first assignment keeps the plain name); a line of the cell's
  top level that calls a function defined elsewhere (``out = norm(x)``) binds the last
  value that call made, however many functions it went through; an array changed in
  place (``x += 1``, ``W[:] = 0``) gets one version per change, numbered the same way
  around the one version that keeps the plain name: for a name the cell does not bind
  (an input, ``W[:] = 0``, ``V = X; V *= 2``) the version the cell received; for a name
  it binds, the last version of its object that a step used (``h = np.zeros(…)`` then
  ``h[:, t] = …``: ``h`` is the filled array the user holds, ``h_1``, ``h_2``, … the
  earlier ones; ``H *= 0`` after the loss read ``H`` leaves ``H`` the values it read).
  :attr:`Names.plain` maps the object's current version to that one (``grad_of``).
  A local of a function the cell defines gets its local name, one version per call
  (``f.h`` where the namespace holds another ``h``). The cell's source is used here only
  for this: which line assigns which name, which names the cell binds;
* any other value is a temporary named for what made it: ``matmul``, ``getitem_1``.

:attr:`Names.ident` is the name as an identifier (``model_0_weight``): the backward code
calls the gradient of value ``v`` ``dL_d<ident>``. :attr:`Names.bound` is the expression
that holds the value in the namespace now (``None`` for a temporary or an older version):
the shown code reads only those, or recomputes the rest in a short preamble. It is only
given where the namespace's object *is* that version now: not where the record holds a
copy taken before an in-place change through another view of its memory (``W.data.zero_()``).

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

from ..cell.source import of
from ..cell.source import tree as parsed
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
    #: id of a held object's current version → the version its plain name is (see
    #: :func:`names_for`): what ``grad_of(obj)`` differentiates
    plain: dict = field(default_factory=dict)


def _assignments(source: str | None) -> dict[int, str]:
    """Line → the one name a simple assignment there binds (in the cell's functions too).

    >>> _assignments("def f(x):\\n    h = x @ W\\n    return h\\ny = f(x)")
    {2: 'h', 4: 'y'}
    """
    if not source:
        return {}
    try:
        tree = parsed(source)
    except SyntaxError:
        return {}
    out = {}
    for node in of(tree, ast.Assign, ast.AugAssign, ast.AnnAssign):
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
    objects: dict[int, Any] = {}          # id(obj) → obj (the record may hold a copy of it)
    # an object bound to several names takes the one the cell's code uses (``X``, not an
    # ``A = X`` made elsewhere); among those, or none, the namespace's order decides
    used = set(re.findall(r"[A-Za-z_]\w*", source or ""))
    items = sorted(namespace.items(), key=lambda item: item[0] not in used)
    for key, value in items:
        if key.startswith("_") or key in _SKIP:
            continue
        if rec.current(value) is not None and id(value) not in holders:
            holders[id(value)] = key
            objects[id(value)] = value
    for key, value in items:
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
                    objects[id(t)] = t
    held: dict[int, tuple] = {}            # id(obj) → (rank, path): the best path to it
    for k, (path, t) in enumerate(_held(namespace, rec)):
        rank = (path.endswith("]"), path.count(".") + path.count("["), k)
        if id(t) not in holders and (id(t) not in held or rank < held[id(t)][0]):
            held[id(t)] = (rank, path)         # ``layers[4].gamma`` before ``parameters[6]``
            objects[id(t)] = t
    holders.update({i: path for i, (_, path) in held.items()})
    chains: dict[str, list[int]] = {}      # user name → its versions' ids
    bound: dict[int, str] = {}
    held_versions: dict[str, list] = {}    # path → the versions of the object it holds
    for oid, path in holders.items():
        obj = objects.get(oid)
        if obj is None:
            continue
        versions = rec.versions(obj)
        if versions:
            if versions[-1] not in rec.snapshots:     # else the object changed since: the
                bound[versions[-1]] = path            # record holds the value, not the name
            chains.setdefault(path, []).extend(versions)
            held_versions[path] = versions
    lines = _assignments(source)
    in_defs = _lines_in_defs(source)
    # the value a line assigns: the last floating result of each run of nodes on that line
    # (a line inside a function of the cell runs once per call: each call's value is one
    # version; a top-level line runs once, whatever functions defined elsewhere it calls)
    assigned: list[tuple[str, str, int]] = []
    previous = None
    for node in rec.nodes:
        floating = [o for o in node.outs if rec.info[o].floating]
        if node.line not in lines:
            previous = None
            continue
        if not floating:                    # a mask on the way: the same run goes on
            continue
        where = node.where if node.line in in_defs else ""
        key = (node.line, where)
        item = (lines[node.line], where, floating[0])
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
    plain: dict[int, int] = {}
    taken = {k for k in namespace if not k.startswith("_")} | set(dir(builtins))
    binds = _top_level_binds(source)
    used = {r for n in rec.nodes for k, r in enumerate(n.refs) if not (n.inplace and k == 0)}
    for path, ids in chains.items():
        ids = sorted(set(ids))
        anchor = _plain_version(rec, ids, _base(path) in binds, used)
        k = 0
        for v in [anchor] + [v for v in ids if v != anchor]:
            if v not in name:
                name[v] = path if v == anchor else f"{path}_{k}"
            k += 1
        own = held_versions.get(path)
        if own:                  # grad_of(obj): a version of that very object, never of an
            plain[own[-1]] = (anchor if anchor in own      # object bound to the name before
                              else _plain_version(rec, own, _base(path) in binds, used))
    user = frozenset(name)
    taken |= {identifier(n) for n in name.values()}
    counts: dict[str, int] = {}
    for v, info in rec.info.items():
        if v in name:
            continue
        if info.producer is not None:
            base = _temporary(_word(rec.nodes[info.producer]))
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
    return Names(name, ident, bound, user, plain)


def _base(path: str) -> str:
    """The name a path starts from: ``model[0].weight`` → ``model``."""
    return re.match(r"[A-Za-z_]\w*", path).group(0) if re.match(r"[A-Za-z_]", path) else path


def _top_level_binds(source: str | None) -> set[str]:
    """Names the cell's top level binds (``=``, ``for``, ``with … as``, imports, …), outside
    its functions and classes; an augmented assignment (``X += 1``) changes an array in
    place and does not count.

    >>> sorted(_top_level_binds("h, c = f(x)\\nX += 1\\nfor t in r: W[t] = 0\\ndef g(): q = 1"))
    ['c', 'h', 't']
    """
    try:
        tree = parsed(source or "")
    except SyntaxError:
        return set()
    out: set[str] = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.AugAssign):
            todo.append(node.value)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        todo.extend(ast.iter_child_nodes(node))
    return out


def _plain_version(rec: Recording, ids: list[int], bound_by_cell: bool, used: set) -> int:
    """Which of a name's versions (``ids``, in the order of the run) keeps the plain name.

    A name the cell does not bind (an input, changed in place or not: ``W[:] = 0``, or
    through an alias ``V = X; V *= 2``) names the version the cell received: the first.
    A name the cell binds names a version of the object of its first binding, after the
    changes made to it in place: the last one a step of the cell used (``used``: read by a
    call other than a change of that array in place), else the last one. So ``h`` filled by
    ``h[:, t] = …`` and then read is the filled array the user holds; ``H = np.tanh(…)``
    zeroed after the loss read it (``H *= 0``) is the values the loss read; a ``dW`` built
    by ``dW /= n; dW += reg * W`` and read by nothing is the array the user holds. An object
    bound later (``att = …`` again) gets a numbered version, as the other versions do.
    """
    if not bound_by_cell:
        return ids[0]
    group = [ids[0]]
    for v in ids[1:]:
        p = rec.info[v].producer
        node = rec.nodes[p] if p is not None else None
        if node is not None and node.inplace and node.refs and node.refs[0] in group:
            group.append(v)
    read = [v for v in group if v in used]
    return read[-1] if read else group[-1]


def _lines_in_defs(source: str | None) -> set[int]:
    """Lines of the bodies of the functions (and lambdas) the cell itself defines.

    >>> sorted(_lines_in_defs("def f(x):\\n    h = x @ W\\n    return h\\ny = f(x)"))
    [2, 3]
    """
    try:
        tree = parsed(source or "")
    except SyntaxError:
        return set()
    out: set[int] = set()
    for node in of(tree, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda):
        for inner in (node.body if isinstance(node.body, list) else [node.body]):
            out.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return out


#: How deep :func:`_held` looks into the namespace's containers and plain objects, and how
#: many objects it visits at most (a namespace with a large list of arrays stays cheap).
HELD_DEPTH, HELD_VISITS = 3, 5_000


def _held(namespace: dict, rec: Recording):
    """``(path, array)`` for every recorded array held inside the namespace's lists, tuples,
    dicts and plain objects' attributes (``layers[0].weight``), breadth first; an array
    held in two places comes once per path.

    Only ``vars()`` of an object is read (no property runs); modules, classes, functions
    and arrays themselves are not looked into; names starting with ``_`` are skipped.

    >>> class Layer: pass
    >>> rec = Recording(); layer = Layer(); w = [1.0]; layer.weight = w
    >>> _ = rec.refs_of([w])
    >>> list(_held({"layers": [layer]}, rec))
    [('layers[0].weight', [1.0])]
    """
    import types

    level = [(k, v) for k, v in namespace.items() if not k.startswith("_") and k not in _SKIP]
    seen: set[int] = {id(v) for _, v in level}
    visits = 0
    for _ in range(HELD_DEPTH):
        nxt = []
        for path, obj in level:
            visits += 1
            if visits > HELD_VISITS:
                return
            if isinstance(obj, (type, types.ModuleType, types.FunctionType, types.MethodType,
                                str, bytes, int, float, complex, bool, type(None))):
                continue
            if isinstance(obj, (list, tuple)):
                items = [(f"{path}[{i}]", o) for i, o in enumerate(obj[:HELD_VISITS])]
            elif isinstance(obj, dict):
                items = [(f"{path}[{k!r}]", o) for k, o in list(obj.items())[:HELD_VISITS]
                         if isinstance(k, (str, int))]
            elif rec.current(obj) is not None or hasattr(obj, "__array__"):
                continue                                   # an array: not looked into
            else:
                try:                               # a user's object may do anything
                    attrs = vars(obj)
                    items = [(f"{path}.{k}", o) for k, o in list(attrs.items())
                             if isinstance(k, str) and not k.startswith("_")]
                except Exception:  # noqa: BLE001 - no __dict__, or a strange one: skipped
                    continue
            for p, o in items:
                if rec.current(o) is not None:
                    yield p, o
                elif id(o) not in seen:
                    seen.add(id(o))
                    nxt.append((p, o))
        level = nxt


_TEMP = {"T": "transpose", "mT": "transpose", "t": "transpose", "__getitem__": "getitem",
         "__setitem__": "setitem", "__rsub__": "rsub", "__rdiv__": "rdiv",
         "__rpow__": "rpow", "__radd__": "add", "__rmul__": "mul", "__matmul__": "matmul"}


def _word(node) -> str:
    """What made a value, for its temporary's name: the op, or for a JAX call the function
    it calls (``matmul`` for ``jax.lax.jit``, ``relu`` for ``jax.lax.custom_jvp_call``)."""
    if node.framework == "jax" and node.op in ("jax.lax.jit", "jax.lax.custom_jvp_call"):
        kw = node.kw()
        call = kw.get("call_jaxpr")
        info = getattr(getattr(call, "jaxpr", None), "debug_info", None)
        name = kw.get("name") if isinstance(kw.get("name"), str) else getattr(
            info, "func_name", "")
        if name and name.strip("<>_"):
            return name.strip("<>")
    return node.op


def _temporary(op: str) -> str:
    short = op.rsplit(".", 1)[-1]
    short = _TEMP.get(short, short.strip("_"))
    return identifier(short.rstrip("_") or "value")
