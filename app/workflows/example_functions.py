"""Functions the example workflows' ``python`` nodes call (the default allow-listed module).

Each takes the node's input item (a JSON object) and returns the output item.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph.config import get_stream_writer

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


async def research(item: dict[str, Any]) -> dict[str, Any]:
    """A stand-in agent that reports its progress while it works: ``steps`` (default 3, at
    most 20) custom stream payloads ``{"step", "of", "note"}`` through LangGraph's stream
    writer, ``delay_ms`` (default 300, at most 10 s) apart (SPEC §8)."""
    write = get_stream_writer()
    steps = item.get("steps", 3)
    steps = min(max(steps, 1), 20) if isinstance(steps, int) else 3
    delay_ms = item.get("delay_ms", 300)
    delay_ms = delay_ms if isinstance(delay_ms, int | float) else 300
    for step in range(1, steps + 1):
        await asyncio.sleep(min(max(delay_ms, 0), MAX_ECHO_DELAY_MS) / 1000)
        write({"step": step, "of": steps, "note": f"looked into part {step} of {steps}"})
    return {**item, "researched": steps}
