"""The cell as a small immutable program of steps (SSA): what the chain's modules share.

A :class:`Program` is a tuple of :class:`Step` lines, ``target = kind(args)``, in the
cell's order. Every value is assigned once: a name the cell rebinds gets versions, the
last one keeping the plain name (``P = np.exp(S); P = P / P.sum(…)`` reads as ``P_1`` and
``P``), and sub-expressions get temporaries ``t1``, ``t2``, … An argument is either a
value's name or a constant's source text (``np.sqrt(K.shape[-1])``, ``2``), which is never
differentiated.

Kinds after binding (:func:`einsum_magic.chain.text.forward.bind`): ``einsum`` (param: the
equation), ``add sub mul div``, ``neg``, ``pow`` (param: the exponent's text), ``exp log
tanh sin cos sqrt abs``, ``relu``, ``max`` (param: ``(axes, keepdims, stop)``; ``stop``:
softmax's shift, no gradient), ``reshape`` (param: the new shape), ``const`` (param: the
source text: a value that is not differentiated) and ``stop`` (param: the source text of a
step that is not differentiated: the backward stops at its result). Reading also produces
``matmul dot inner outer tensordot trace diagonal transpose swapaxes sum mean``, which
binding turns into einsums once the shapes are known.

>>> p = Program((Step("C", "einsum", ("A", "B"), "ij,jk->ik", 1, "C = A @ B"),), ("A", "B"))
>>> p.sinks, p.values
(('C',), ('A', 'B', 'C'))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Step", "Program", "UNARY", "BINARY"]

#: Elementwise functions of one value: kind → what it is called in NumPy.
UNARY = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos", "sqrt": "sqrt",
         "abs": "abs"}
#: Elementwise binary operators: kind → operator.
BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@dataclass(frozen=True)
class Step:
    """One line of the program: ``target = kind(args)``.

    ``line`` is the cell's line (1-based) the step comes from and ``text`` that line's
    statement as written; ``what`` the expression as written, for products read as einsums
    (``'X @ W'``), and for a ``stop`` step the function that is not differentiated.
    """

    target: str
    kind: str
    args: tuple[str, ...]
    param: Any = None
    line: int = 0
    text: str = ""
    what: str = ""
    shape: tuple[int, ...] | None = None   # set by binding


@dataclass(frozen=True)
class Program:
    """The steps of the cell, the values read from outside and what reading had to say.

    ``inputs``: names read from outside the cell (arrays; the backward assigns ``dL_d<name>``
    for each). ``constants``: outside names that hold Python numbers (never differentiated).
    ``notes``: one line per step that is not differentiated, or per statement that ended
    the reading. ``taken``: every name the cell uses (fresh names avoid them).
    """

    steps: tuple[Step, ...]
    inputs: tuple[str, ...]
    constants: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    taken: frozenset = field(default=frozenset(), repr=False)
    renamed: tuple[tuple[str, str], ...] = ()     # (SSA name, the cell's name) where they differ
    input_shapes: tuple[tuple[int, ...], ...] | None = None   # one per input, set by binding

    @property
    def values(self) -> tuple[str, ...]:
        """Every value's name: the inputs, then each step's target."""
        return self.inputs + tuple(s.target for s in self.steps)

    @property
    def leaves(self) -> tuple[str, ...]:
        """Values the backward starts from: the inputs and the results of ``stop`` steps."""
        return self.inputs + tuple(s.target for s in self.steps if s.kind == "stop")

    @property
    def sinks(self) -> tuple[str, ...]:
        """Values computed in the cell that no later step reads."""
        used = {a for s in self.steps for a in s.args}
        return tuple(s.target for s in self.steps if s.target not in used)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every value's shape (after binding)."""
        out = dict(zip(self.inputs, self.input_shapes or ()))
        out.update((s.target, s.shape) for s in self.steps if s.shape is not None)
        return out

    def is_value(self, arg: str) -> bool:
        """Whether ``arg`` names a value (else it is a constant's source text)."""
        return arg in set(self.values)

    def cell_name(self, value: str) -> str:
        """The cell's own name for an SSA value (``P_1`` → ``P``; a temporary is itself)."""
        return dict(self.renamed).get(value, value)
