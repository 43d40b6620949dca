"""What the tests share: IPython's test shell with the extension loaded (``shell``)."""

from __future__ import annotations

import pytest
from IPython.testing import globalipapp

from einsum_magic.magic import load_ipython_extension


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
