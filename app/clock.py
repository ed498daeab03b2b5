"""Time in the two forms the wire uses (ISO-8601 UTC with milliseconds and epoch ms), and
time-ordered ids."""

from __future__ import annotations

import functools
import secrets
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """``1795631870207`` -> ``"2026-11-25T18:37:50.207Z"``."""
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # A page of runs formats six times per run, mostly seconds it formatted before.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def new_id() -> str:
    """Time-ordered, URL-safe execution or workflow id."""
    return f"{time.time_ns() // 1000:x}{secrets.token_hex(3)}"
