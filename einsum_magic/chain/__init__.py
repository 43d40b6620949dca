"""The backward program of a whole cell: a chain of einsums and the steps between them.

The arrow this subpackage owns, one module per job:

* :mod:`~einsum_magic.chain.program`: the immutable program of steps (SSA) they share;
* :mod:`~einsum_magic.chain.reading`: the cell's straight-line code (``ast``) → program;
* :mod:`~einsum_magic.chain.forward`: bound to the arrays: products as einsums, shapes;
* :mod:`~einsum_magic.chain.backward`: the reverse program, one NumPy line per gradient;
* :mod:`~einsum_magic.chain.check`: every input gradient against ``jax.vjp`` (float64);
* :mod:`~einsum_magic.chain.export`: one NumPy / ``jax.custom_vjp`` / torch function;
* :mod:`~einsum_magic.chain.result`: :class:`CellBackward` and :func:`cell_backward`;
* :mod:`~einsum_magic.views.chain`: its text and HTML.

Importing it imports neither JAX nor ipywidgets.
"""

from .result import CellBackward, cell_backward

__all__ = ["CellBackward", "cell_backward"]
