"""The NumPy recorder: every NumPy operation of the run on boxed arrays.

This module owns the arrow *a NumPy run → nodes of the record*
(:class:`~einsum_magic.chain.record.Recording`). NumPy has no mode to observe calls, so
the arrays the cell computes with are *boxed*: a :class:`Boxed` is an ``ndarray``
subclass that wraps one plain array (a view of the same memory), whose
``__array_ufunc__`` / ``__array_function__`` and routed methods call NumPy on the plain
arrays, record the call, and box the results. So the record follows the data, also
inside the user's functions and classes.

What becomes what:

* **Boxed before the run**: every plain ``ndarray`` the user's namespace holds, directly,
  in the lists and dicts it holds, or as an attribute of an instance of a class the
  notebook defines (``__main__``), up to :data:`DEPTH` levels deep (``model.layers[0].W``).
  Lists, dicts and objects are changed in place and given back their own arrays after the
  run. IPython's output cache (``_``, ``_5``, ``Out``) is not boxed, nor are arrays inside
  tuples, deeper, in closures, in module attributes or in objects of libraries: they
  enter the record as leaves when a boxed array meets them.
* **Boxed during the run**: every result of an observed call; and the arrays that the
  creation functions called *from the cell's own code* return (``np.array``, ``np.asarray``,
  ``np.zeros``, ``np.ones``, ``np.empty``, ``np.full``, ``np.arange``, ``np.linspace``,
  ``np.eye``, ``np.identity`` and the legacy ``np.random`` functions ``rand``, ``randn``,
  ``random``, ``random_sample``, ``normal``, ``uniform``, ``randint``, ``standard_normal``,
  ``choice``, ``permutation``), which are patched while the run lasts and restored
  after it, also on an error or an interrupt. Their results are leaves: a random draw is
  the run's value, never drawn again. Draws of a ``np.random.Generator`` are not boxed
  (a C type cannot be patched): they become leaves when they meet a boxed array, and an
  in-place change made to them *before* that is not seen.
* ``opt_einsum.contract`` and ``einops.einsum`` (when imported) are one node each, called on
  the plain arrays (their insides are not recorded).
* A call with a floating recorded input and a floating result is a node (``op``:
  ``numpy.matmul``, ``numpy.add``, ``numpy.add.at``, ``numpy.einsum``,
  ``numpy.ndarray.mean``, ``numpy.ndarray.__getitem__``, ``numpy.ndarray.T``); results of
  :data:`CONSTANT` calls (``argmax``, ``floor``, ``zeros_like``, …) and non-floating
  results are constant leaves.
* In-place operations are nodes whose target gets a new version: ``out=``, ``+=`` and the
  other augmented operators, ``x[k] = v``, ``x.fill(v)``, ``np.add.at``, ``np.copyto``;
  before one runs, every recorded value sharing the target's memory that a node used is
  copied (:meth:`Recording.before_inplace`). Every other recorded array sharing that
  memory (a view ``a = X[:, :2]`` and its base ``X``) gets a new version too, from a node
  without a rule (:data:`WRITE_THROUGH`): a gradient that crosses such a change is "not
  derived", never derived as if the change had not happened. An augmented operator on a
  boxed scalar rebinds, as it does on a NumPy scalar.
* A result that NumPy gives as a scalar (``x.sum()``) is boxed as a 0-d array during the
  run and given back as the very scalar NumPy returned.
* **Unboxed after the run** (also on an error or an interrupt): every boxed array left in
  the namespace, directly, in its lists, tuples (rebuilt) and dicts, or as an attribute of
  an instance of a class the notebook defines, up to :data:`DEPTH` levels deep (the same
  walk; ``Out`` and IPython's displayhook cache too), is replaced by its plain array: the
  user's own array object for an array from before the cell, NumPy's own result otherwise.
  A boxed array kept elsewhere (deeper, in a closure, in a library's object) stays a
  :class:`Boxed`, which behaves as a plain array once no recording is active (its
  results are plain).
* **Released when the record stops** (a long loop, the budget), during the run: the
  namespace is unboxed as above and the creation functions are NumPy's own again at the
  next observed call, so that the rest of a long loop at the cell's top level runs on
  plain arrays; a box the release cannot reach (a function's local) passes each call
  straight to NumPy (about a µs a call, benchmarks/bench_record.py). While the record
  runs, the objects from before the cell sit out the garbage collector's passes
  (``gc.freeze``), given back when it stops or the cell ends.
* A result whose box the run no longer holds (``W.T`` of an earlier step of a loop) gets
  no new version when its memory is written (:meth:`NumpyRecorder._write_through`): it can
  never be read again.

Not seen: a change made to an array's memory by code that bypasses NumPy's dispatch
(``np.random.shuffle``, a C extension writing into the buffer); the check's fidelity gate
then names the first step it cannot reproduce. JAX arrays the cell computes are not
recorded here (:mod:`~einsum_magic.chain.recorders.jax` does, where it can): without it,
a cell that leaves one in its namespace stops the record with one line saying so (its
NumPy part would be cut off where it crosses JAX).
"""

from __future__ import annotations

import re
import sys
from weakref import ref as _weakref

import numpy as np

from ..names import READERS
from ..record import Recorder, Recording, Ref, cell_line

__all__ = ["Boxed", "NumpyRecorder", "describe", "op_name", "CONSTANT", "CREATION",
           "WRITE_THROUGH"]

READERS.setdefault("numpy", ("{}", np.asarray))

#: Calls whose results are constants of the backward although a floating array went in.
CONSTANT = frozenset({
    "numpy.argmax", "numpy.argmin", "numpy.ndarray.argmax", "numpy.ndarray.argmin",
    "numpy.argsort", "numpy.ndarray.argsort", "numpy.floor", "numpy.ceil", "numpy.rint",
    "numpy.trunc", "numpy.round", "numpy.around", "numpy.ndarray.round", "numpy.sign",
    "numpy.zeros_like", "numpy.ones_like", "numpy.empty_like", "numpy.full_like",
    "numpy.heaviside", "numpy.isnan", "numpy.isfinite", "numpy.isinf",
})

#: Creation functions patched during the run: (module, names). Their results are leaves.
CREATION = (
    ("numpy", ("array", "asarray", "zeros", "ones", "empty", "full", "arange", "linspace",
               "eye", "identity")),
    ("numpy.random", ("rand", "randn", "random", "random_sample", "normal", "uniform",
                      "randint", "standard_normal", "choice", "permutation")),
)

#: Library einsums recorded as one call (their insides, ``np.tensordot`` and transposes,
#: are not): (module, attribute, op).
LIBRARIES = (("opt_einsum", "contract", "opt_einsum.contract"),
             ("einops", "einsum", "einops.einsum"))

#: ndarray methods routed through the record (their NumPy implementation is called on
#: the plain array). ``fill``, ``sort`` and ``put`` change the array in place.
METHODS = ("sum", "mean", "max", "min", "argmax", "argmin", "argsort", "prod", "std", "var",
           "reshape", "transpose", "swapaxes", "ravel", "flatten", "squeeze", "clip", "dot",
           "round", "astype", "copy", "cumsum", "cumprod", "repeat", "take", "diagonal",
           "trace", "conj", "all", "any", "nonzero", "view", "__getitem__", "__setitem__",
           "fill", "sort", "put")
INPLACE_METHODS = frozenset({"__setitem__", "fill", "sort", "put"})
#: array functions that change their first argument in place
INPLACE_FUNCTIONS = frozenset({"copyto", "put", "place", "fill_diagonal", "put_along_axis",
                               "putmask"})

_active: list = [None]           # the active NumpyRecorder

#: The op of a change an in-place write made to another view of the same memory.
WRITE_THROUGH = "numpy.ndarray.(written through another view)"


_DTYPES: dict = {}


def _dtype(dt) -> tuple[str, bool]:
    known = _DTYPES.get(dt)
    if known is None:
        known = _DTYPES[dt] = (str(dt), dt.kind in "fc")
    return known


def describe(a):
    """(shape, dtype, floating, nbytes, memory key) of a plain array or NumPy scalar."""
    if isinstance(a, np.ndarray):
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        key = id(root) if root.base is None else id(root.base)
        name, floating = _dtype(a.dtype)
        return a.shape, name, floating, a.nbytes, key
    dtype = a.dtype if isinstance(a, np.generic) else np.asarray(a).dtype
    name, floating = _dtype(dtype)
    return (), name, floating, dtype.itemsize, id(a)


def op_name(func) -> str:
    """NumPy's own public name of an array function.

    >>> op_name(np.sum), op_name(np.linalg.inv), op_name(np.einsum)
    ('numpy.sum', 'numpy.linalg.inv', 'numpy.einsum')
    """
    name = getattr(func, "__name__", "?")
    if getattr(np, name, None) is func:
        return f"numpy.{name}"
    for sub in ("linalg", "fft", "random"):
        if getattr(getattr(np, sub), name, None) is func:
            return f"numpy.{sub}.{name}"
    module = getattr(func, "__module__", "") or "numpy"
    return f"{module}.{name}"


# -- boxing --------------------------------------------------------------------------------


class Boxed(np.ndarray):
    """An array of the run the record follows (see the module doc); ``_em`` its plain value."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        __tracebackhide__ = True            # noqa: F841 (IPython hides this frame)
        if _stopped():                  # the record stopped: plain NumPy, nothing else
            return getattr(ufunc, method)(*_plain_args(inputs), **_plain_kwargs(kwargs))
        op = _UFUNC_OPS.get((ufunc, method))
        if op is None:
            op = _UFUNC_OPS[(ufunc, method)] = (f"numpy.{ufunc.__name__}" + (
                "" if method == "__call__" else f".{method}"))
        return _call(op, getattr(ufunc, method), inputs, kwargs, ufunc_method=method)

    def __array_function__(self, func, types, args, kwargs):
        __tracebackhide__ = True            # noqa: F841
        if _stopped():
            return func(*_plain_args(args), **_plain_kwargs(kwargs))
        op = _FUNCTION_OPS.get(func)
        if op is None:
            op = _FUNCTION_OPS[func] = op_name(func)
        return _call(op, func, args, kwargs)

    def __repr__(self):
        return repr(_plain(self))

    def __str__(self):
        return str(_plain(self))

    def __format__(self, spec):
        return format(_plain(self), spec)

    def __iter__(self):
        for k in range(len(self)):
            yield self[k]

    def __reduce_ex__(self, protocol):
        return np.asarray(_plain(self)).__reduce_ex__(protocol)

    # a Python number leaves the record: noted (Recording.escaped), then NumPy's own answer
    def __float__(self):
        _left(self, "float()")
        return float(_plain(self))

    def __complex__(self):
        _left(self, "complex()")
        return complex(_plain(self))

    def __int__(self):
        _left(self, "int()")
        return int(_plain(self))

    def item(self, *args):
        _left(self, "item()")
        return _plain(self).item(*args)

    def tolist(self):
        _left(self, "tolist()")
        return _plain(self).tolist()

    @property
    def T(self):
        return _call("numpy.ndarray.T", _transpose, (self,), {})

    @property
    def mT(self):
        return _call("numpy.ndarray.mT", _matrix_transpose, (self,), {})


def _transpose(a):
    return a.T


def _matrix_transpose(a):
    return np.swapaxes(a, -1, -2)


_transpose.__name__, _matrix_transpose.__name__ = "T", "mT"


def _method(name):
    target = getattr(np.ndarray, name)
    op = f"numpy.ndarray.{name}"
    inplace = name in INPLACE_METHODS

    def method(self, *args, **kwargs):
        __tracebackhide__ = True            # noqa: F841
        return _call(op, target, (self, *args), kwargs, inplace_first=inplace)

    method.__name__ = name
    return method


for _name in METHODS:
    setattr(Boxed, _name, _method(_name))


def _left(box, how: str) -> None:
    """``box`` becomes a Python number (``how``): the record notes where (never fails the cell)."""
    recorder = _active[0]
    if recorder is None or recorder.rec.stopped:
        return
    try:
        rec = recorder.rec
        line, where = cell_line(rec.namespace, 1)
        rec.escape(_plain(box), how, line, where)
    except Exception:  # noqa: BLE001 - noting never fails the user's cell
        pass


def _plain(x):
    """The plain value a boxed array stands for (an ndarray or a NumPy scalar)."""
    p = getattr(x, "_em", None)
    if p is None:                       # a view NumPy made without asking (rare): its own
        p = np.ndarray.view(x, np.ndarray)
        try:
            x._em = p
        except AttributeError:
            pass
    return p


def box(p):
    """A :class:`Boxed` standing for the plain array or NumPy scalar ``p``."""
    if isinstance(p, np.ndarray):
        b = p.view(Boxed)
    else:
        b = np.asarray(p).view(Boxed)
    b._em = p
    return b


def _unboxed(x):
    return _plain(x) if isinstance(x, Boxed) else x


# -- one observed call ----------------------------------------------------------------------


_UFUNC_OPS: dict = {}             # (ufunc, method) → op
_FUNCTION_OPS: dict = {}          # array function → op


def _refs_in(obj, rec, ids, describe):
    """``obj`` (an argument) with every boxed and plain array replaced by its :class:`Ref`
    (a new leaf where the record has not met it); their ids appended to ``ids``."""
    t = type(obj)
    if t is Boxed:
        p = _plain(obj)
    elif t is tuple or t is list:
        return t([_refs_in(o, rec, ids, describe) for o in obj])
    elif t is dict:
        return {k: _refs_in(v, rec, ids, describe) for k, v in obj.items()}
    elif isinstance(obj, (np.ndarray, np.floating)):
        p = _plain(obj) if isinstance(obj, Boxed) else obj
    else:
        return obj
    ref = rec.ref_of(p, "numpy", describe)
    ids.append(ref.id)
    return ref


def _plain_only(obj):
    t = type(obj)
    if t is Boxed:
        return _plain(obj)
    if t is tuple or t is list:
        return t([_plain_only(o) for o in obj])
    if t is dict:
        return {k: _plain_only(v) for k, v in obj.items()}
    if isinstance(obj, Boxed):
        return _plain(obj)
    return obj


def _plain_args(args) -> list:
    """The positional arguments of a call with every boxed array plain (one level flat)."""
    out = []
    for o in args:
        t = type(o)
        if t is Boxed:
            o = _plain(o)
        elif t is tuple or t is list or t is dict or isinstance(o, Boxed):
            o = _plain_only(o)
        out.append(o)
    return out


def _plain_kwargs(kwargs) -> dict:
    return {k: _plain_only(v) for k, v in kwargs.items()} if kwargs else {}


def _results(result, out: list) -> None:
    if isinstance(result, (np.ndarray, np.generic)):
        out.append(result)
    elif type(result) in (tuple, list) or (isinstance(result, tuple)
                                           and hasattr(result, "_fields")):   # np.linalg's
        for r in result:
            _results(r, out)


def _boxed_result(result, target=None, target_box=None):
    if target is not None and result is target:
        return target_box
    if isinstance(result, (np.ndarray, np.generic)):
        return box(result)
    if type(result) in (tuple, list):
        return type(result)(_boxed_result(r, target, target_box) for r in result)
    if hasattr(result, "_fields") and isinstance(result, tuple):     # namedtuples (np.linalg)
        return type(result)(*(_boxed_result(r, target, target_box) for r in result))
    return result


def _stopped() -> bool:
    """Whether no record is running; the first time after one stopped, the namespace gets
    its plain arrays back at once (:meth:`NumpyRecorder.release`)."""
    recorder = _active[0]
    if recorder is None:
        return True
    if recorder.rec.stopped:
        if not recorder.released:
            recorder.release()
        return True
    return False


def _call(op, func, args, kwargs, *, ufunc_method=None, inplace_first=False):
    """Call ``func`` on the plain arrays, record the call, box the results."""
    __tracebackhide__ = True                # noqa: F841
    recorder = _active[0]
    if recorder is None or recorder.rec.stopped:
        if recorder is not None and not recorder.released:
            recorder.release()
        return func(*_plain_args(args), **_plain_kwargs(kwargs))
    rec = recorder.rec
    # the in-place target (a boxed array the call writes into)
    target_box = None
    out = kwargs.get("out") if kwargs else None
    if out is not None:
        outs = out if isinstance(out, tuple) else (out,)
        target_box = next((o for o in outs if isinstance(o, Boxed)), None)
        if target_box is not None and not isinstance(_plain(target_box), np.ndarray):
            # ``s += 1`` on a boxed scalar: a scalar is immutable, the name is rebound
            kwargs = {k: v for k, v in kwargs.items() if k != "out"}
            target_box = None
    elif inplace_first or ufunc_method == "at" or (
            ufunc_method is None and op.rsplit(".", 1)[-1] in INPLACE_FUNCTIONS):
        target_box = args[0] if isinstance(args[0], Boxed) else None
    target = _plain(target_box) if target_box is not None else None
    if target is not None:
        try:
            # a call that reads its target (``V *= 2``, ``W[:] = 0``) reads its version
            # before: met now (an input no node read yet) and kept as it is
            reading = (rec.refs_of([target], "numpy", describe)[0].id,) \
                if args and args[0] is target_box else ()
            rec.before_inplace(rec.ids_of_memory(describe(target)[4]), np.copy, reading)
        except Exception as e:  # noqa: BLE001 - never fail the user's cell
            rec.stop(f"the record failed before {op}: {type(e).__name__}: {e}")
    result = func(*_plain_args(args), **_plain_kwargs(kwargs))
    try:
        return recorder.record(op, func, args, kwargs, result, target, target_box)
    except Exception as e:  # noqa: BLE001 - never fail the user's cell
        rec.stop(f"the record failed at {op}: {type(e).__name__}: {e}")
        return _boxed_result(result, target, target_box) if not rec.stopped else result


class NumpyRecorder(Recorder):
    """Boxes the namespace's arrays, patches creation functions, records; a context manager."""

    def __init__(self, rec: Recording):
        self.rec = rec
        self.namespace = rec.namespace
        self._patched: list = []
        self._previous = None
        self.released = False
        self._by_memory: dict = {}          # memory key → {id: plain array} the record met
        self._boxes_of: dict = {}           # id(plain result) → weakref of its box

    # -- recording one call --------------------------------------------------------------

    def _describe(self, a):
        """:func:`describe`, and the array noted under its memory (for :meth:`_write_through`):
        the record calls it once for each new value, a leaf or a result."""
        d = describe(a)
        if type(a) is np.ndarray or isinstance(a, np.ndarray):
            self._by_memory.setdefault(d[4], {})[id(a)] = a
        return d

    def record(self, op, func, args, kwargs, result, target, target_box):
        rec = self.rec
        ids: list[int] = []
        describe_ = self._describe
        ref_args = _refs_in(args if type(args) is tuple else tuple(args), rec, ids, describe_)
        ref_kwargs = _refs_in(dict(kwargs), rec, ids, describe_) if kwargs else {}
        if target is not None:
            outs = [target]
        elif type(result) is np.ndarray:
            outs = [result]
        else:
            outs = []
            _results(result, outs)
        if not outs:
            return result
        if rec.stopped:
            return _boxed_result(result, target, target_box)
        info = rec.info
        floating_in = any([info[v].floating for v in ids])
        floating_out = any([_dtype(o.dtype)[1] for o in outs])
        if not ids:
            rec.leaf(outs, "numpy", describe_)
        elif not (floating_in and floating_out) or op in CONSTANT:
            rec.leaf(outs, "numpy", describe_, constant=True,
                     why=op if op in CONSTANT else "")
        else:
            # the record is functional: ``out=`` is dropped, and the call is in place only
            # when it writes into its first argument (``a += b``, ``a[k] = v``)
            refs = tuple(ids)
            if "out" in ref_kwargs:
                del ref_kwargs["out"]
                refs = None                 # the node reads what is left: counted again
            inplace = target is not None and len(args) > 0 and args[0] is target_box
            line, where = cell_line(rec.namespace, 1)
            rec.record("numpy", op, func, ref_args, ref_kwargs, outs, describe_,
                       inplace=inplace, line=line, where=where, refs=refs)
        if target is not None:
            self._write_through(target)
            # what the call itself returns: the target for ``out=`` and ``a += b``, None for
            # ``a.fill(0)``, ``a[k] = v``, ``np.add.at`` (a cell ending on one shows no Out)
            return _boxed_result(result, target, target_box)
        if type(result) is np.ndarray:
            b = box(result)
            self._boxes_of[id(result)] = _weakref(b)
            return b
        return _boxed_result(result)

    def _write_through(self, target) -> None:
        """Other recorded arrays sharing ``target``'s memory (views, bases) changed too: each
        gets a new version from a node without a rule (:data:`WRITE_THROUGH`), so that no
        gradient crossing that change is ever derived as if it had not happened.

        A result whose box the run no longer holds (``W.T`` of an earlier step of a loop)
        can never be read again: it gets no new version (else each step of a loop that
        updates ``W`` in place would write through every earlier step's ``W.T``)."""
        rec = self.rec
        boxes_of = self._boxes_of
        for obj in list(self._by_memory.get(describe(target)[4], {}).values()):
            if obj is target or rec.stopped:
                continue
            alive = boxes_of.get(id(obj))
            if alive is not None and alive() is None:
                continue
            if not np.may_share_memory(obj, target):
                continue
            old = rec.current(obj)
            if old is None:
                continue
            new = rec.current(target)
            line, where = cell_line(rec.namespace, 1)
            rec.record("numpy", WRITE_THROUGH, None, (Ref(old), Ref(new)), {}, [obj],
                       self._describe, inplace=True, line=line, where=where, refs=(old, new))

    # -- entering and leaving ------------------------------------------------------------

    def _start(self) -> None:
        self._previous = _active[0]
        self._boxes: dict[int, Boxed] = {}
        self._frozen = False
        self._box_namespace()
        self._patch()
        self._freeze()
        _active[0] = self

    def release(self) -> None:
        """The record stopped (a long loop, the budget): put back the creation functions and
        the namespace's plain arrays now, so that the rest of the run costs what it would
        without the magic; arrays the code still holds in locals pass calls straight
        through. :meth:`__exit__` does the rest, as always."""
        if self.released:
            return
        self.released = True
        self._thaw()
        for module, name, original in reversed(self._patched):
            setattr(module, name, original)
        self._patched = []
        try:
            _unbox_namespace(self.namespace, self._before)
        except Exception:  # noqa: BLE001 - __exit__ unboxes again and says what failed
            pass

    def _freeze(self) -> None:
        """While the record runs, the objects from before the cell sit out the garbage
        collector's passes (``gc.freeze``): the record allocates many small objects, and each
        pass of the oldest generation would walk every object of the process (JAX's,
        torch's) for nothing. Given back (``gc.unfreeze``) as soon as the record stops, the
        cell ends, or a full collection starts (``gc.collect()`` in the cell, to free a
        deleted model's memory, collects what it would without the magic); never when
        something else froze objects already, or the collector is off."""
        import gc

        self._gc_hook = None
        if gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()
            self._frozen = True
            recorder = _weakref(self)       # no cycle: the record and its arrays go with
                                            # their last reference, not at the next gc pass

            def thaw():
                r = recorder()
                if r is not None:
                    r._thaw()

            def before_full_collection(phase, info):
                if phase == "start" and info.get("generation") == 2:
                    thaw()

            self.rec.on_stop(thaw)
            self._gc_hook = before_full_collection
            gc.callbacks.append(before_full_collection)

    def _thaw(self) -> None:
        if getattr(self, "_frozen", False):
            import gc

            self._frozen = False
            gc.unfreeze()

    def _exit(self) -> None:
        self._thaw()
        hook = getattr(self, "_gc_hook", None)
        if hook is not None:
            import gc

            self._gc_hook = None
            try:
                gc.callbacks.remove(hook)
            except ValueError:
                pass
        _active[0] = self._previous
        for module, name, original in reversed(self._patched):
            setattr(module, name, original)
        self._patched = []
        try:
            jax_found = _unbox_namespace(self.namespace, self._before)
        except Exception as e:  # noqa: BLE001 - the namespace is the user's: say, never raise
            self.rec.stop(f"unboxing the namespace failed: {type(e).__name__}: {e}")
            return
        if jax_found and not self.rec.stopped and "jax" not in self.rec.observed:
            self.rec.stop(f"JAX operations are not recorded ({jax_found} is a JAX array the "
                          f"cell computed): the cell's backward would be cut where it "
                          f"crosses JAX")

    def _boxed(self, p):
        b = self._boxes.get(id(p))
        if b is None:
            b = self._boxes[id(p)] = box(p)
        return b

    def _box_namespace(self) -> None:
        ns = self.namespace
        self._before = {k: id(v) for k, v in ns.items()}
        seen: set = set()
        for key, value in list(ns.items()):
            if key in _HISTORY or _OUTPUT.fullmatch(key):
                continue          # IPython's output cache: the displayhook compares by identity
            if type(value) is np.ndarray:
                ns[key] = self._boxed(value)
            else:
                _walk(value, self._box_in, DEPTH, seen)

    def _box_in(self, v):
        return self._boxed(v) if type(v) is np.ndarray else v

    def _patch(self) -> None:
        namespace = self.namespace
        for module_name, name, op in LIBRARIES:
            module = sys.modules.get(module_name)
            original = module.__dict__.get(name) if module is not None else None
            if original is not None:
                self._patched.append((module, name, original))
                setattr(module, name, _library(original, op))
        for module_name, names in CREATION:
            module = sys.modules.get(module_name)
            if module is None:
                continue
            for name in names:
                original = module.__dict__.get(name)
                if original is None:
                    continue
                self._patched.append((module, name, original))
                setattr(module, name, _creation(original, f"{module_name}.{name}", namespace))


_LIBRARY_WRAPPERS: dict = {}


def _library(original, op):
    """``original`` (a library's einsum) recorded as one call when it gets a boxed array."""
    wrapper = _LIBRARY_WRAPPERS.get(original)
    if wrapper is not None:
        return wrapper

    def library_einsum(*args, **kwargs):
        if _active[0] is None or not any(isinstance(a, Boxed) for a in args):
            return original(*args, **kwargs)
        return _call(op, original, args, kwargs)

    library_einsum.__name__ = getattr(original, "__name__", op)
    library_einsum.__doc__ = getattr(original, "__doc__", None)
    library_einsum.__wrapped__ = original
    _LIBRARY_WRAPPERS[original] = library_einsum
    return library_einsum


def _creation(original, op, namespace):
    def create(*args, **kwargs):
        if _active[0] is None or sys._getframe(1).f_globals is not namespace:
            return original(*args, **kwargs)
        if any(isinstance(a, Boxed) for a in args) or any(isinstance(v, Boxed)
                                                         for v in kwargs.values()):
            if op == "numpy.asarray" and len(args) == 1 and not kwargs:
                return args[0]                    # the same array, as NumPy gives it
            return _call(op, original, args, kwargs)
        result = original(*args, **kwargs)
        if type(result) is np.ndarray:
            recorder = _active[0]
            try:
                recorder.rec.leaf([result], "numpy", recorder._describe)
            except Exception as e:  # noqa: BLE001 - never fail the user's cell
                recorder.rec.stop(f"the record failed at {op}: {type(e).__name__}: {e}")
                return result
            return box(result)
        return result

    create.__name__ = getattr(original, "__name__", op)
    create.__doc__ = getattr(original, "__doc__", None)
    create.__wrapped__ = original
    return create


def _simple_object(value) -> bool:
    """An instance of a class the notebook itself defines (``__main__``): its attributes are
    walked. Objects of libraries (pandas, torch modules, …) are never walked into."""
    if isinstance(value, type) or getattr(type(value), "__module__", "") != "__main__":
        return False
    try:
        vars(value)
    except TypeError:
        return False
    return True


#: How deep the walks before and after the run go into lists, dicts, tuples (after the
#: run) and the attributes of the user's objects.
DEPTH = 3
_HISTORY = frozenset({"In", "_ih", "_dh", "_oh", "Out"})
_TEXT_HISTORY = frozenset({"In", "_ih", "_dh"})
_OUTPUT = re.compile(r"_+|_\d+|_i+|_i\d+")


def _walk(value, fn, depth: int, seen: set):
    """Apply ``fn`` to every item of ``value``'s lists, dicts and simple objects, ``depth``
    levels deep, in place; returns a rebuilt tuple where a tuple's item changed."""
    if depth <= 0 or id(value) in seen:
        return value
    seen.add(id(value))
    if type(value) is list:
        for k, v in enumerate(value):
            new = fn(v)
            if new is v:
                new = _walk(v, fn, depth - 1, seen)
            if new is not v:
                value[k] = new
    elif type(value) is dict:
        for k, v in list(value.items()):
            new = fn(v)
            if new is v:
                new = _walk(v, fn, depth - 1, seen)
            if new is not v:
                value[k] = new
    elif isinstance(value, tuple):
        items = []
        for v in value:
            new = fn(v)
            if new is v:
                new = _walk(v, fn, depth - 1, seen)
            items.append(new)
        if any(a is not b for a, b in zip(items, value)) and fn is _unboxed:
            try:
                return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
            except Exception:  # noqa: BLE001 - an odd tuple subclass: a plain tuple
                return tuple(items)
    elif _simple_object(value):
        for k, v in list(vars(value).items()):
            new = fn(v)
            if new is v:
                new = _walk(v, fn, depth - 1, seen)
            if new is not v:
                try:
                    setattr(value, k, new)
                except Exception:  # noqa: BLE001 - a read-only attribute: left as it is
                    pass
    return value


def _unbox_displayhook(ns: dict) -> None:
    """IPython's displayhook caches the last results (``_``, ``__``, ``___``, and the hidden
    namespace it compares them with): plain again."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or getattr(shell, "user_ns", None) is not ns:
        return
    hook = getattr(shell, "displayhook", None)
    for attr in ("_", "__", "___"):
        value = getattr(hook, attr, None)
        if isinstance(value, Boxed):
            setattr(hook, attr, _plain(value))
    hidden = getattr(shell, "user_ns_hidden", None)      # what the displayhook pushed, kept
    if type(hidden) is dict:                              # to compare by identity
        for key, value in list(hidden.items()):
            if isinstance(value, Boxed):
                hidden[key] = _plain(value)


def _unbox_namespace(ns: dict, before: dict) -> str:
    """Replace every boxed array (see the module doc); the name of a new JAX array, or ''."""
    jax_array = None
    if "jax" in sys.modules:
        try:
            jax_array = sys.modules["jax"].Array
        except AttributeError:
            jax_array = None
    found = ""
    seen: set = set()
    _unbox_displayhook(ns)
    for key, value in list(ns.items()):
        if isinstance(value, Boxed):
            ns[key] = _plain(value)
        elif key in _TEXT_HISTORY:
            continue                    # the cells' text (In, _ih) and directories (_dh)
        else:
            new = _walk(value, _unboxed, DEPTH, seen)
            if new is not value:
                ns[key] = new
        if (jax_array is not None and not found and not key.startswith("_")
                and isinstance(ns.get(key), jax_array) and before.get(key) != id(ns[key])):
            found = key
    return found
