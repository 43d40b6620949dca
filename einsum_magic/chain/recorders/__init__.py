"""One recorder per framework: each observes the run and writes a :class:`~einsum_magic.chain.record.Recording`.

* :mod:`~einsum_magic.chain.recorders.torch`: ``torch.overrides.TorchFunctionMode``.
* :mod:`~einsum_magic.chain.recorders.numpy`: boxed arrays (``__array_ufunc__``,
  ``__array_function__``, routed methods), unboxed after the run.
* :mod:`~einsum_magic.chain.recorders.jax`: the primitives bound on JAX's evaluation trace
  (``jit`` calls with their jaxpr, ``custom_jvp`` calls kept whole).

A recorder never changes what the user's code computes: it calls the function it
observed exactly as the code called it and returns its result; anything failing in the
recorder's own bookkeeping stops the record (one line saying why), never the cell.

:func:`recording` is the one context manager the magic enters around the run: it starts
the recorder of every framework that is imported.
"""

from __future__ import annotations

import contextlib
import sys

from ...cell.source import tree as parsed
from .. import record
from ..record import Recording

__all__ = ["recording"]


@contextlib.contextmanager
def recording(namespace: dict | None = None, budget: int | None = None,
              source: str | None = None):
    """Record the run inside the block with every framework's recorder that is imported.

    Yields the :class:`Recording`. A framework that is not imported yet is not imported
    here (``torch`` only when ``sys.modules`` has it, or when ``source``, the cell, names
    ``torch``: then it is imported first, as the cell would; JAX only when ``sys.modules``
    has it). ``budget``: bytes, :data:`~einsum_magic.chain.record.BUDGET`
    (read when the block starts, so ``einsum_magic.chain.record.BUDGET = …`` sets it) by
    default. Whatever a recorder installs is
    removed when the block ends, also on an error or an interrupt.

    >>> with recording({}) as rec:
    ...     pass
    >>> rec.nodes, rec.stopped
    ([], '')
    """
    rec = Recording(record.BUDGET if budget is None else budget, namespace)
    with contextlib.ExitStack() as stack:
        if "torch" not in sys.modules and source and _names_torch(source):
            _import("torch")              # the cell imports it itself: record it from the start
        if "torch" in sys.modules:
            from .torch import TorchRecorder

            stack.enter_context(TorchRecorder(rec))
        if "numpy" in sys.modules:
            from .numpy import NumpyRecorder

            stack.enter_context(NumpyRecorder(rec))
        if sys.modules.get("jax") is not None:    # (None: its import blocked) entered last,
            from .jax import JaxRecorder  # left first: it says why it did not record before
                                          # NumPy's unboxing looks for JAX arrays

            stack.enter_context(JaxRecorder(rec))
        yield rec


def _names_torch(source: str) -> bool:
    """Whether the cell's code names torch (``import torch``, ``from torch import nn``).

    >>> _names_torch("import torch.nn as nn"), _names_torch("x = np.ones(3)  # torch later")
    (True, False)
    """
    import ast

    try:
        tree = parsed(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch"
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            return True
    return False


def _import(name: str) -> None:
    import importlib
    import importlib.util

    if importlib.util.find_spec(name) is not None:
        importlib.import_module(name)
