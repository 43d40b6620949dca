"""The backward program of a whole cell: a chain of einsums and the steps between them.

The arrow this subpackage owns, one module per job:

* :mod:`~einsum_magic.chain.text`: the cell read from its text (retiring; NumPy cells only).
"""

from .text.result import CellBackward, cell_backward

__all__ = ["CellBackward", "cell_backward"]
