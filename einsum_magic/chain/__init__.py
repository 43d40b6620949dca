"""The backward program of a whole cell, from the record of its one run (never its text).

The arrow this subpackage owns, one module per job (each states its contract):

* :mod:`~einsum_magic.chain.record`: the record of the run: nodes (one per array
  operation, in its framework's terms), values by id (references), leaves, budget;
  :func:`~einsum_magic.chain.recorders.recording`, the context manager around the run;
* :mod:`~einsum_magic.chain.recorders`: one recorder per framework (torch so far);
* :mod:`~einsum_magic.chain.rules`: one node → NumPy backward lines (the swap trick for
  linear ops), one module per framework;
* :mod:`~einsum_magic.chain.names`: the user's names for the values, by identity;
* :mod:`~einsum_magic.chain.program`: the reverse pass → one NumPy program; opaque nodes
  and what they cut off;
* :mod:`~einsum_magic.chain.check`: the framework's own autodiff of a replay of the record;
* :mod:`~einsum_magic.chain.result`: :class:`CellBackward` and the magic's entry;
* :mod:`~einsum_magic.chain.text`: the retiring reading of NumPy cells' text, reachable
  only through :func:`~einsum_magic.chain.result.numpy_text_backward`.

Importing it imports neither JAX, torch nor ipywidgets.
"""

from .result import CellBackward
from .text.result import cell_backward

__all__ = ["CellBackward", "cell_backward"]
