"""Ids of workflows and executions, and pushRefs: ``[A-Za-z0-9_-]{1,64}``.

Every id the server makes or accepts has this form, so a client's text of any other form
names nothing: it is answered as unknown or refused where it comes in, and never reaches a
store (PostgreSQL cannot even compare a text key that holds a NUL).
"""

from __future__ import annotations

import re
from typing import Annotated, Final

import msgspec

ID_PATTERN: Final = r"[A-Za-z0-9_-]{1,64}"
_ID: Final = re.compile(ID_PATTERN)

#: An id field of a decoded message: ``msgspec`` refuses text of any other form.
Identifier = Annotated[str, msgspec.Meta(pattern=f"^{ID_PATTERN}$")]


def is_identifier(text: str) -> bool:
    return _ID.fullmatch(text) is not None
