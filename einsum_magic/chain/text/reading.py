"""Reading a cell's straight-line top-level code (``ast``) into a :class:`Program`.

This module owns the first arrow of the chain: source text → steps. It never runs the
code. Each top-level statement ``name = expression`` (also ``name += …`` and annotated
assignments) becomes one or more steps; imports add module aliases; a bare expression
(``print(loss)``) is skipped. Any other statement (``for``, ``if``, ``def``, a tuple
target) ends the reading there, with a note.

What is read as a step (module ``np``/``numpy``, ``jnp``/``jax.numpy``, ``torch``, or any
alias the cell imports or the user's namespace holds):

* einsum calls, read by :func:`einsum_magic.cell.calls.find_calls` (its conventions);
* products written without einsum: ``@``, ``matmul``, ``dot``, ``inner``, ``outer``,
  ``tensordot(axes=…)``, ``trace``, ``diagonal``, ``.T``, ``transpose``, ``swapaxes``,
  ``sum``/``mean`` over axes (binding turns each into the einsum it is);
* ``+ - * /`` (NumPy broadcasting), unary minus, ``**`` by a constant, ``exp log tanh sin
  cos sqrt abs``, ``maximum(x, 0)``, ``max`` over axes, ``reshape``, ``relu`` and
  ``softmax`` (``jax.nn``, ``torch``, ``torch.nn.functional``; softmax as its definition:
  ``exp(x - max) / sum``, the max held constant as JAX does).

Constants are never differentiated: numbers, outside names holding Python numbers, and
expressions of them and of shapes (``np.sqrt(K.shape[-1])``). Anything else (a call not
listed, a subscript ``x[0]``) becomes a ``stop`` step with a one-line note; its result is
where the backward stops. Nothing is guessed.

>>> p = read("H = np.einsum('bi,ij->bj', X, W) + b\\nZ = np.maximum(H, 0)")
>>> [(s.target, s.kind, s.args) for s in p.steps]
[('t1', 'einsum', ('X', 'W')), ('H', 'add', ('t1', 'b')), ('Z', 'relu', ('H',))]
>>> p.inputs, p.sinks
(('X', 'W', 'b'), ('Z',))
>>> read("B = np.linalg.inv(A) @ C").notes
('np.linalg.inv on line 1 is not differentiated; the backward stops at its result',)
"""

from __future__ import annotations

import ast
import builtins
import numbers
import types
from typing import Any, Mapping

from ...cell.calls import dotted, find_calls
from ...cell.source import of
from ...cell.source import tree as parsed
from ...core.names import free_name
from .program import Program, Step

__all__ = ["read", "MODULES"]

#: Module aliases known without an import: alias → module.
MODULES = {"np": "numpy", "numpy": "numpy", "jnp": "jax.numpy", "jax.numpy": "jax.numpy",
           "torch": "torch", "jax.nn": "jax.nn", "nn": "jax.nn", "F": "torch.nn.functional",
           "torch.nn.functional": "torch.nn.functional", "math": "math", "oe": "opt_einsum",
           "opt_einsum": "opt_einsum", "einops": "einops"}
_ARRAYS = {"numpy", "jax.numpy", "torch"}
_UNARY = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos",
          "sqrt": "sqrt", "abs": "abs", "absolute": "abs", "negative": "neg"}
_PRODUCTS = {"matmul", "dot", "inner", "outer", "tensordot", "trace", "diagonal", "transpose",
             "swapaxes", "sum", "mean", "max", "amax", "reshape", "maximum", "square", "softmax",
             "relu", "t"}
#: Array constructors: their result is a constant (``*_like`` only reads its argument's shape).
_CONSTRUCTORS = {"ones", "zeros", "eye", "identity", "arange", "linspace", "full", "ones_like",
                 "zeros_like", "full_like", "tensor", "array", "asarray"}
_SHAPE_ATTRS = {"shape", "ndim", "size", "dtype"}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}


class _Stop(Exception):
    """An expression that is not differentiated: ``what`` names it for the note."""

    def __init__(self, what: str):
        self.what = what


def read(source: str, namespace: Mapping[str, Any] | None = None) -> Program:
    """The cell's straight-line top-level code as a :class:`Program` (see the module docstring).

    ``namespace`` (the user's, read only) tells modules and Python numbers from arrays.
    Raises :class:`SyntaxError` when ``source`` is not Python.
    """
    return _Reader(source, dict(namespace or {})).run()


class _Reader:
    def __init__(self, source: str, namespace: dict):
        self.source = source
        self.ns = namespace
        self.tree = parsed(source)
        self.lines = source.splitlines()
        self.aliases = dict(MODULES)
        for name, value in namespace.items():
            if isinstance(value, types.ModuleType):
                self.aliases[name] = value.__name__
            elif name in self.aliases:          # the user's F is an array, not a module
                del self.aliases[name]
        self.taken = {n.id for n in of(self.tree, ast.Name)}
        self.taken |= {(n.asname or n.name).split(".")[0] for n in of(self.tree, ast.alias)}
        self.einsums = {(c.line, c.source): c for c in find_calls(source, namespace).calls}
        self.bindings = self._count_bindings()
        for name in self.bindings:              # a name the cell assigns is a value
            self.aliases.pop(name, None)
        self.env: dict[str, str] = {}          # cell name → current SSA name
        self.seen: dict[str, int] = {}         # cell name → bindings so far
        self.renamed: dict[str, str] = {}
        self.steps: list[Step] = []
        self.inputs: list[str] = []
        self.constants: list[str] = []
        self.notes: list[str] = []
        self.counter = 0

    # -- statements --------------------------------------------------------------------

    def _count_bindings(self) -> dict[str, int]:
        """Name → how many top-level statements bind it; fills ``self.outside`` too."""
        out: dict[str, int] = {}
        self.outside: set[str] = set()       # bound by the cell, but read before that
        for stmt in self.tree.body:
            target = _target(stmt)
            reads = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else stmt
            if target is not None:
                self.outside |= {n.id for n in ast.walk(reads) if isinstance(n, ast.Name)
                                 and isinstance(n.ctx, ast.Load) and n.id not in out}
                out[target] = out.get(target, 0) + 1
        return out

    def run(self) -> Program:
        for stmt in self.tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                self._imports(stmt)
                continue
            if isinstance(stmt, (ast.Expr, ast.Pass)):
                continue
            target = _target(stmt)
            if target is None:
                kind = type(stmt).__name__.lower().replace("asyncfunctiondef", "async def")
                kind = {"functiondef": "def", "classdef": "class", "assign": "assignment"
                        }.get(kind, kind)
                self.notes.append(f"the {kind} statement on line {stmt.lineno} is not straight-line "
                                  "code; the backward covers the lines before it")
                break
            self.line, self.text = stmt.lineno, self._segment(stmt)
            if isinstance(stmt, ast.AugAssign):
                value = ast.BinOp(left=ast.Name(target, ast.Load()), op=stmt.op, right=stmt.value)
                ast.copy_location(value, stmt.value)
                ast.fix_missing_locations(value)
            else:
                value = stmt.value
            self._statement(target, value)
        return Program(tuple(self.steps), tuple(self.inputs), tuple(self.constants),
                       tuple(self.notes), frozenset(self.taken),
                       tuple(self.renamed.items()))

    def _imports(self, stmt) -> None:
        for a in stmt.names:
            if isinstance(stmt, ast.Import):
                self.aliases[a.asname or a.name.split(".")[0]] = (a.name if a.asname else
                                                                   a.name.split(".")[0])
            elif stmt.module and a.name != "*":
                self.aliases[a.asname or a.name] = f"{stmt.module}.{a.name}"

    def _statement(self, target: str, value: ast.AST) -> None:
        # The value is read before the name is rebound: ``x = x + 1`` reads the old x.
        name = self._new_version(target)
        self.pending = name
        try:
            arg = self._expr(value, top=True)
        except _Stop as stop:
            self._stop(name, value, stop.what)
        else:
            if arg != name and self._is_value(arg):     # ``Y = X``: another name, no step
                self.renamed.pop(name, None)
                self.env[target] = arg
                return
            if arg != name:                              # a constant
                self._emit(name, "const", (), arg)
        self.env[target] = name

    def _new_version(self, target: str) -> str:
        k = self.seen.get(target, 0) + 1
        self.seen[target] = k
        total = self.bindings.get(target, 1)
        if k == total and target not in self.outside:
            name = target
        else:
            name = free_name(f"{target}_{k}", self.taken)
            self.renamed[name] = target
        return name

    def _emit(self, target: str, kind: str, args, param=None, what: str = "") -> str:
        self.steps.append(Step(target, kind, tuple(args), param, self.line, self.text, what))
        return target

    def _temp(self) -> str:
        self.counter += 1
        name = f"t{self.counter}"
        while name in self.taken:
            self.counter += 1
            name = f"t{self.counter}"
        self.taken.add(name)
        return name

    def _out(self, top: bool) -> str:
        if top:
            name, self.pending = self.pending, None
            if name is not None:
                return name
        return self._temp()

    def _stop(self, name: str, node: ast.AST, what: str) -> None:
        self.notes.append(f"{what} on line {self.line} is not differentiated; the backward stops "
                          "at its result")
        for n in ast.walk(node):       # the arrays it reads are the cell's inputs all the same
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in self.env \
                    and n.id not in self.aliases and not self._is_const(n) \
                    and not self._opaque(n.id):
                self._name(n)
        self._emit(name, "stop", (), self._const_text(node), what)

    def _opaque(self, name: str) -> bool:
        """Whether ``name`` is no array: a builtin, a function, a random generator, a model.

        A ``stop`` step that reads one is no input of the cell; its value is taken from
        the run (:func:`einsum_magic.chain.text.forward.bind`'s ``known``), never recomputed.
        """
        if name not in self.ns:
            return hasattr(builtins, name)
        value = self.ns[name]
        return not hasattr(value, "shape") and not isinstance(value, numbers.Number)

    def _segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    # -- names ---------------------------------------------------------------------------

    def _is_value(self, arg: str) -> bool:
        return arg in self.inputs or any(s.target == arg for s in self.steps)

    def _name(self, node: ast.Name) -> str:
        name = node.id
        if name in self.env:
            return self.env[name]
        if name in self.aliases:
            raise _Stop(f"the module {name}")
        value = self.ns.get(name)
        if isinstance(value, numbers.Number) and not hasattr(value, "shape"):
            if name not in self.constants:
                self.constants.append(name)
            return name
        if name not in self.inputs:
            self.inputs.append(name)
        self.env[name] = name
        return name

    def _is_const(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, (int, float, complex)) or node.value is None
        if isinstance(node, ast.Name):
            if node.id in self.env:
                return False
            value = self.ns.get(node.id)
            return isinstance(value, numbers.Number) and not hasattr(value, "shape")
        if isinstance(node, ast.Attribute):
            return node.attr in _SHAPE_ATTRS
        if isinstance(node, ast.Subscript):
            return self._is_const(node.value) and self._is_const(node.slice)
        if isinstance(node, (ast.Tuple, ast.List)):
            return all(self._is_const(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp):
            return self._is_const(node.operand)
        if isinstance(node, ast.BinOp):
            return self._is_const(node.left) and self._is_const(node.right)
        if isinstance(node, ast.Call):
            func = self._function(node.func)
            if func is not None and func[0] in _ARRAYS and func[1] in _CONSTRUCTORS:
                return func[1].endswith("_like") or all(self._is_const(a) for a in node.args)
            return (func is not None and (func[1] in _UNARY or func[0] == "math" or func[1] == "len")
                    and all(self._is_const(a) for a in node.args) and not node.keywords)
        return False

    def _const_text(self, node: ast.AST) -> str:
        """The source of ``node`` with the cell's names replaced by their current versions."""
        env = self.env

        class Rename(ast.NodeTransformer):
            def visit_Name(self, n):
                return ast.copy_location(ast.Name(env.get(n.id, n.id), n.ctx), n)

        for n in ast.walk(node):
            if isinstance(n, ast.Name) and n.id not in env and n.id not in self.aliases \
                    and n.id not in self.constants and n.id in self.ns:
                value = self.ns[n.id]
                if isinstance(value, numbers.Number) and not hasattr(value, "shape"):
                    self.constants.append(n.id)
        return ast.unparse(Rename().visit(_copy(node)))

    def _function(self, func: ast.AST) -> tuple[str, str] | None:
        """(module, function name) of a call's function, for a module alias's attribute."""
        if isinstance(func, ast.Attribute):
            module = self.aliases.get(dotted(func.value) or "")
            if module is not None:
                return module, func.attr
        if isinstance(func, ast.Name):
            full = self.aliases.get(func.id)
            if full and "." in full:
                module, _, fn = full.rpartition(".")
                return module, fn
            if func.id == "len":
                return "builtins", "len"
        return None

    # -- expressions ---------------------------------------------------------------------

    def _expr(self, node: ast.AST, top: bool = False) -> str:
        """The value (its name) or constant (its text) ``node`` computes; emits its steps.

        A sub-expression that is not differentiated becomes a ``stop`` step.
        """
        try:
            return self._dispatch(node, top)
        except _Stop as stop:
            if top or isinstance(node, ast.Name):
                raise
            name = self._temp()
            self._stop(name, node, stop.what)
            return name

    def _dispatch(self, node: ast.AST, top: bool) -> str:
        if self._is_const(node):
            return self._const_text(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node, top)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                (x,) = self._args([node.operand])
                return self._emit(self._out(top), "neg", (x,))
            if isinstance(node.op, ast.UAdd):
                return self._expr(node.operand, top)
            raise _Stop(f"the operator {self._segment(node)!r}")
        if isinstance(node, ast.Attribute):
            if node.attr == "T":
                (x,) = self._args([node.value])
                return self._emit(self._out(top), "transpose", (x,), None, self._segment(node))
            if node.attr == "mT":
                (x,) = self._args([node.value])
                return self._emit(self._out(top), "swapaxes", (x,), (-1, -2), self._segment(node))
            raise _Stop(f"the attribute {self._segment(node)}")
        if isinstance(node, ast.Call):
            return self._call(node, top)
        if isinstance(node, ast.Subscript):
            raise _Stop(f"the subscript {self._segment(node)}")
        raise _Stop(f"{self._segment(node)!r}")

    def _args(self, nodes) -> tuple[str, ...]:
        pending, self.pending = self.pending, None
        out = tuple(self._expr(n) for n in nodes)
        self.pending = pending
        return out

    def _binop(self, node: ast.BinOp, top: bool) -> str:
        if isinstance(node.op, ast.MatMult):
            a, b = self._args([node.left, node.right])
            return self._emit(self._out(top), "matmul", (a, b), None, self._segment(node))
        if isinstance(node.op, ast.Pow):
            if not self._is_const(node.right):
                raise _Stop(f"the power {self._segment(node)} (its exponent is not a constant)")
            (a,) = self._args([node.left])
            return self._emit(self._out(top), "pow", (a,), self._const_text(node.right))
        kind = _BINOPS.get(type(node.op))
        if kind is None:
            raise _Stop(f"the operator in {self._segment(node)}")
        a, b = self._args([node.left, node.right])
        return self._emit(self._out(top), kind, (a, b))

    def _call(self, node: ast.Call, top: bool) -> str:
        text = self._segment(node)
        einsum = self.einsums.get((node.lineno, text))
        if einsum is not None:
            return self._einsum(node, einsum, top)
        func = node.func
        # methods: x.sum(…), x.reshape(…), …
        root = dotted(func.value) if isinstance(func, ast.Attribute) else None
        if root is not None and root.split(".")[0] in self.aliases and self._function(func) is None:
            raise _Stop(self._segment(func))
        if isinstance(func, ast.Attribute) and self._function(func) is None:
            if func.attr in _PRODUCTS | {"exp", "log", "tanh", "sin", "cos", "sqrt", "abs", "relu"}:
                return self._function_call(func.attr, [func.value] + list(node.args),
                                           node.keywords, top, text, method=True)
            raise _Stop(self._segment(func))
        found = self._function(func)
        if found is None:
            raise _Stop(self._segment(func))
        module, name = found
        if module not in _ARRAYS | {"jax.nn", "torch.nn.functional"}:
            raise _Stop(f"{self._segment(func)}")
        if module in ("jax.nn", "torch.nn.functional") and name not in ("relu", "softmax"):
            raise _Stop(self._segment(func))
        if name not in _PRODUCTS and name not in _UNARY:
            raise _Stop(self._segment(func))
        return self._function_call(name, list(node.args), node.keywords, top, text,
                                   function=self._segment(func))

    def _einsum(self, node: ast.Call, call, top: bool) -> str:
        args = node.args
        if call.style == "numpy":
            operands = list(args[1:])
            if len(operands) == 1 and isinstance(operands[0], (ast.List, ast.Tuple)):
                operands = list(operands[0].elts)
        elif call.style == "einops":
            operands = list(args[:-1])
        else:
            operands = list(args[0:len(args) - (len(args) % 2):2])
        if len(operands) != len(call.names):
            raise _Stop(self._segment(node.func))
        names = []
        for op in operands:
            if self._is_const(op):
                names.append(self._emit(self._temp(), "const", (), self._const_text(op)))
            else:
                names.append(self._args([op])[0])
        return self._emit(self._out(top), "einsum", tuple(names), call.equation)

    def _function_call(self, name: str, args: list, keywords, top: bool, text: str,
                       method: bool = False, function: str = "") -> str:
        where = function or f".{name}"
        kw = {k.arg: k.value for k in keywords}
        if None in kw:
            raise _Stop(where)

        def literal(node, default=None):
            if node is None:
                return default
            try:
                return ast.literal_eval(node)
            except ValueError:
                raise _Stop(f"{where} (its {ast.unparse(node)} is not a literal)") from None

        def option(position: int, *keys, default=None):
            for k in keys:
                if k in kw:
                    return literal(kw.pop(k))
            return literal(args[position]) if len(args) > position else default

        if name in _UNARY:
            if len(args) != 1 or kw:
                raise _Stop(where)
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), _UNARY[name], (x,))
        if name == "square":
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), "pow", (x,), "2")
        if name == "relu":
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), "relu", (x,))
        if name == "maximum":
            if len(args) != 2 or kw:
                raise _Stop(where)
            zero = [i for i, a in enumerate(args) if isinstance(a, ast.Constant) and a.value == 0]
            if not zero:
                raise _Stop(f"{where} (only maximum(x, 0) is differentiated)")
            (x,) = self._args([args[1 - zero[0]]])
            return self._emit(self._out(top), "relu", (x,))
        if name in ("sum", "mean", "max", "amax", "softmax"):
            axis = option(1, "axis", "dim", default=-1 if name == "softmax" else None)
            keep = bool(option(2, "keepdims", "keepdim", default=False))
            if name == "softmax" and method:
                raise _Stop(where)
            if kw:
                raise _Stop(f"{where} (with {', '.join(kw)})")
            (x,) = self._args(args[:1])
            axes = axis if axis is None or isinstance(axis, tuple) else (axis,)
            if name == "softmax":
                return self._softmax(x, axes, top)
            kind = "max" if name == "amax" else name
            param = (axes, keep, False) if kind == "max" else (axes, keep)
            return self._emit(self._out(top), kind, (x,), param, text)
        if name == "reshape":
            shape = args[1:] if method else args[1:2]
            if "shape" in kw or "newshape" in kw:
                shape = [kw.pop("shape", None) or kw.pop("newshape")]
            if kw or not shape or not all(self._is_const(s) for s in shape):
                raise _Stop(where)
            (x,) = self._args(args[:1])
            shape_text = ", ".join(self._const_text(s) for s in shape)
            return self._emit(self._out(top), "reshape", (x,), shape_text, text)
        if name in ("transpose", "t"):
            axes = None
            if method and len(args) > 1:
                axes = tuple(literal(a) for a in args[1:])
                axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
            elif not method:
                axes = option(1, "axes")
                if function.startswith("torch") and len(args) == 3:
                    (x,) = self._args(args[:1])
                    return self._emit(self._out(top), "swapaxes", (x,),
                                      (literal(args[1]), literal(args[2])), text)
            if kw:
                raise _Stop(where)
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), "transpose", (x,),
                              None if axes is None else tuple(axes), text)
        if name == "swapaxes":
            a1, a2 = option(1, "axis1", "dim0"), option(2, "axis2", "dim1")
            if kw or a1 is None or a2 is None:
                raise _Stop(where)
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), "swapaxes", (x,), (a1, a2), text)
        if name in ("trace", "diagonal"):
            if len(args) != 1 or kw:
                raise _Stop(f"{where} (with offset or axes)")
            (x,) = self._args(args[:1])
            return self._emit(self._out(top), name, (x,), None, text)
        if name in ("matmul", "dot", "inner", "outer", "tensordot"):
            axes = option(2, "axes", "dims", default=2) if name == "tensordot" else None
            if kw or len(args) != 2:
                raise _Stop(where)
            a, b = self._args(args[:2])
            return self._emit(self._out(top), name, (a, b), axes, text)
        raise _Stop(where)

    def _softmax(self, x: str, axes, top: bool) -> str:
        m = self._emit(self._temp(), "max", (x,), (axes, True, True), "softmax's shift (constant)")
        z = self._emit(self._temp(), "sub", (x, m))
        e = self._emit(self._temp(), "exp", (z,))
        s = self._emit(self._temp(), "sum", (e,), (axes, True), "softmax's normaliser")
        return self._emit(self._out(top), "div", (e, s))


def _target(stmt: ast.stmt) -> str | None:
    """The one plain name a top-level statement binds, or None when it is no such statement."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 \
            and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None \
            and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) \
            and type(stmt.op) in _BINOPS:
        return stmt.target.id
    return None


def _copy(node: ast.AST) -> ast.AST:
    return ast.parse(ast.unparse(node), mode="eval").body
