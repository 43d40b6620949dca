"""The nbval sanitize file shipped with the package, and where to find it.

``nbval_sanitize.cfg`` (package data) reduces the magic's HTML display to its meaning
(:func:`einsum_magic.views.html.meaning`: verdicts, equations, shapes) and removes what varies
between machines (JAX's platform warnings, addresses, durations), so notebooks stored
with one release's markup still pass nbval with the next. Its path, in one line::

    pytest --nbval notebooks/ --nbval-sanitize-with "$(python -m einsum_magic --nbval-sanitize-path)"

>>> path().name
'nbval_sanitize.cfg'
>>> "einsum-grad-html-meaning" in path().read_text(encoding="utf-8")
True
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["path", "FILE"]

#: The file's name inside the package.
FILE = "nbval_sanitize.cfg"


def path() -> Path:
    """The absolute path of the shipped nbval sanitize file."""
    return Path(__file__).resolve().with_name(FILE)
