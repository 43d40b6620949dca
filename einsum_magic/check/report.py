"""The inline check's public face: :func:`check` and what it reports, in one import.

This module owns no step of its own: it names, in one place, what callers of the check use, so
that ``from einsum_magic.check.report import check, CheckReport, ...`` reads the same whichever
module of :mod:`einsum_magic.check` holds each name:

- :mod:`.records`: the records :class:`CheckReport` and :class:`GradCheck` (one for an einsum
  and for a cell), the one :func:`verdict` (PASS, FAIL, PARTIAL, UNCHECKED) and
  :data:`TOLERANCES`;
- :mod:`.inputs`: which arrays are checked (:data:`MAX_ELEMENTS`, seeded stand-ins, scaling);
- :mod:`.jax`: ``jax.vjp`` on the default device (:data:`INSTALL`, :func:`jax_available`);
- :mod:`.adjoint`: NumPy's exact adjoint test;
- :mod:`.policy`: which check runs for an einsum and for a cell (:func:`plan`), the
  fallback, the comparison (:func:`check`).

It sits above them all (it imports them; none imports it), so the records live in
:mod:`.records`, below every module that builds them.

>>> from einsum_magic import derive
>>> check(derive("ij->j", shapes=((2, 3),))).summary
'check: PASS, 1/1 gradient matches jax.vjp (float32)'
"""

from __future__ import annotations

from .inputs import MAX_ELEMENTS
from .jax import INSTALL, PRECISION, JaxNotInstalled, import_jax, jax_available
from .policy import check, plan
from .records import TOLERANCES, CheckReport, GradCheck, verdict

__all__ = ["check", "plan", "verdict", "CheckReport", "GradCheck", "JaxNotInstalled",
           "jax_available", "MAX_ELEMENTS", "TOLERANCES", "PRECISION", "INSTALL"]

