"""Names in generated code: the ones it reserves, and fresh ones that clash with nothing.

The derivation's code, its loops and the exported functions are run in a namespace
that holds the user's operands by name, so every name they introduce (a gradient, a
loop index, a size) must step aside from the operands':

>>> taken = {"A", "dL_dA"}
>>> free_name("dL_dA", taken), free_name("dL_dA", taken)
('dL_dA_', 'dL_dA__')
"""

from __future__ import annotations

__all__ = ["RESERVED", "free_name"]

#: Names the generated code uses itself, so operands may not take them: name → its use.
RESERVED = {"np": "numpy", "range": "the loops"}


def free_name(name: str, taken: set) -> str:
    """``name``, with ``_`` appended until it is not in ``taken``; the result is added to it."""
    while name in taken:
        name += "_"
    taken.add(name)
    return name
