"""Streams inside a node (SPEC §8): what LangGraph's ``messages`` and ``custom`` stream modes
yield, as ``nodeExecuteStream`` chunks, buffered per node task and flushed together.

No I/O here: :class:`StreamBuffers` is told the time by its ``clock`` and says when a flush
is due; :mod:`app.executions.pacing` wakes the engine at that moment.

A chunk is one of (SPEC §8)::

    {"kind": "text", "messageId", "text"}
    {"kind": "tool_call", "messageId", "index", "id"?, "name"?, "args"}
    {"kind": "custom", "data"}
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app import messages as m
from app.model.records import ExecutionRecord

Chunk = dict[str, Any]


def message_chunks(message: Any) -> list[Chunk]:
    """The text and tool-call chunks of one LangChain message (or message chunk), in the
    order a client appends them. A message without an id or content gives none."""
    message_id = getattr(message, "id", None)
    if not message_id:
        return []
    chunks: list[Chunk] = []
    text = str(getattr(message, "text", ""))  # LangChain's text of str or block content
    if text:
        chunks.append({"kind": "text", "messageId": message_id, "text": text})
    for call in getattr(message, "tool_call_chunks", None) or ():
        chunk: Chunk = {
            "kind": "tool_call",
            "messageId": message_id,
            "index": call.get("index") or 0,
            "args": call.get("args") or "",
        }
        for key in ("id", "name"):
            if call.get(key):
                chunk[key] = call[key]
        chunks.append(chunk)
    return chunks


def custom_chunk(payload: Any) -> Chunk:
    return {"kind": "custom", "data": payload}


def append(chunks: list[Chunk], chunk: Chunk) -> None:
    """Add ``chunk`` to ``chunks``, merged into the last one when it continues the same
    message's text or the same tool call's arguments (custom payloads are never merged)."""
    last = chunks[-1] if chunks else None
    kind = chunk["kind"]
    if last is None or last["kind"] != kind or last.get("messageId") != chunk.get("messageId"):
        chunks.append(dict(chunk))
    elif kind == "text":
        last["text"] += chunk["text"]
    elif kind == "tool_call" and last["index"] == chunk["index"]:
        last["args"] += chunk["args"]
        for key in ("id", "name"):
            if key in chunk and key not in last:
                last[key] = chunk[key]
    else:
        chunks.append(dict(chunk))


@dataclass(slots=True)
class _Buffer:
    chunks: list[Chunk] = field(default_factory=list)
    due_at: float = 0.0


class StreamBuffers:
    """The unsent chunks of one run, per node task.

    A task's chunks are flushed at most once every ``flush_ms``: the first chunk after a
    quiet period is due at once, later ones when ``flush_ms`` have passed since the task's
    last flush. :meth:`take` empties one task's buffer whatever the time (before its
    ``nodeExecuteAfter``).
    """

    def __init__(self, flush_ms: float, clock: Callable[[], float]) -> None:
        self._interval = flush_ms / 1000
        self._clock = clock
        self._buffers: dict[str, _Buffer] = {}
        self._flushed_at: dict[str, float] = {}

    def add(self, task_id: str, chunks: list[Chunk]) -> None:
        buffer = self._buffers.get(task_id)
        if buffer is None:
            last = self._flushed_at.get(task_id, -math.inf)
            buffer = self._buffers[task_id] = _Buffer(
                due_at=max(self._clock(), last + self._interval)
            )
        for chunk in chunks:
            append(buffer.chunks, chunk)

    def deadline(self) -> float | None:
        """When the next flush is due (``clock`` time), or None when nothing waits."""
        return min((b.due_at for b in self._buffers.values()), default=None)

    def due(self) -> list[tuple[str, list[Chunk]]]:
        """Take the buffers whose flush is due now, as ``(task_id, chunks)``."""
        now = self._clock()
        ready = [task_id for task_id, b in self._buffers.items() if b.due_at <= now]
        return [(task_id, self._pop(task_id, now)) for task_id in ready]

    def take(self, task_id: str) -> list[Chunk]:
        """Take one task's buffer now (empty if it has none) and forget the task."""
        chunks = self._pop(task_id, 0.0) if task_id in self._buffers else []
        self._flushed_at.pop(task_id, None)
        return chunks

    def clear(self) -> None:
        self._buffers.clear()
        self._flushed_at.clear()

    def _pop(self, task_id: str, now: float) -> list[Chunk]:
        self._flushed_at[task_id] = now
        return self._buffers.pop(task_id).chunks


def split(chunks: list[Chunk], measure: Callable[[Chunk], int], budget: int) -> list[list[Chunk]]:
    """``chunks`` in consecutive groups whose encoded chunks (``measure`` bytes each, plus a
    comma between two) fit ``budget`` bytes: a message's limit less its envelope. A text or
    tool-call chunk too big for a message of its own is cut in pieces; a custom payload too
    big for one is replaced by n8n's "too large" placeholder."""
    groups: list[list[Chunk]] = [[]]
    used = 0
    for chunk in chunks:
        for piece, cost in _pieces(chunk, measure, budget):
            if groups[-1] and used + 1 + cost > budget:
                groups.append([])
                used = 0
            used += cost + (1 if groups[-1] else 0)
            groups[-1].append(piece)
    return [group for group in groups if group]


_TEXT_KEY = {"text": "text", "tool_call": "args"}
#: n8n's marker for data too large to push (SPEC §5.3).
TOO_LARGE: Any = {"__isTrimmedManualExecutionDataItem": True}


def _pieces(chunk: Chunk, measure: Callable[[Chunk], int], budget: int) -> list[tuple[Chunk, int]]:
    cost = measure(chunk)
    if cost <= budget:
        return [(chunk, cost)]
    key = _TEXT_KEY.get(chunk["kind"])
    if key is None or len(chunk[key]) < 2:
        placeholder = custom_chunk(TOO_LARGE)
        return [(placeholder, measure(placeholder))]
    middle = len(chunk[key]) // 2
    first = {**chunk, key: chunk[key][:middle]}
    # Only the first piece names the tool call: a client appends the rest to it.
    rest = {k: v for k, v in chunk.items() if k not in ("id", "name")}
    rest[key] = chunk[key][middle:]
    return [*_pieces(first, measure, budget), *_pieces(rest, measure, budget)]


def text_so_far(streams: dict[str, dict[str, str]], node: str, chunks: list[Chunk]) -> None:
    """Add the text of ``chunks`` to ``streams`` (node -> message id -> text so far)."""
    for chunk in chunks:
        if chunk["kind"] == "text":
            texts = streams.setdefault(node, {})
            texts[chunk["messageId"]] = texts.get(chunk["messageId"], "") + chunk["text"]


def stream_payloads(execution_id: str, node: str, chunks: list[Chunk], limit: int) -> list[bytes]:
    """The encoded ``nodeExecuteStream`` messages of one flush: one, or several when one
    would pass ``limit`` bytes (SPEC §5.3)."""
    payload = m.encode(m.NodeExecuteStream(m.NodeExecuteStreamData(execution_id, node, chunks)))
    if len(payload) <= limit:
        return [payload]
    empty = m.NodeExecuteStream(m.NodeExecuteStreamData(execution_id, node, []))
    budget = limit - len(m.encode(empty))
    return [
        m.encode(m.NodeExecuteStream(m.NodeExecuteStreamData(execution_id, node, group)))
        for group in split(chunks, lambda chunk: len(m.encoder.encode(chunk)), budget)
    ]


def flushed(record: ExecutionRecord, node: str, chunks: list[Chunk], limit: int) -> list[bytes]:
    """The messages of one flush of ``node`` (none for no chunks); their text is added to
    ``record.streams``, the text so far of running nodes."""
    if not chunks:
        return []
    text_so_far(record.streams, node, chunks)
    return stream_payloads(record.id, node, chunks, limit)
