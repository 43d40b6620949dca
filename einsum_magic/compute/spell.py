"""NumPy backward lines in JAX's and PyTorch's spelling, by their syntax tree (never by regex).

This module owns one arrow of the export: *the NumPy lines a backward program is written in →
the same program for another target*. The lines (:attr:`CellBackward.code
<einsum_magic.chain.result.CellBackward>`, the rules' output) are parsed with :mod:`ast`
and every construct is looked up in that target's table; a construct the table does not
have is refused with :class:`~einsum_magic.errors.EinsumError` naming it, never passed on
unchanged. ``"numpy"`` gives the lines back as they are.

* **JAX** (``jax.numpy`` namesakes, a function :func:`jax.jit` compiles): ``np.f`` →
  ``jnp.f``; array methods are JAX's own (``x.sum(axis=1, keepdims=True)``); what NumPy
  does in place is written functionally: ``t[k] = v`` → ``t = t.at[k].set(v)``,
  ``t[k] -= v`` → ``t = t.at[k].add(-v)``, ``np.add.at(t, k, v)`` → ``t = t.at[k].add(v)``,
  ``np.put_along_axis`` → ``jnp.put_along_axis(..., inplace=False)``.
* **PyTorch**: the few names that differ (``axis``/``keepdims`` → ``dim``/``keepdim``,
  ``max`` → ``amax``, ``astype`` → ``to``, ``copy`` → ``clone``, ``var`` with NumPy's
  ``ddof=0`` as ``correction=0``, ``expand_dims`` → ``unsqueeze``, ``maximum(x, 0)`` →
  ``clamp(x, min=0)``, ``np.put_along_axis`` → ``scatter_``); ``np.add.at`` becomes the
  helper :data:`ADD_AT` (a flat ``index_add_``: PyTorch's ``index_put_`` takes no slices);
  a NumPy function of plain numbers (``np.sqrt(K.shape[-1])``) is :mod:`math`'s.
* Both: ``np.vectorize(math.erf, ...)(x)`` (how the rules write erf) is the target's
  ``erf``; ``np.s_[k]`` is ``k``.

>>> code = "np.add.at(t, np.s_[np.arange(3), y], g)\\nz = t.sum(axis=1, keepdims=True)"
>>> print("\\n".join(spell(code, "jax").lines))
t = t.at[jnp.arange(3), y].add(g)
z = t.sum(axis=1, keepdims=True)
>>> code = "m = x.max(axis=None, keepdims=True)\\nh = np.maximum(a, 0)"
>>> print("\\n".join(spell(code, "torch").lines))
m = x.amax(dim=(), keepdim=True)
h = torch.clamp(a, min=0)
>>> spell("y = x.sort()", "torch")
Traceback (most recent call last):
...
einsum_magic.errors.EinsumError: export('torch') cannot spell the method .sort() in: y = x.sort()
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from ..errors import EinsumError
from .export import Function

__all__ = ["spell", "Spelled", "imports_for", "ADD_AT", "MODULE"]

#: How each target names its array module in the exported source.
MODULE = {"numpy": "np", "jax": "jnp", "torch": "torch"}

#: PyTorch's ``np.add.at``: every position of ``t[key]`` gets its ``v``, repeats adding up.
ADD_AT = Function("add_at", ("t", "key", "v"), (
    "at = torch.arange(t.numel(), device=t.device).reshape(t.shape)[key]",
    "t.view(-1).index_add_(0, at.reshape(-1), torch.broadcast_to(v, at.shape).reshape(-1)"
    ".to(t.dtype))"), doc="np.add.at(t, key, v) in PyTorch: adds v at t[key], repeated "
                          "indices adding up.")


@dataclass(frozen=True)
class Spelled:
    """Lines in one target's spelling, the imports they need, and helper functions they call."""

    lines: tuple[str, ...]
    imports: tuple[str, ...]
    helpers: tuple[Function, ...] = ()


def spell(code: str, target: str, modules=("np", "math")) -> Spelled:
    """``code`` (NumPy lines) for ``target``; ``modules``: names the lines use as modules."""
    if target == "numpy":
        lines = tuple(code.splitlines())
    else:
        writer = _Jax(target, modules) if target == "jax" else _Torch(target, modules)
        lines = tuple(ast.unparse(ast.fix_missing_locations(new))
                      for stmt in ast.parse(code).body for new in writer.statement(stmt))
    return Spelled(lines, imports_for(lines, target),
                   (ADD_AT,) * (target == "torch" and _calls(lines, "add_at")))


def imports_for(lines, target: str) -> tuple[str, ...]:
    """The imports ``lines`` (in ``target``'s spelling) need.

    >>> imports_for(["y = math.sqrt(2) * jax.scipy.special.erf(x)"], "jax")
    ('import math', 'import jax', 'import jax.numpy as jnp', 'import jax.scipy.special')
    """
    out = ("import math",) * _calls(lines, "math")
    if target == "numpy":
        return out + ("import numpy as np",)
    if target == "torch":
        return out + ("import torch",)
    return out + ("import jax", "import jax.numpy as jnp") + (
        ("import jax.scipy.special",) * ("jax.scipy.special." in "\n".join(lines)))


def _calls(lines, name: str) -> bool:
    """Whether ``lines`` name ``name`` (a module or a function)."""
    return any(isinstance(n, ast.Name) and n.id == name
               for ln in lines for n in ast.walk(ast.parse(ln)))


# -- the syntax tree ----------------------------------------------------------------------------

def _expr(text: str) -> ast.expr:
    return ast.parse(text, mode="eval").body


def _call(func: str | ast.expr, args, keywords=()) -> ast.Call:
    return ast.Call(func=_expr(func) if isinstance(func, str) else func, args=list(args),
                    keywords=[ast.keyword(arg=k, value=v) for k, v in keywords])


def _dotted(node) -> str | None:
    """``np.add.at`` for that attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def _number(node) -> bool:
    """Whether ``node`` holds no array: constants, ``x.shape[k]``, ``x.ndim``, ``len(...)``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float))
    if isinstance(node, ast.Subscript):
        return isinstance(node.value, ast.Attribute) and node.value.attr == "shape"
    if isinstance(node, ast.Attribute):
        return node.attr in ("ndim", "size")
    if isinstance(node, ast.UnaryOp):
        return _number(node.operand)
    if isinstance(node, ast.BinOp):
        return _number(node.left) and _number(node.right)
    return isinstance(node, ast.Call) and _dotted(node.func) == "len"


class _Writer:
    """What both targets share: the walk, erf, ``np.s_``, and refusing the unknown."""

    def __init__(self, target: str, modules):
        self.target, self.modules = target, set(modules)
        self.used_add_at = False
        self.line = ""

    def refuse(self, what: str):
        raise EinsumError(f"export({self.target!r}) cannot spell {what} in: {self.line}")

    def statement(self, stmt: ast.stmt) -> list[ast.stmt]:
        self.line = ast.unparse(stmt)
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            name = _dotted(stmt.value.func)
            args = [self.visit(a) for a in stmt.value.args]
            kw = {k.arg: self.visit(k.value) for k in stmt.value.keywords}
            if name == "np.add.at" and len(args) == 3 and not kw:
                return [self.add_at(args[0], args[1], args[2])]
            if name == "np.put_along_axis" and len(args) == 3 and set(kw) == {"axis"}:
                return [self.put_along_axis(*args, kw["axis"])]
            self.refuse(f"the call {name or 'of a call'}(...) as a statement")
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            value = self.visit(stmt.value)
            target = stmt.targets[0]
            if isinstance(target, ast.Subscript):
                return [self.setitem(self.visit(target.value), self.visit(target.slice), value,
                                     None)]
            if isinstance(target, (ast.Name, ast.Tuple)):
                return [ast.Assign(targets=[target], value=value)]
        if isinstance(stmt, ast.AugAssign):
            value = self.visit(stmt.value)
            if isinstance(stmt.target, ast.Subscript):
                t = stmt.target
                return [self.setitem(self.visit(t.value), self.visit(t.slice), value, stmt.op)]
            if isinstance(stmt.target, ast.Name):
                return [ast.AugAssign(target=stmt.target, op=stmt.op, value=value)]
        self.refuse(f"the statement {type(stmt).__name__}")

    def visit(self, node):
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript) and _dotted(node.value) == "np.s_":
            return self.visit(node.slice)
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name is not None and name.split(".")[0] == "np":
                return self.np_value(name[3:])
            return ast.Attribute(value=self.visit(node.value), attr=node.attr, ctx=ast.Load())
        if isinstance(node, ast.expr):
            for field, old in ast.iter_fields(node):
                if isinstance(old, list):
                    setattr(node, field, [self.visit(x) if isinstance(x, ast.AST) else x
                                          for x in old])
                elif isinstance(old, ast.expr):
                    setattr(node, field, self.visit(old))
        return node

    def call(self, node: ast.Call):
        func = node.func
        if (isinstance(func, ast.Call) and _dotted(func.func) == "np.vectorize" and func.args
                and _dotted(func.args[0]) == "math.erf" and len(node.args) == 1):
            return _call(self.ERF, [self.visit(node.args[0])])
        args = [self.visit(a) for a in node.args]
        kw = [(k.arg, self.visit(k.value)) for k in node.keywords]
        name = _dotted(func)
        if name is not None and name.split(".")[0] == "np":
            return self.np_call(name[3:], node.args, args, kw)
        if name is not None and (name.split(".")[0] in self.modules or "." not in name):
            return _call(func, args, kw)                 # math.sqrt(...), len(...)
        if isinstance(func, ast.Attribute):
            return self.method(self.visit(func.value), func.attr, args, kw)
        self.refuse("a call of a call")


class _Jax(_Writer):
    ERF = "jax.scipy.special.erf"

    def np_value(self, name: str):
        return _expr(f"jnp.{name}")

    def np_call(self, name, original, args, kw):
        if name in ("add.at", "put_along_axis", "vectorize") or "." in name:
            self.refuse(f"np.{name}(...) inside an expression")
        return _call(f"jnp.{name}", args, kw)

    def method(self, obj, name, args, kw):
        return _call(ast.Attribute(value=obj, attr=name, ctx=ast.Load()), args, kw)

    def setitem(self, t, key, value, op):
        verb = {None: "set", ast.Add: "add", ast.Sub: "add", ast.Mult: "multiply",
                ast.Div: "divide"}.get(type(op) if op is not None else None)
        if verb is None:
            self.refuse(f"an in-place {type(op).__name__} into a slice")
        if isinstance(op, ast.Sub):
            value = ast.UnaryOp(op=ast.USub(), operand=value)
        at = ast.Subscript(value=ast.Attribute(value=t, attr="at", ctx=ast.Load()), slice=key,
                           ctx=ast.Load())
        return ast.Assign(targets=[_store(t, self)], value=_call(
            ast.Attribute(value=at, attr=verb, ctx=ast.Load()), [value]))

    def add_at(self, t, key, value):
        return self.setitem(t, key, value, ast.Add())

    def put_along_axis(self, t, idx, value, axis):
        return ast.Assign(targets=[_store(t, self)], value=_call(
            "jnp.put_along_axis", [t, idx, value],
            [("axis", axis), ("inplace", ast.Constant(False))]))


def _store(t, writer) -> ast.Name:
    if not isinstance(t, ast.Name):
        writer.refuse("a write into something that is not a name")
    return ast.Name(id=t.id, ctx=ast.Store())


#: NumPy functions PyTorch spells the same way (arguments alike).
_TORCH_SAME = frozenset({
    "einsum", "where", "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh",
    "arctan", "sign", "abs", "log1p", "expm1", "zeros_like", "ones_like", "broadcast_to",
    "arange", "cumsum", "square", "reciprocal", "isnan", "isfinite", "logical_not"})
_MATH = frozenset({"sqrt", "exp", "log", "sin", "cos", "tan", "tanh", "sinh", "cosh",
                   "log1p", "expm1", "arctan"})
#: Reductions: NumPy's name → PyTorch's (``axis``/``keepdims`` → ``dim``/``keepdim``).
_REDUCE = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin", "amax": "amax",
           "amin": "amin", "prod": "prod", "var": "var", "std": "std"}
_DTYPES = frozenset({"float16", "float32", "float64", "complex64", "complex128", "int8", "int16",
                     "int32", "int64", "uint8", "bool_"})
#: Array methods PyTorch spells as NumPy does.
_TORCH_METHODS = frozenset({"reshape", "conj"})


class _Torch(_Writer):
    ERF = "torch.special.erf"

    def np_value(self, name: str):
        if name in _DTYPES:
            return _expr(f"torch.{name.rstrip('_')}")
        if name in ("inf", "pi", "nan", "e"):
            return _expr(f"math.{name}")
        self.refuse(f"np.{name}")

    def np_call(self, name, original, args, kw):
        if name in _MATH and original and all(_number(a) for a in original):
            return _call(f"math.{name.replace('arctan', 'atan')}", args, kw)
        if name in _REDUCE:
            return self.method(args[0], name, args[1:], kw, function=True)
        if name in ("maximum", "minimum") and len(args) == 2 and not kw:
            bound = "min" if name == "maximum" else "max"
            if _number(original[1]):
                return _call("torch.clamp", [args[0]], [(bound, args[1])])
            if _number(original[0]):
                return _call("torch.clamp", [args[1]], [(bound, args[0])])
            return _call(f"torch.{name}", args)
        if name in _TORCH_SAME:
            return _call(f"torch.{name}", args, kw)
        if name == "expand_dims" and len(args) == 2 and not kw:
            axes = ast.literal_eval(original[1]) if isinstance(
                original[1], (ast.Constant, ast.Tuple)) else None
            axes = (axes,) if isinstance(axes, int) else axes
            if not axes or any(not isinstance(a, int) or a < 0 for a in axes):
                self.refuse("np.expand_dims with axes that are not constants >= 0")
            out = args[0]
            for a in sorted(axes):
                out = _call("torch.unsqueeze", [out, ast.Constant(a)])
            return out
        if name == "flip" and len(args) == 2 and not kw:
            dims = args[1] if isinstance(args[1], ast.Tuple) else ast.Tuple(
                elts=[args[1]], ctx=ast.Load())
            return _call("torch.flip", [args[0], dims])
        if name == "array" and len(args) == 1 and not kw:
            if isinstance(args[0], (ast.List, ast.Tuple)):
                floats = any(isinstance(e, ast.Constant) and isinstance(e.value, float)
                             for e in ast.walk(args[0]))
                return _call("torch.tensor", args,
                             [("dtype", _expr("torch.float64"))] if floats else [])
            return _call(ast.Attribute(value=_call("torch.as_tensor", args), attr="clone",
                                       ctx=ast.Load()), [])
        if name == "asarray" and len(args) == 1 and not kw:
            return _call("torch.as_tensor", args)
        if name in ("ones", "zeros", "eye", "full"):
            if not any(k == "dtype" for k, _ in kw):      # NumPy's default float64
                kw = [*kw, ("dtype", _expr("torch.float64"))]
            return _call(f"torch.{name}", args, kw)
        self.refuse(f"np.{name}(...)")

    def method(self, obj, name, args, kw, function=False):
        if name in _REDUCE:
            new_kw = []
            for k, v in kw:
                if k == "axis":
                    if isinstance(v, ast.Constant) and v.value is None and _REDUCE[name] in (
                            "amax", "amin"):
                        v = ast.Tuple(elts=[], ctx=ast.Load())    # amax(dim=()): every axis
                    new_kw.append(("dim", v))
                elif k == "keepdims":
                    new_kw.append(("keepdim", v))
                elif k == "ddof" and name in ("var", "std"):
                    new_kw.append(("correction", v))
                elif k in ("dtype",):
                    new_kw.append((k, v))
                else:
                    self.refuse(f"{name}(..., {k}=...)")
            if name in ("var", "std") and not any(k == "correction" for k, _ in new_kw):
                new_kw.append(("correction", ast.Constant(0)))      # NumPy's ddof=0
            if function:
                return _call(f"torch.{_REDUCE[name]}", [obj, *args], new_kw)
            return _call(ast.Attribute(value=obj, attr=_REDUCE[name], ctx=ast.Load()), args,
                         new_kw)
        if name == "astype" and len(args) == 1 and not kw:
            return _call(ast.Attribute(value=obj, attr="to", ctx=ast.Load()), args)
        if name == "copy" and not args and not kw:
            return _call(ast.Attribute(value=obj, attr="clone", ctx=ast.Load()), [])
        if name in _TORCH_METHODS:
            return _call(ast.Attribute(value=obj, attr=name, ctx=ast.Load()), args, kw)
        self.refuse(f"the method .{name}()")

    def setitem(self, t, key, value, op):
        target = ast.Subscript(value=t, slice=key, ctx=ast.Store())
        if op is None:
            return ast.Assign(targets=[target], value=value)
        return ast.AugAssign(target=target, op=op, value=value)

    def add_at(self, t, key, value):
        self.used_add_at = True
        return ast.Expr(value=_call("add_at", [t, key, value]))

    def put_along_axis(self, t, idx, value, axis):
        return ast.Expr(value=_call(ast.Attribute(value=t, attr="scatter_", ctx=ast.Load()),
                                    [axis, idx, value]))
