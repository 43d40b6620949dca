"""The one exception type of einsum_magic, and how it points at the offending place.

Every bad input to :func:`einsum_magic.derive` raises :class:`EinsumError`, a
``ValueError`` whose message says what is wrong in one line, then quotes the
equation with a caret under the offending character::

    >>> from einsum_magic import derive
    >>> try:
    ...     derive("ij,j1->i")
    ... except EinsumError as e:
    ...     print(e)
    '1' is not a subscript letter (use a-z, A-Z or '...')
        ij,j1->i
            ^
"""

from __future__ import annotations

__all__ = ["EinsumError"]


class EinsumError(ValueError):
    """A bad equation, operand list or option, with the place it went wrong.

    Parameters
    ----------
    message:
        What is wrong, in one line and in the user's words.
    equation:
        The equation as the user wrote it, quoted under the message.
    position:
        Index into ``equation`` of the offending character (``None``: no caret).
    width:
        How many characters the caret underlines (``^^^`` for ``...``).
    """

    def __init__(self, message: str, equation: str | None = None,
                 position: int | None = None, width: int = 1):
        self.reason = message
        self.equation = equation
        self.position = position
        super().__init__(_format(message, equation, position, width))


def _format(message: str, equation: str | None, position: int | None, width: int) -> str:
    if equation is None:
        return message
    lines = [message, "    " + equation]
    if position is not None:
        lines.append("    " + " " * position + "^" * max(1, width))
    return "\n".join(lines)
