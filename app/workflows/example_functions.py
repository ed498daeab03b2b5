"""Functions the example workflows' ``python`` nodes call (the default allow-listed module).

Each takes the node's input item (a JSON object) and returns the output item.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: ``slow_echo`` never sleeps longer than this, whatever the item asks.
MAX_ECHO_DELAY_MS = 10_000


def word_count(item: dict[str, Any]) -> dict[str, Any]:
    """The item plus ``words``: the number of whitespace-separated words in ``text``."""
    return {**item, "words": len(str(item.get("text", "")).split())}


def uppercase(item: dict[str, Any]) -> dict[str, Any]:
    """The item with every string value upper-cased (nested values are left alone)."""
    return {key: value.upper() if isinstance(value, str) else value for key, value in item.items()}


async def slow_echo(item: dict[str, Any]) -> dict[str, Any]:
    """The item unchanged, after ``delay_ms`` (default 100, at most 10 s): a stand-in agent."""
    delay_ms = item.get("delay_ms", 100)
    if not isinstance(delay_ms, int | float):
        delay_ms = 100
    await asyncio.sleep(min(max(delay_ms, 0), MAX_ECHO_DELAY_MS) / 1000)
    return item
