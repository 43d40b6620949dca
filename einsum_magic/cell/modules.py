"""Which functions are einsums: the one table the source reader, the capture and the display share.

This module owns the list of einsum functions einsum_magic knows. Each
:class:`EinsumFunction` says where the function lives (``numpy.einsum``), how its
equation is passed (``'numpy'``: the string first, or the interleaved sublists;
``'einops'``: the pattern last), how a display writes it (``np.einsum``), and how the
run observes it (``'patch'``: the module attribute is swapped for an observing wrapper
while the cell runs, which ``torch.compile`` traces as the original and TorchScript
compiles as the original, unobserved; ``''``: read from the source only).
:data:`ALIASES` are the names a cell may use for those modules without importing
them. :data:`EINSUM_MODULES` (module → function name) and :data:`ALIASES` are what
the source reader (:mod:`einsum_magic.cell.calls`) needs; :data:`OBSERVED` what the
capture (:mod:`einsum_magic.cell.capture`) patches.

>>> by_name("opt_einsum.contract").short
'oe.contract'
>>> EINSUM_MODULES["opt_einsum"], ALIASES["jnp"]
('contract', 'jax.numpy')
>>> [f.name for f in OBSERVED]
['numpy.einsum', 'jax.numpy.einsum', 'torch.einsum', 'opt_einsum.contract', 'einops.einsum']
>>> internal("opt_einsum.contract"), internal("numpy.linalg"), internal("einsum_magic.check")
(True, False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EinsumFunction", "FUNCTIONS", "EINSUM_MODULES", "ALIASES", "OBSERVED", "PACKAGE",
           "by_module", "by_name", "internal", "root"]


@dataclass(frozen=True)
class EinsumFunction:
    """One einsum function: ``module.attribute``, its equation style, its short spelling."""

    module: str                       # 'numpy'
    attribute: str                    # 'einsum'
    style: str                        # 'numpy' (string first or interleaved) or 'einops' (last)
    short: str                        # how a display writes the call: 'np.einsum'
    observed: str = "patch"           # 'patch' or '' (source only)
    calls_others: bool = False        # its own code calls other einsum functions (inner calls)
    expression: str = ""              # 'module:Class' whose instances' calls are its calls

    @property
    def name(self) -> str:
        """``'numpy.einsum'``: the qualified name, as captured sites record it."""
        return f"{self.module}.{self.attribute}"


FUNCTIONS = (
    EinsumFunction("numpy", "einsum", "numpy", "np.einsum"),
    EinsumFunction("jax.numpy", "einsum", "numpy", "jnp.einsum"),
    EinsumFunction("torch", "einsum", "numpy", "torch.einsum"),
    EinsumFunction("opt_einsum", "contract", "numpy", "oe.contract", calls_others=True,
                   expression="opt_einsum.contract:ContractExpression"),
    EinsumFunction("einops", "einsum", "einops", "einops.einsum", calls_others=True),
    EinsumFunction("cupy", "einsum", "numpy", "cp.einsum", ""),
    EinsumFunction("tensorflow", "einsum", "numpy", "tf.einsum", ""),
)

#: Module → the name of its einsum function.
EINSUM_MODULES = {f.module: f.attribute for f in FUNCTIONS}

#: Aliases a cell may use without importing the module: alias → module.
ALIASES = {
    "np": "numpy", "numpy": "numpy", "jnp": "jax.numpy", "jax.numpy": "jax.numpy",
    "torch": "torch", "oe": "opt_einsum", "opt_einsum": "opt_einsum", "einops": "einops",
}

#: The functions the capture swaps for an observing wrapper while a cell runs.
OBSERVED = tuple(f for f in FUNCTIONS if f.observed == "patch")

#: This package's own top-level module name: its einsum calls are never observed.
PACKAGE = __name__.partition(".")[0]

_INTERNAL = frozenset({PACKAGE, *(f.module.partition(".")[0] for f in FUNCTIONS
                                  if f.calls_others)})


def by_name(name: str) -> EinsumFunction | None:
    """The function recorded as ``name`` (``'torch.einsum'``), else ``None``."""
    return next((f for f in FUNCTIONS if f.name == name), None)


def by_module(module: str | None) -> EinsumFunction | None:
    """The einsum function of ``module`` (``'torch'``), else ``None``."""
    return next((f for f in FUNCTIONS if f.module == module), None)


def root(module: str | None) -> str:
    """The top-level package of a module name ('' for ``None``).

    >>> root("einops._backends"), root(None)
    ('einops', '')
    """
    return (module or "").partition(".")[0]


def internal(module: str | None) -> bool:
    """Whether an einsum called from ``module`` is an inner call, never shown on its own.

    True for this package (its check and export run einsums of their own) and for
    the packages whose einsum calls another one (``opt_einsum.contract`` and
    ``einops.einsum`` call numpy's or torch's): the outer call is the one observed.
    """
    return root(module) in _INTERNAL
