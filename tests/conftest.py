"""What the tests share: IPython's test shell with the extension loaded (``shell``), and
Hypothesis's profiles: in CI (``CI`` set, as ``.ci/run`` sets it) the random equations and
programs are drawn the same on every run, so a submission's result does not depend on the
draw; elsewhere each run explores new ones (and keeps any failure it finds for the next)."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings
from IPython.testing import globalipapp

from einsum_magic.magic import load_ipython_extension

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def shell():
    """IPython's test shell (one per process), the extension loaded; every name a test
    binds in it is removed after the test, and every name it rebound is restored."""
    globalipapp.start_ipython()
    ip = globalipapp.get_ipython()
    load_ipython_extension(ip)
    saved = dict(ip.user_ns)
    yield ip
    ip.user_ns.clear()
    ip.user_ns.update(saved)
