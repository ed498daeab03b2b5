"""Cursors (an execution's ``seq``, a pushRef's message id, a page's ``offset``) and the one
way a client's text becomes an integer.

Every cursor a client sends is bounded by :data:`MAX_CURSOR`, the largest value SQLite's
``INTEGER`` and PostgreSQL's ``BIGINT`` hold: a larger one is refused as bad input instead
of overflowing in the store. JSON commands bound theirs with the :data:`Cursor` type.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

MAX_CURSOR: Final = 2**63 - 1

#: A cursor field of a decoded message: ``msgspec`` refuses values outside ``0..MAX_CURSOR``.
Cursor = Annotated[int, msgspec.Meta(ge=0, le=MAX_CURSOR)]

_ASCII_DIGITS: Final = frozenset("0123456789")


def parse_integer(text: str, low: int = 0, high: int = MAX_CURSOR) -> int | None:
    """``text`` as an integer in ``low..high`` (``0 <= low``), or None when it is not one.

    Only ASCII digits count, surrounding whitespace aside: ``str.isdigit`` and ``int`` also
    take ``²``, Arabic-Indic digits and ``_`` separators. The length is checked before
    converting, so a huge string costs nothing.
    """
    digits = text.strip()
    if not digits or len(digits) > len(str(high)) or not _ASCII_DIGITS.issuperset(digits):
        return None
    value = int(digits)
    return value if low <= value <= high else None
