"""The check: derived gradients against JAX's autodiff, or NumPy's exact adjoint test without JAX.

One report (:class:`CheckReport`) and one policy (:func:`.policy.plan`) for a single einsum and
for a cell's backward, whose replays (:mod:`einsum_magic.chain.check`) build the same record.

One module per concern, in import order: :mod:`.records` (:class:`CheckReport`, :class:`GradCheck`,
the tolerances), :mod:`.inputs` (which arrays are checked), :mod:`.jax` (``jax.vjp`` on the default
device), :mod:`.adjoint` (NumPy's adjoint test), :mod:`.policy` (which check runs, the fallback,
the comparison) and :mod:`.report` (all of it in one import). ``einsum_magic.check`` the attribute
is the function :func:`check`; this subpackage is ``sys.modules['einsum_magic.check']``, and
re-exports it so both spell the same thing.
"""
from .report import CheckReport, check

__all__ = ["CheckReport", "check"]
