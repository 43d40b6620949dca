"""Observing the run: every einsum call a cell executes, with what it really received.

This module owns the second reading of a cell (the first, from the source, is
:mod:`einsum_magic.cell.calls`). Which functions are einsums comes from the one table,
:mod:`einsum_magic.cell.modules`. While a :class:`Capture` is active:

* numpy's, jax.numpy's, torch's, opt_einsum's (``contract``) and einops' einsum, in the
  modules already imported or imported while it is active, in the other modules that bound
  one by its own name (``from numpy import einsum`` in a library: :func:`_binders`), and
  every name of the user's namespace bound to one of them, are replaced by one stand-in per
  function (a ``functools.partial`` subclass, see :class:`_Einsum`) whose ``func`` is its
  observing function, bound to this capture's recorder. On exit (also on an error or
  ``KeyboardInterrupt``) the attributes and names are put back (only where they still
  hold the stand-in, so a name the cell rebinds is never clobbered, and a name the cell
  bound to it gets the original), and the stand-in's ``func`` becomes the original
  again: a stand-in that outlives the cell (in a ``functools.partial``, a list, a
  module that did ``from numpy import einsum``) calls straight through, pickles as the
  original (by name), and ``inspect.signature``, ``help`` and ``jax.jit`` see the
  original through ``__wrapped__``.
* ``opt_einsum.contract_expression(...)(*arrays)``: ``ContractExpression.__call__`` is
  swapped on the class while active, and its calls are recorded as ``oe.contract`` calls
  of the expression's equation (not one with constant operands).
* TorchScript is told that the stand-in of ``torch.einsum`` is ``aten::einsum``, as the
  original: a scripted function compiles as without the magic, and its calls run
  unobserved (TorchScript runs no Python).
* Compiled code: each stand-in's observing function is made once, and
  ``torch.compile`` (Dynamo) is told to trace it as the original plus a ``comptime``
  record: the call is recorded once, at the user's line, with the fake tensors' shapes,
  and the graph stays whole. ``jax.jit`` traces through the stand-in like any Python
  code: the call is recorded when traced, with the tracers' shapes.

The observer passes the call through untouched: same arguments, same result, same
exception (its frame is hidden from IPython's tracebacks); a call that raised is not
recorded. Calls from other threads are recorded too (:attr:`Site.thread` says so).
Never recorded: an inner call of an observed einsum (opt_einsum or einops calling
numpy's or torch's, torch's private modules under ``torch.compile``: the outer call is
the one seen), and this package's own calls (walking out from the call, a frame of
``einsum_magic`` is met before the frame that entered the capture: a second
``%%einsum_grad`` at the top of a cell runs its check while the first one observes).

Calls are grouped by *site* (the calling frame's code and instruction, and the
equation): :meth:`Recorder.sites` gives one :class:`Site` per site in the order they
first ran, with how often each ran and how many different shape signatures it saw. The
first call of a site is the one shown: its equation as received (a string, the
interleaved sublists, an einops pattern), operand shapes and dtypes, which positions
hold the same object, the local (preferably parameter) names bound to the operands in
the calling frame, and copies of its arrays (NumPy) when each has at most ``budget``
elements (and their total stays under four budgets), since the cell may mutate them
later. JAX tracers (under ``jit``/``vmap``) and Dynamo's fake tensors give shapes and
dtypes only. A later call of a known site costs a dict lookup by instruction, an
identity test of the equation and operands, and a shape comparison when the operands
are new objects; once a site has repeated, the same tests run in C
(:mod:`einsum_magic.cell._observe`, built where a C compiler was at install, else all
in Python): about 0.1 us a call instead of 0.45 (``benchmarks/bench_capture.py``). The
import statements the cell runs (torch's einsum runs two a call) pass through a hook of
the same module that calls Python only when an awaited module may have arrived.

>>> import numpy as np
>>> before = np.einsum
>>> A, B = np.ones((2, 3)), np.ones((3, 4))
>>> with Capture({}) as recorder:
...     C = np.einsum('ij,jk->ik', A, B)
...     D = np.einsum('ij,ij->', A, A)
>>> [(s.equation, s.shapes, s.same, s.count) for s in recorder.sites()]
[('ij,jk->ik', ((2, 3), (3, 4)), (0, 1), 1), ('ij,ij->', ((2, 3), (2, 3)), (0, 0), 1)]
>>> np.einsum is before
True
"""

from __future__ import annotations

import builtins
import functools
import operator
import pkgutil
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .modules import FUNCTIONS, OBSERVED, PACKAGE, internal

try:    # the observer's hot paths in C (_observe.c): a site's repeated calls, import statements
    from ._observe import ImportHook as _ImportHook
    from ._observe import Repeat as _Repeat
except ImportError:     # not built where the package was installed (no C compiler): in Python
    _ImportHook = _Repeat = None

__all__ = ["Capture", "Recorder", "Site", "original_of"]

#: Distinct shape signatures remembered per site (beyond it, only counted).
_VARIANTS = 8
#: torch's own modules between a user's ``torch.einsum`` call and what Dynamo traces.
_TORCH_DISPATCH = frozenset({"torch.overrides", "torch.functional"})

_get_ident = threading.get_ident
_getframe = sys._getframe
_shape_of = operator.attrgetter("shape")
_WRAPPERS: dict[Any, "_Einsum"] = {}    # original function -> its wrapper (one per original)


class _Einsum(functools.partial):
    """The stand-in for one einsum function: ``np.einsum`` while a cell runs.

    A ``functools.partial`` with no arguments of its own: calling it calls its
    ``func``, which is the original itself except while a :class:`Capture` is active,
    when it is that capture's observer. So a wrapper that outlives the cell (in a
    ``functools.partial``, a list, a module that did ``from numpy import einsum``)
    costs one C-level call afterwards. It pickles as the original does, by name
    (``pkgutil.resolve_name('numpy:einsum')``), compares equal to it and hashes as it does
    (a dict keyed by either finds the other), lends its attributes, and ``__wrapped__``
    lets ``inspect.signature`` and ``help`` read the original's.
    """

    def __reduce__(self):
        return pkgutil.resolve_name, (self.__dict__["_einsum_magic_name"],)

    # equal to the original and hashed as it is: a table keyed by the function
    # (``HANDLED[np.einsum]`` of an ``__array_function__`` protocol) finds either in the other
    def __eq__(self, other):
        return other is self or other is self.__dict__.get("__wrapped__")

    def __hash__(self):
        return hash(self.__dict__.get("__wrapped__"))

    def __getattr__(self, name):            # the original's other attributes (_implementation)
        if name.startswith("__") or "__wrapped__" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["__wrapped__"], name)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def _switch(self, func) -> None:
        """Make calls go to ``func`` (the original, or a capture's observer)."""
        self.__setstate__((func, (), None, self.__dict__))


def _wrapper(original, module: str, attribute: str) -> _Einsum:
    wrapper = _WRAPPERS.get(original)
    if wrapper is None:
        wrapper = _Einsum(original)
        functools.update_wrapper(wrapper, original)     # __wrapped__, __doc__, __name__, …
        wrapper.__dict__["_einsum_magic_name"] = f"{module}:{attribute}"
        _WRAPPERS[original] = wrapper
        if module == "torch":
            _scriptable(wrapper, original)
    return wrapper


def _scriptable(wrapper: _Einsum, original) -> None:
    """Let TorchScript compile ``wrapper`` as it compiles ``original`` (``aten::einsum``).

    ``torch.jit.script`` resolves a call to a Python function through its table of
    builtin operators (by ``id``): the wrapper, kept for good in ``_WRAPPERS``, gets
    the original's entry, so a scripted function calling ``torch.einsum`` compiles
    to the same graph as without the magic (and runs unobserved, as TorchScript).
    """
    try:
        from torch.jit import _builtins

        name = _builtins._find_builtin(original)
        if name is not None:
            _builtins._get_builtin_table()[id(wrapper)] = name
    except Exception:                       # noqa: BLE001 (another torch: scripting then fails)
        pass


_OBSERVERS: dict = {}      # wrapper -> (what it calls while observing, its bind, the Python
#                            observing function), made once, kept
_REPEATS: list = []        # every _observe.Repeat made (Recorder.sites adds what they counted)
_ORIGINALS: dict = {}      # id(wrapper) -> its original (what Dynamo calls instead)
_dynamo = {"ready": False, "comptime": None}   # Dynamo's polyfills registered, its comptime


def _observing(wrapper: _Einsum, function: str, style: str):
    """What ``wrapper`` calls while observing, its ``bind``, and the observing function
    (made once, then kept).

    The function calls the original first (same arguments, result and exception),
    then records the call in the recorder it is bound to: ``bind((recorder.fast,
    recorder.observe))`` binds it and returns the previous binding (nested captures
    put it back). A site seen before costs one dict lookup by the calling
    instruction, an identity test of the equation and of the operands, and a
    comparison of the shapes when the operands are new objects. Being one function
    per wrapper, it is what ``torch.compile`` is told to trace as the original
    (:func:`_register_dynamo`): no graph break, the call recorded at the user's line.

    Where :mod:`einsum_magic.cell._observe` is built, the wrapper calls a ``Repeat``
    (its bound method ``call``, which Dynamo is told to trace as the function is) in
    front of the function: once the function has counted a call of a site, it arms the
    ``Repeat`` for that site, which counts the site's next calls with the same equation
    object and the same operands, or operands of the same shapes, in C, and hands the
    function every other call. What it counted reaches the sites' ``count`` when the
    binding changes and when :meth:`Recorder.sites` reads them.
    """
    made = _OBSERVERS.get(wrapper)
    if made is not None:
        return made
    original = wrapper.__wrapped__
    getframe = _getframe
    fast: dict = {}
    observe = None
    repeat = None

    def einsum(*args, **kwargs):
        __tracebackhide__ = True            # noqa: F841 (IPython hides this frame)
        result = original(*args, **kwargs)
        frame = getframe(1)
        site = fast.get(frame.f_lasti)
        if site is not None and site.code is frame.f_code:
            if args[0] is site.equation:    # the same call again: the speed of a loop
                site.count += 1             # (benchmarks/bench_capture.py)
                last = site.last
                n = len(args)
                if n == len(last):          # the same operands as last time: same shapes
                    if n == 3:
                        if args[2] is last[2] and args[1] is last[1]:
                            if repeat is not None and not kwargs:   # its next ones: in C
                                repeat.arm(frame, args, site.shapes, site)
                            return result
                    elif n == 2 and args[1] is last[1]:
                        if repeat is not None and not kwargs:
                            repeat.arm(frame, args, site.shapes, site)
                        return result
                site.last = args
                try:
                    shapes = ((args[1].shape, args[2].shape) if n == 3 else
                              (args[1].shape,) if n == 2 else tuple(map(_shape_of, args[1:])))
                except AttributeError:
                    shapes = None
                if shapes != site.shapes:
                    site.vary(shapes)
                elif repeat is not None and not kwargs:
                    repeat.arm(frame, args, site.shapes, site)
                return result
            if site.skip:
                return result
        record = observe
        if record is not None:
            record(function, style, args, frame)
        return result

    def bind(state):
        nonlocal fast, observe
        if repeat is not None:
            repeat.clear()              # its counts to their sites, no operand kept
        previous = fast, observe
        fast, observe = state
        return previous

    einsum.__name__ = einsum.__qualname__ = getattr(original, "__name__", "einsum")
    front = einsum
    if _Repeat is not None:
        repeat = _Repeat(original, einsum)
        front = repeat.call             # one bound method, kept: Dynamo knows it by identity
        _REPEATS.append(repeat)
    made = _OBSERVERS[wrapper] = (front, bind, einsum)
    _ORIGINALS[id(wrapper)] = original
    if _dynamo["ready"]:
        _substitute(wrapper, function, style)
    return made


def _register_dynamo(patched) -> bool:
    """Tell Dynamo (once it is imported) to trace each observing function as its original.

    ``torch.compiler.substitute_in_graph`` gives each observing function a stand-in
    that Dynamo traces instead: it records the call once, where Dynamo traces it (at
    the user's line, fake tensors' shapes), through ``comptime``, and calls the
    original, so the graph stays whole. Dynamo reads which functions are NumPy's and
    torch's once, lazily: that happens here, with the original functions in place
    (``patched``: the capture's (module, attribute, original, wrapper)), so that it
    knows the originals (inside the cell, where the stand-in calls them, and after).
    False while Dynamo is not imported.
    """
    if _dynamo["ready"]:
        return True
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is None or getattr(getattr(dynamo, "__spec__", None), "_initializing", False):
        return False
    _dynamo["ready"] = True
    try:
        from torch._dynamo import trace_rules
        from torch._dynamo.comptime import comptime
        from torch._dynamo.variables.misc import get_np_to_tnp_map

        _dynamo["comptime"] = comptime
        put_back = [(m, a, w) for m, a, o, w in patched if m.__dict__.get(a) is w]
        for module, attribute, wrapper in put_back:
            setattr(module, attribute, wrapper.__wrapped__)
        try:                                # (re)built with the originals in place
            trace_rules.clear_lru_cache()
            trace_rules.get_torch_obj_rule_map()
            get_np_to_tnp_map.cache_clear()
            get_np_to_tnp_map()
            numpy_ids = trace_rules._numpy_function_ids
            for wrapper in _WRAPPERS.values():
                if id(wrapper) in numpy_ids():
                    numpy_ids.remove(id(wrapper))
                    numpy_ids.add(id(wrapper.__wrapped__))
        finally:
            for module, attribute, wrapper in put_back:
                setattr(module, attribute, wrapper)
    except Exception:                       # noqa: BLE001 (another Dynamo: compiled code breaks)
        return True
    for wrapper in list(_OBSERVERS):
        name = wrapper.__dict__["_einsum_magic_name"]
        known = next((f for f in FUNCTIONS if f"{f.module}:{f.attribute}" == name), None)
        if known is not None:
            _substitute(wrapper, known.name, known.style)
    return True


def _substitute(wrapper: _Einsum, function: str, style: str) -> None:
    """Register the stand-in Dynamo traces for ``wrapper``'s observing function (never raises)."""
    key = id(wrapper)                       # kept for good in _WRAPPERS: a stable key

    def record(ctx):
        if _active:
            _traced_call(ctx, _active[-1], function, style)

    def traced(*args, **kwargs):
        _dynamo["comptime"](record)
        return _ORIGINALS[key](*args, **kwargs)

    try:
        import torch
        from torch._dynamo.eval_frame import skip_code

        front, _, einsum = _OBSERVERS[wrapper]
        skip_code(einsum.__code__)          # never compiled as a frame of its own either
        torch.compiler.substitute_in_graph(einsum, skip_signature_check=True)(traced)
        if front is not einsum:             # the C counter in front of it: the same stand-in
            torch.compiler.substitute_in_graph(front, skip_signature_check=True)(traced)
    except Exception:                       # noqa: BLE001 (a Dynamo without it, or registered)
        pass


#: The names an einsum function has in its own module ('einsum', 'contract'): a library that
#: imported it by that name holds it so (an alias, ``from torch import einsum as te``, is not
#: looked for).
_NAMES = frozenset(f.attribute for f in OBSERVED)
#: Packages never searched: the einsum functions' own (they define or re-export them) and this one.
_OWN = frozenset({f.module.partition(".")[0] for f in OBSERVED} | {"jaxlib", PACKAGE, "__main__"})
_found = {"modules": 0, "binders": []}    # how many of sys.modules were searched; what was found


def _binders() -> list:
    """``(module, name)`` of every module in ``sys.modules`` (outside the einsum functions'
    packages, this one and ``__main__``) whose namespace binds one of :data:`_NAMES` to a
    callable (:meth:`Capture._patch_binders` keeps those that hold an original). Each module
    is searched once: a capture searches the modules imported since the last one.

    >>> import types, sys
    >>> lib = types.ModuleType("a_library")
    >>> lib.einsum = np.einsum
    >>> sys.modules["a_library"] = lib
    >>> (lib, "einsum") in _binders()
    True
    >>> del sys.modules["a_library"]
    """
    found = _found["binders"]
    if len(sys.modules) != _found["modules"]:       # (new modules are added at the end)
        modules = list(sys.modules.items())
        start = _found["modules"] if _found["modules"] < len(modules) else 0
        found = _found["binders"] = found if start else []
        _found["modules"] = len(modules)
        _search(modules[start:], found)
    return [(m, a) for name, m, a in found if sys.modules.get(name) is m]


def _search(modules, found: list) -> None:
    for name, module in modules:
        if name.partition(".")[0] in _OWN:
            continue
        try:        # the namespace as it is: a lazy module (importlib's LazyLoader) is not loaded
            namespace = object.__getattribute__(module, "__dict__")
            if type(namespace) is dict:
                found.extend((name, module, attribute) for attribute in _NAMES & namespace.keys()
                             if callable(namespace[attribute]))
        except Exception:                   # noqa: BLE001 (an odd entry of sys.modules: skipped)
            continue


def original_of(f):
    """The original einsum behind a wrapper of this module, else ``f`` itself."""
    return f.__wrapped__ if isinstance(f, _Einsum) else f


@dataclass(frozen=True)
class Site:
    """One einsum call site of the run and the first call made there.

    ``function`` is the observed function (``'numpy.einsum'``), ``style`` how its
    equation came: ``'numpy'`` (``equation`` is the string as received),
    ``'interleaved'`` (``sublists``: one tuple per operand, then the output's or
    ``None``) or ``'einops'`` (``equation`` is the pattern). ``same[k]`` is the first
    position holding the same object as position ``k``. ``names[k]`` a name the
    calling frame binds to operand ``k`` (a parameter first), else ``None``.
    ``arrays`` the copies (``None`` where not kept: over the budget, a tracer, not
    numeric). ``count`` is how often the site ran, ``variants`` how many different
    shape signatures it saw (counted up to a few), ``thread`` whether its first call
    came from another thread than the one that entered the capture, ``tracer`` what
    traced it when ``traced`` (``'JAX'`` or ``'torch.compile'``).
    """

    function: str
    style: str
    equation: str | None
    sublists: tuple | None
    shapes: tuple
    dtypes: tuple[str, ...]
    same: tuple[int, ...]
    names: tuple
    arrays: tuple
    filename: str
    line: int                         # where the call starts (its first line and column)
    column: int
    scope: str                        # the calling code's qualified name ('<module>', 'f', 'C.m')
    traced: bool = False
    count: int = 1
    variants: int = 1
    thread: bool = False              # first ran in another thread than the capture's
    tracer: str = ""                  # what traced it: 'JAX', 'torch.compile' ('' if not)


class _Open:
    """A site while the capture runs (mutable: its count and shape variants grow).

    ``skip``: a site whose calls are never recorded (an inner call of opt_einsum or
    einops, or this package's own), remembered so that its later calls cost a lookup.
    """

    __slots__ = ("site", "shapes", "count", "seen", "code", "equation", "skip", "last",
                 "traced")

    def __init__(self, site: Site | None, raw_shapes, code, equation, skip: bool = False):
        self.site = site
        self.last = ()                      # the arguments of the latest call (fast path only)
        self.code = code                    # keeps id(code) in the site's key valid
        self.equation = equation            # the string of a numpy-style call (fast path)
        self.shapes = raw_shapes
        self.count = 1
        self.seen = [raw_shapes]
        self.skip = skip
        self.traced = False                 # seen only by a tracer (torch.compile) so far

    def vary(self, shapes) -> None:
        if len(self.seen) < _VARIANTS and shapes not in self.seen:
            self.seen.append(shapes)


class Recorder:
    """The einsum calls of one capture, grouped by site (see the module docstring).

    ``boundary``: the frame that runs the observed code (the one that entered the
    capture); walking out from a call, meeting a frame of this package before it
    means the package itself made the call, which is never recorded.
    """

    def __init__(self, budget: int = 1_000_000, boundary=None):
        self.budget = budget
        self.kept = 0                       # elements copied so far
        self.thread = _get_ident()
        self.boundary = boundary
        self._open: dict = {}               # (id(code), instruction, equation) -> _Open
        self._skips: dict = {}              # (id(code), instruction) -> (code, never recorded?)
        self.fast: dict = {}                # instruction -> the latest string site there
        self._traced: dict = {}             # (file, line, column, equation) -> a traced site
        self._tracer = None

    def _skipped(self, frame) -> bool:
        """Whether a call from ``frame`` is never recorded: an inner call, or the package's own."""
        module = frame.f_globals.get("__name__")
        if frame is not self.boundary and (internal(module) or _torch_internal(module)):
            return True
        f = frame
        while f is not None:
            if f is self.boundary:
                return False
            if f.f_globals.get("__name__", "").partition(".")[0] == PACKAGE:
                return True
            f = f.f_back
        return False

    def observe(self, function: str, style: str, args: tuple, frame, traced: bool = False) -> None:
        """Record one outermost call (never raises: observing must not fail the cell)."""
        try:
            where = (id(frame.f_code), frame.f_lasti)
            known = self._skips.get(where)
            if known is None or known[0] is not frame.f_code:
                known = self._skips[where] = (frame.f_code, self._skipped(frame))
            if known[1]:
                self.fast[frame.f_lasti] = _Open(None, None, frame.f_code, None, skip=True)
                return
            first = args[0]
            if style == "numpy" and first.__class__ is str:
                key = (id(frame.f_code), frame.f_lasti, first)
                operands = args[1:]
                if len(operands) == 1 and operands[0].__class__ in (list, tuple):
                    operands = tuple(operands[0])          # torch.einsum(eq, [A, B])
            elif style == "einops":
                key = (id(frame.f_code), frame.f_lasti, args[-1])
                operands = args[:-1]
            else:
                operands = args[0:len(args) - len(args) % 2:2]
                key = (id(frame.f_code), frame.f_lasti, tuple(_sublist(s) for s in args[1::2]))
            try:
                shapes = tuple(map(_shape_of, operands))
            except AttributeError:
                shapes = tuple([getattr(x, "shape", None) for x in operands])
            open_ = self._open.get(key)
            if open_ is not None:
                if open_.equation is not None and not traced:
                    self.fast[frame.f_lasti] = open_
                if open_.traced and not traced:
                    open_.traced = False    # it runs in Python after all (a graph break):
                else:                       # its runs are counted, its trace was not one
                    open_.count += 1
                if shapes != open_.shapes:
                    open_.vary(shapes)
                return
            simple = style == "numpy" and first.__class__ is str and len(args) - 1 == len(operands)
            if self._traced and not traced:     # a call torch.compile traced, now in Python
                twin = self._traced.get((frame.f_code.co_filename, *_position(frame), key[2]))
                if twin is not None and twin.traced:
                    twin.traced = False         # its runs are counted, its trace was not one
                    self._open[key] = twin
                    if twin.equation is not None and simple:
                        twin.last = args
                        self.fast[frame.f_lasti] = twin
                    return
            open_ = _Open(self._first(function, style, args, operands, frame, traced), shapes,
                          frame.f_code, first if simple else None)
            self._open[key] = open_
            if traced:
                open_.traced = True
                self._traced[(frame.f_code.co_filename, *_position(frame), key[2])] = open_
            elif simple:
                open_.last = args
                self.fast[frame.f_lasti] = open_
        except Exception:               # noqa: BLE001 (a record lost, never the user's call)
            return

    def close(self) -> None:
        """Stop holding the latest arguments of each site (the capture ended)."""
        self.fast.clear()
        self.boundary = None
        for open_ in self._open.values():
            open_.last = ()

    def sites(self) -> tuple[Site, ...]:
        """One :class:`Site` per call site, in the order the sites first ran."""
        from dataclasses import replace

        for repeat in _REPEATS:             # the calls counted in C, to their sites
            repeat.flush()
        return tuple(replace(o.site, count=o.count, variants=len(o.seen))
                     for o in dict.fromkeys(self._open.values()))    # a traced twin once

    # -- the first call of a site --------------------------------------------------

    def _first(self, function, style, args, operands, frame, traced=False) -> Site:
        equation, sublists = None, None
        if style == "einops":
            equation = args[-1]
        elif isinstance(args[0], str):
            equation = args[0]
        else:
            style = "interleaved"
            subs = [_sublist(s) for s in args[1::2]]
            out = _sublist(args[-1]) if len(args) % 2 else None
            sublists = (*subs[:len(operands)], out)
        tracer = self._tracer_class()
        by = "torch.compile" if traced else ""
        if not traced and tracer is not None and any(isinstance(x, tracer) for x in operands):
            traced, by = True, "JAX"
        shapes = tuple(_shape(x) for x in operands)
        dtypes = tuple(_dtype(x) for x in operands)
        ids = [id(x) for x in operands]
        same = tuple(ids.index(i) for i in ids)
        arrays = tuple(None if traced else self._copy(x, shape)
                       for x, shape in zip(operands, shapes))
        code = frame.f_code
        line, column = _position(frame)
        return Site(function, style, equation, sublists, shapes, dtypes, same,
                    _frame_names(frame, operands), arrays, code.co_filename, line, column,
                    getattr(code, "co_qualname", code.co_name), traced,
                    thread=_get_ident() != self.thread, tracer=by)

    def _tracer_class(self):
        if self._tracer is None and sys.modules.get("jax") is not None:
            try:
                from jax.core import Tracer
            except ImportError:         # older or newer JAX layouts, or a broken JAX
                try:
                    from jax._src.core import Tracer
                except ImportError:
                    return None
            self._tracer = Tracer
        return self._tracer

    def _copy(self, x, shape):
        if shape is None:
            try:
                shape = np.shape(x)
            except Exception:           # noqa: BLE001
                return None
        size = int(np.prod(shape, dtype=np.int64))
        if size > self.budget or self.kept + size > 4 * self.budget:
            return None
        try:
            if type(x).__module__.startswith("torch"):
                a = x.detach().cpu().numpy().copy()
            else:
                a = np.array(x, copy=True)
        except Exception:               # noqa: BLE001 (bfloat16 tensors, odd objects)
            return None
        if a.dtype.kind not in "biufc":
            return None
        self.kept += size
        return a


#: The function whose callable expressions (``oe.contract_expression(...)``) are observed too.
_CONTRACT = next(f for f in FUNCTIONS if f.expression)
_EXPRESSION_MODULE, _, _EXPRESSION_CLASS = _CONTRACT.expression.partition(":")
_EXPRESSIONS: dict = {}     # ContractExpression.__call__ -> its stand-in (one, kept)


def _expression_call(original):
    """The stand-in for ``ContractExpression.__call__``: records the call as ``oe.contract``.

    It calls ``original`` first, then, while a capture is active, records the
    expression's equation with the arrays it received, in the innermost capture (an
    expression with constant operands, ``'[ab],bc->ac'``, is not recorded: its
    operands are not all in the call). Outside a capture it only calls through.
    """
    stand_in = _EXPRESSIONS.get(original)
    if stand_in is not None:
        return stand_in

    def __call__(self, *arrays, **kwargs):
        __tracebackhide__ = True            # noqa: F841
        result = original(self, *arrays, **kwargs)
        if _active:
            equation = getattr(self, "contraction", None)
            if equation.__class__ is str and "[" not in equation:
                _active[-1].observe(_CONTRACT.name, _CONTRACT.style, (equation, *arrays),
                                    _getframe(1))
        return result

    functools.update_wrapper(__call__, original)
    _EXPRESSIONS[original] = __call__
    return __call__


def _torch_internal(module) -> bool:
    """Whether ``module`` is torch's private machinery (``torch._numpy``, ``torch._dynamo``, …).

    Its einsum calls are inner ones: ``torch.compile`` running NumPy code as torch
    (``torch._numpy``) or propagating fake tensors calls ``torch.einsum`` for the user's call.

    >>> _torch_internal("torch._numpy._funcs_impl"), _torch_internal("torch.nn.functional")
    (True, False)
    """
    return module.__class__ is str and module.startswith("torch._")


def _position(frame) -> tuple[int, int]:
    """(line, column) where the frame's current call expression starts."""
    if frame.__class__ is _TracedFrame:
        return frame.position
    try:
        line, _, column, _ = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        if line is not None:
            return line, -1 if column is None else column
    except (AttributeError, IndexError):    # pragma: no cover (Python < 3.11)
        pass
    return frame.f_lineno, -1


def _sublist(s) -> tuple | None:
    try:
        return tuple(s)
    except TypeError:
        return None


def _shape(x) -> tuple | None:
    shape = getattr(x, "shape", None)
    if shape is None:
        try:
            return tuple(np.shape(x))
        except Exception:               # noqa: BLE001
            return None
    try:
        return tuple(int(n) for n in shape)
    except TypeError:                   # symbolic sizes
        return None


def _dtype(x) -> str:
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return type(x).__name__
    return str(dtype).removeprefix("torch.")


def _frame_names(frame, operands) -> tuple:
    """A name the frame binds to each operand: a parameter first, else another local."""
    code = frame.f_code
    local = frame.f_locals
    count = code.co_argcount + code.co_kwonlyargcount
    params = [p for p in code.co_varnames[:count] if p != "self"]
    others = [n for n in local if not n.startswith("_") and n not in params]
    names = []
    for x in operands:
        names.append(next((n for n in params + others
                           if n in local and local[n] is x), None))
    return tuple(names)


_active: list = []                  # the recorders of the captures now active, innermost last
@dataclass
class _TracedFrame:
    """What a call traced by ``torch.compile`` (Dynamo) knows of its frame."""

    f_code: Any
    f_lasti: int
    f_globals: dict
    position: tuple[int, int]
    f_locals: dict
    f_back: Any = None


def _traced_call(ctx, recorder: Recorder, function: str, style: str) -> None:
    """Record the einsum Dynamo is tracing (a ``comptime`` callback; never raises).

    The call is placed at the user's frame Dynamo traces (not Dynamo's own code),
    with the fake tensors' shapes; no arrays are kept.
    """
    try:
        tx = ctx._i_will_not_complain_if_bc_breaks_InstructionTranslator()
        args = ctx.get_local("args")._i_will_not_complain_if_bc_breaks_VariableTracker()
        items = list(args.items)
        equation = items[0].as_python_constant()
        from torch._dynamo.comptime import ComptimeVar

        variables = [u for v in items[1:] for u in (v.items if hasattr(v, "items") else [v])]
        operands = [ComptimeVar(v).as_fake() for v in variables]   # torch.einsum(eq, [x, y]) too
        user = tx.parent
        while user is not None and user.f_globals.get("__name__") in _TORCH_DISPATCH:
            user = user.parent
        if user is None or not isinstance(equation, str) or any(
                type(n) is not int for x in operands for n in x.shape):
            return                      # symbolic sizes: reading them would add guards
        inst = user.current_instruction
        summary = user.frame_summary()
        positions = getattr(inst, "positions", None)
        line = getattr(positions, "lineno", None) or summary.lineno
        column = getattr(positions, "col_offset", None)
        frame = _TracedFrame(user.f_code, inst.offset or 0, user.f_globals,
                             (line, -1 if column is None else column),
                             {k: operands[variables.index(v)]
                              for k, v in user.symbolic_locals.items()
                              if any(v is u for u in variables)})
        recorder.observe(function, style, (equation, *operands), frame, traced=True)
    except Exception:                   # noqa: BLE001 (a Dynamo without these internals)
        return


class Capture:
    """A context manager observing einsum calls; ``as`` gives its :class:`Recorder`.

    ``namespace`` (the user's) gets its names bound to einsum functions swapped for
    the wrappers while active and restored on exit (see the module docstring).
    ``budget``: the element budget of one kept array.
    """

    def __init__(self, namespace: dict, budget: int = 1_000_000):
        self.namespace = namespace
        self.budget = budget
        self.recorder: Recorder | None = None
        self._patched: list = []            # (module, attribute, original, wrapper)
        self._switched: dict = {}           # wrapper -> (its func, binding and bind before)
        self._waiting: tuple[str, ...] = ()   # targets not imported (or importing) yet
        self._pending = False               # one of them is importing right now
        self._modules = 0                   # len(sys.modules) when the hook last looked
        self._import = None
        self._hook = None

    def __enter__(self) -> Recorder:
        self.recorder = Recorder(self.budget, _getframe(1))
        _active.append(self.recorder)
        try:
            self._patch_modules()
            self._patch_binders()
            wrappers = {id(w.__wrapped__): w for w in _WRAPPERS.values()}
            for name, value in list(self.namespace.items()):
                wrapper = wrappers.get(id(value))
                if wrapper is not None and wrapper.__wrapped__ is value:
                    self.namespace[name] = wrapper
            self._import = builtins.__import__
            if _ImportHook is not None:       # the same as _importing, in C
                self._hook = _ImportHook(self._import, self._after_import)
                self._hook.set(bool(self._waiting), self._pending, self._modules)
            else:
                self._hook = self._importing  # one bound method, to compare by identity
            builtins.__import__ = self._hook
        except BaseException:
            self._restore()
            raise
        return self.recorder

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False

    def _restore(self) -> None:
        if self._import is not None and builtins.__import__ is self._hook:
            builtins.__import__ = self._import
        for module, attribute, original, wrapper in reversed(self._patched):
            if module.__dict__.get(attribute) is wrapper:
                setattr(module, attribute, original)
        self._patched = []
        for wrapper, (previous, binding, bind) in reversed(self._switched.items()):
            bind(binding)
            wrapper._switch(previous)
        self._switched = {}
        if self.recorder in _active:
            _active.remove(self.recorder)
        if self.recorder is not None:
            self.recorder.close()           # no frame or array kept alive after the run
        if _active:                         # an outer capture still observes
            return
        for name, value in list(self.namespace.items()):
            if value.__class__ is _Einsum and _WRAPPERS.get(value.__wrapped__) is value:
                self.namespace[name] = value.__wrapped__

    def _importing(self, *args, **kwargs):
        module = self._import(*args, **kwargs)
        # cheap when nothing new was imported: torch.einsum runs two import statements a call
        if self._waiting and (self._pending or len(sys.modules) != self._modules):
            self._after_import()
        return module

    def _after_import(self) -> None:
        """After an import that may have brought an awaited module: observe it."""
        self._modules = len(sys.modules)
        if any(name in sys.modules for name in self._waiting):
            try:
                self._patch_modules()
            except Exception:               # noqa: BLE001 (observing must not fail an import)
                pass
        if self._hook.__class__ is _ImportHook:     # tell the C hook what to compare with
            self._hook.set(bool(self._waiting), self._pending, self._modules)

    def _observe(self, wrapper: _Einsum, function) -> None:
        if wrapper not in self._switched:
            front, bind, _ = _observing(wrapper, function.name, function.style)
            recorder = self.recorder
            self._switched[wrapper] = (wrapper.func, bind((recorder.fast, recorder.observe)),
                                       bind)
            wrapper._switch(front)

    def _patch_modules(self) -> None:
        done = {(m.__name__, a) for m, a, _, _ in self._patched}
        waiting = []
        pending = False                     # a waiting module is importing right now
        for function in OBSERVED:
            name, attribute = function.module, function.attribute
            module = sys.modules.get(name)
            if (name, attribute) in done:
                continue
            if module is None or getattr(getattr(module, "__spec__", None), "_initializing",
                                         False):   # not imported, or still importing: later
                waiting.append(name)
                pending = pending or module is not None
                continue
            original = module.__dict__.get(attribute)
            if original is None or not callable(original):
                continue
            if original.__class__ is _Einsum:      # an outer capture's: observe it here
                self._observe(original, function)
                continue
            wrapper = _wrapper(original, name, attribute)
            self._observe(wrapper, function)
            setattr(module, attribute, wrapper)
            self._patched.append((module, attribute, original, wrapper))
        if not self._expressions():
            waiting.append(_EXPRESSION_MODULE)
        if not _register_dynamo(self._patched):
            waiting.append("torch._dynamo")
        for name in waiting[-2:]:
            pending = pending or name in sys.modules    # importing right now
        self._waiting, self._pending = tuple(waiting), pending

    def _patch_binders(self) -> None:
        """Observe the modules imported before the capture that bound an einsum function
        under its own name (``from numpy import einsum``, ``from torch import nn, einsum``
        in a library): their attribute holds the original, which the module attributes
        replaced above do not reach. Swapped for the stand-in while active, as the rest."""
        observed = {id(w.__wrapped__): w for w in self._switched}
        for module, attribute in _binders():
            original = module.__dict__.get(attribute)
            wrapper = observed.get(id(original))
            if wrapper is not None and wrapper.__wrapped__ is original:
                try:
                    setattr(module, attribute, wrapper)
                except Exception:           # noqa: BLE001 (a module refusing it: not observed)
                    continue
                self._patched.append((module, attribute, original, wrapper))

    def _expressions(self) -> bool:
        """Observe ``opt_einsum.contract_expression(...)(*arrays)`` (once opt_einsum is imported).

        ``ContractExpression.__call__`` is swapped for :func:`_expression_call`'s stand-in
        on the class while active; False while the module is not imported yet.
        """
        module = sys.modules.get(_EXPRESSION_MODULE)
        if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
            return False
        cls = getattr(module, _EXPRESSION_CLASS, None)
        original = None if cls is None else cls.__dict__.get("__call__")
        if original is None or original in _EXPRESSIONS.values() or any(
                m is cls for m, _, _, _ in self._patched):
            return True                     # not there, an outer capture's, or done
        stand_in = _expression_call(original)
        cls.__call__ = stand_in
        self._patched.append((cls, "__call__", original, stand_in))
        return True
