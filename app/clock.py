"""Time in the two forms the wire uses: ISO-8601 UTC with milliseconds and epoch ms."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``1795631870207`` -> ``"2026-11-25T18:37:50.207Z"``."""
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{ms % 1000:03d}Z"
    )
