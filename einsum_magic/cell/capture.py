"""Observing the run: every einsum call a cell executes, with what it really received.

This module owns the second reading of a cell (the first, from the source, is
:mod:`einsum_magic.cell.calls`). While a :class:`Capture` is active, the einsum functions
of numpy, jax.numpy, torch, opt_einsum (``contract``) and einops, in the modules
already imported or imported while it is active, and every name of the user's
namespace bound to one of them, are replaced by a thin wrapper that calls the
original and records the call. On exit (also on an error or ``KeyboardInterrupt``)
everything is restored exactly: a module attribute or a name is put back only while
it still holds the wrapper, so a name the cell itself rebinds is never clobbered,
and a name the cell bound to a wrapper (``es = np.einsum``) gets the original.

The wrapper passes the call through untouched: same arguments, same result, same
exception (its frame is hidden from IPython's tracebacks). A wrapper that outlives
the capture (a ``functools.partial`` made in the cell) just calls the original.
Only the outermost einsum of a call is recorded (a depth counter: opt_einsum or
einops calling numpy inside is one call), only on the thread that runs the cell, and
only once the call returned (a call that raised is the user's business).

Calls are grouped by *site* (the calling frame's code and line, and the equation):
:meth:`Recorder.sites` gives one :class:`Site` per site in the order they first ran,
with how often each ran and how many different shape signatures it saw. The first
call of a site is the one shown: its equation as received (a string, the interleaved
sublists, an einops pattern), operand shapes and dtypes, which positions hold the
same object, the local (preferably parameter) names bound to the operands in the
calling frame, and copies of its arrays (NumPy) when each has at most ``budget``
elements (and their total stays under four budgets), since the cell may mutate them
later. JAX tracers (under ``jit``/``vmap``) give shapes and dtypes only.

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
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Capture", "Recorder", "Site", "TARGETS", "original_of"]

#: The observed functions: (module, attribute, how the equation is passed).
TARGETS = (
    ("numpy", "einsum", "numpy"),
    ("jax.numpy", "einsum", "numpy"),
    ("torch", "einsum", "numpy"),
    ("opt_einsum", "contract", "numpy"),
    ("einops", "einsum", "einops"),
)
#: Observed functions whose implementation calls no observed function (numpy's einsum calls
#: its C core and tensordot), so their wrapper need not mark the depth: a tight loop's speed.
_LEAVES = {"numpy.einsum"}
#: Distinct shape signatures remembered per site (beyond it, only counted).
_VARIANTS = 8


_active: list = [None]              # the active Recorder (it records its own thread only)
_get_ident = threading.get_ident
_getframe = sys._getframe
_shape_of = operator.attrgetter("shape")
_WRAPPERS: dict[Any, Any] = {}      # original function -> its wrapper (one per original)
_ORIGINALS: dict[int, Any] = {}     # id(wrapper) -> original


def original_of(f):
    """The original einsum behind a wrapper of this module, else ``f`` itself."""
    return _ORIGINALS.get(id(f), f)


def _wrapper(original, function: str, style: str):
    wrapper = _WRAPPERS.get(original)
    if wrapper is not None:
        return wrapper
    leaf = function in _LEAVES

    def einsum(*args, **kwargs):
        __tracebackhide__ = True            # noqa: F841 (IPython hides this frame)
        recorder = _active[0]
        if recorder is None or recorder.depth or recorder.thread != _get_ident():
            return original(*args, **kwargs)
        if leaf:                            # calls no observed function: no depth to keep
            result = original(*args, **kwargs)
        else:
            recorder.depth = 1
            try:
                result = original(*args, **kwargs)
            finally:
                recorder.depth = 0
        frame = _getframe(1)
        site = recorder.fast.get((id(frame.f_code), frame.f_lasti))
        if site is not None and args[0] is site.equation:     # the same call again
            try:                            # unrolled for one and two operands: the speed
                n = len(args)               # of a tight loop (benchmarks/bench_capture.py)
                shapes = ((args[1].shape, args[2].shape) if n == 3 else (args[1].shape,)
                          if n == 2 else tuple(map(_shape_of, args[1:])))
            except AttributeError:
                shapes = None
            site.count += 1
            if shapes != site.shapes:
                site.vary(shapes)
            return result
        recorder.observe(function, style, args, frame)
        return result

    functools.update_wrapper(einsum, original)
    del einsum.__wrapped__                  # inspect.signature reads the original's anyway
    _WRAPPERS[original] = einsum
    _ORIGINALS[id(einsum)] = original
    return einsum


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
    shape signatures it saw (counted up to a few).
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


class _Open:
    """A site while the capture runs (mutable: its count and shape variants grow)."""

    __slots__ = ("site", "shapes", "count", "seen", "code", "equation")

    def __init__(self, site: Site, raw_shapes, code, equation):
        self.site = site
        self.code = code                    # keeps id(code) in the site's key valid
        self.equation = equation            # the string of a numpy-style call (fast path)
        self.shapes = raw_shapes
        self.count = 1
        self.seen = [raw_shapes]

    def vary(self, shapes) -> None:
        if len(self.seen) < _VARIANTS and shapes not in self.seen:
            self.seen.append(shapes)


class Recorder:
    """The einsum calls of one capture, grouped by site (see the module docstring)."""

    def __init__(self, budget: int = 1_000_000):
        self.budget = budget
        self.kept = 0                       # elements copied so far
        self.thread = threading.get_ident()
        self.depth = 0                      # >0 while an observed einsum runs
        self._open: dict = {}               # (id(code), instruction, equation) -> _Open
        self.fast: dict = {}                # (id(code), instruction) -> its first string site
        self._tracer = None

    def observe(self, function: str, style: str, args: tuple, frame) -> None:
        """Record one outermost call (never raises: observing must not fail the cell)."""
        try:
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
                open_.count += 1
                if shapes != open_.shapes:
                    open_.vary(shapes)
                return
            simple = style == "numpy" and first.__class__ is str and len(args) - 1 == len(operands)
            open_ = _Open(self._first(function, style, args, operands, frame), shapes,
                          frame.f_code, first if simple else None)
            self._open[key] = open_
            if simple:
                self.fast.setdefault(key[:2], open_)
        except Exception:               # noqa: BLE001 (a record lost, never the user's call)
            return

    def sites(self) -> tuple[Site, ...]:
        """One :class:`Site` per call site, in the order the sites first ran."""
        from dataclasses import replace

        return tuple(replace(o.site, count=o.count, variants=len(o.seen))
                     for o in self._open.values())

    # -- the first call of a site --------------------------------------------------

    def _first(self, function, style, args, operands, frame) -> Site:
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
        traced = tracer is not None and any(isinstance(x, tracer) for x in operands)
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
                    getattr(code, "co_qualname", code.co_name), traced)

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


def _position(frame) -> tuple[int, int]:
    """(line, column) where the frame's current call expression starts."""
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


class Capture:
    """A context manager observing einsum calls; ``as`` gives its :class:`Recorder`.

    ``namespace`` (the user's) gets its names bound to einsum functions swapped for
    the wrappers while active and restored on exit (see the module docstring).
    ``budget``: the element budget of one kept array.
    """

    def __init__(self, namespace: dict, budget: int = 1_000_000):
        self.namespace = namespace
        self.recorder = Recorder(budget)
        self._patched: list = []            # (module, attribute, original, wrapper)
        self._waiting: tuple[str, ...] = ()   # targets not imported (or importing) yet
        self._previous = None
        self._import = None
        self._hook = None

    def __enter__(self) -> Recorder:
        self._previous = _active[0]
        try:
            self._patch_modules()
            originals = {id(o): o for _, _, o, _ in self._patched}
            originals.update((id(o), o) for o in _WRAPPERS)
            for name, value in list(self.namespace.items()):
                if id(value) in originals and originals[id(value)] is value:
                    self.namespace[name] = _WRAPPERS[value]
            self._import = builtins.__import__
            self._hook = self._importing      # one bound method, to compare by identity
            builtins.__import__ = self._hook
            _active[0] = self.recorder
        except BaseException:
            self._restore()
            raise
        return self.recorder

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False

    def _restore(self) -> None:
        _active[0] = self._previous
        if self._import is not None and builtins.__import__ is self._hook:
            builtins.__import__ = self._import
        for module, attribute, original, wrapper in reversed(self._patched):
            if module.__dict__.get(attribute) is wrapper:
                setattr(module, attribute, original)
        self._patched = []
        if self._previous is not None:   # an outer capture still observes
            return
        for name, value in list(self.namespace.items()):
            if callable(value) and id(value) in _ORIGINALS and _WRAPPERS.get(
                    _ORIGINALS[id(value)]) is value:
                self.namespace[name] = _ORIGINALS[id(value)]

    def _importing(self, *args, **kwargs):
        module = self._import(*args, **kwargs)
        if any(name in sys.modules for name in self._waiting):
            try:
                self._patch_modules()
            except Exception:               # noqa: BLE001 (observing must not fail an import)
                pass
        return module

    def _patch_modules(self) -> None:
        done = {(m.__name__, a) for m, a, _, _ in self._patched}
        waiting = []
        for name, attribute, style in TARGETS:
            module = sys.modules.get(name)
            if (name, attribute) in done:
                continue
            if module is None:
                waiting.append(name)
                continue
            spec = getattr(module, "__spec__", None)
            if getattr(spec, "_initializing", False):   # still importing: patch it later
                waiting.append(name)
                continue
            original = module.__dict__.get(attribute)
            if original is None or not callable(original) or id(original) in _ORIGINALS:
                continue
            wrapper = _wrapper(original, f"{name}.{attribute}", style)
            setattr(module, attribute, wrapper)
            self._patched.append((module, attribute, original, wrapper))
        self._waiting = tuple(waiting)
