"""einsum_magic: derive, show and check the backward of any einsum (the swap trick).

``%load_ext einsum_magic`` registers the ``%%einsum_grad`` cell magic. The Python API:

>>> from einsum_magic import derive
>>> derive("ij,jk->ik").grads[0].equation
'ik,jk->ij'

Importing this package imports neither JAX nor ipywidgets: the check and the
widgets import them when first used.
"""

from .check.report import CheckReport, check
from .compute import export as _export  # noqa: F401  (gives Derivation.export / .compile their writer)
from .core.derivation import Derivation, Grad, derive
from .errors import EinsumError

__all__ = ["derive", "check", "Derivation", "Grad", "CheckReport", "EinsumError",
           "load_ipython_extension"]
__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """``%load_ext einsum_magic``: register the ``%%einsum_grad`` magic."""
    from .magic import load_ipython_extension as _load

    _load(ipython)
