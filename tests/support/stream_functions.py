"""Functions for ``python`` nodes in the stream tests (allow-listed by those tests)."""

from __future__ import annotations

from typing import Any

from langgraph.config import get_stream_writer


def progress_in_a_thread(item: dict[str, Any]) -> dict[str, Any]:
    """Synchronous, so it runs in a worker thread: its writes still reach the run."""
    write = get_stream_writer()
    for step in range(3):
        write({"step": step, "thread": True})
    return {**item, "done": True}
