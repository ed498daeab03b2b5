"""Time in the two forms the wire uses (ISO-8601 UTC with milliseconds and epoch ms), and
time-ordered ids."""

from __future__ import annotations

import secrets
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``1795631870207`` -> ``"2026-11-25T18:37:50.207Z"``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def new_id() -> str:
    """Time-ordered, URL-safe execution or workflow id."""
    return f"{time.time_ns() // 1000:x}{secrets.token_hex(3)}"
