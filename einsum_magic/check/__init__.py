"""The check: derived gradients against JAX's autodiff, or NumPy's exact adjoint test without JAX.

:mod:`.report` (the :class:`CheckReport` and the JAX check) and :mod:`.adjoint` (the fallback).
``einsum_magic.check`` the attribute is the function :func:`check`; this subpackage is
``sys.modules['einsum_magic.check']``, and re-exports it so both spell the same thing.
"""
from .report import CheckReport, check

__all__ = ["CheckReport", "check"]
