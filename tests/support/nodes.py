"""Functions for the ``python`` nodes of tests (allow-list ``support.nodes``)."""

from __future__ import annotations

import time
from typing import Any

#: How long :func:`block` holds its thread.
BLOCK_S = 2.0


def block(item: dict[str, Any]) -> dict[str, Any]:
    """Block the calling thread for :data:`BLOCK_S` (a synchronous agent call, say)."""
    time.sleep(BLOCK_S)
    return {**item, "blocked_s": BLOCK_S}


def time_out(item: dict[str, Any]) -> dict[str, Any]:
    """Fail as a call with a time limit of its own does (``TimeoutError``)."""
    raise TimeoutError("the upstream call took too long")
