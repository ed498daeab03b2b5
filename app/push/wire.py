"""Bytes on the wire: what the core hands to transports and how each transport lays it out.

The core produces :class:`Outgoing` items: the message's JSON bytes (encoded once and shared
by every connection), whether WebSocket must send it as a binary frame, and its cursor id.
A transport turns them into frames with :func:`ws_frame` (``"meta":{"id":N}`` spliced in
beside ``type`` and ``data``) or :func:`sse_pieces` (``id:`` + ``data:`` lines); neither
re-encodes the JSON. An execution stream's items are the same for every reader (its ids are
the ``seq``): :func:`stream_item` makes each one once, its SSE event laid out with it. A
batch that several connections send as it is, the same messages with the same ids, is a
:class:`Shared` list, which keeps each transport's layout of it once it is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec

from app import messages


class Outgoing(msgspec.Struct, frozen=True, gc=False):
    """One message for one connection.

    ``event_id`` is the connection cursor (SPEC §5.4): the pushRef sequence number on
    ``/agents/push``, the execution ``seq`` on ``/stream``, ``None`` for replies and
    notices that are not part of the resumable stream.
    """

    payload: bytes
    binary: bool = False
    event_id: int | None = None
    #: Its whole SSE event, when the item is shared by every reader (:func:`stream_item`).
    sse: bytes | None = None


class Shared(list[Outgoing]):
    """Items that several connections send as they are (the same messages with the same
    ids), so a transport lays them out once for all of them and keeps the bytes here
    (``ws``: WebSocket frames; ``sse``: SSE events). ``nbytes``: their payloads' bytes.
    Nobody changes the list once it is handed out."""

    __slots__ = ("nbytes", "sse", "ws")

    def __init__(self, items: Iterable[Outgoing]) -> None:
        super().__init__(items)
        self.nbytes = sum(len(out.payload) for out in self)
        self.ws: bytes | None = None
        self.sse: bytes | None = None


#: Comment lines SSE sends first and as keep-alive pings (SPEC §5.1).
SSE_OK: Final = b":ok\n\n"
SSE_PING: Final = b": ping\n\n"


def ws_frame(out: Outgoing) -> bytes:
    """The WebSocket frame payload: the JSON object with ``meta.id`` appended when it has an id.

    Splices bytes (``{...}`` → ``{...,"meta":{"id":N}}``) instead of decoding and re-encoding.
    """
    if out.event_id is None:
        return out.payload
    return b"".join(ws_spliced(out))


def ws_spliced(out: Outgoing) -> tuple[bytes | memoryview, bytes]:
    """:func:`ws_frame` as two pieces, the shared payload (a view, not a copy) and the tail,
    so that a transport can write them without copying the payload per connection."""
    if out.event_id is None:
        return out.payload, b""
    return memoryview(out.payload)[:-1], b',"meta":{"id":%d}}' % out.event_id


def stream_item(seq: int, payload: bytes) -> Outgoing:
    """A message of an execution stream (its id: the ``seq``), with its SSE event made once
    for every stream that reads it."""
    return Outgoing(payload, False, seq, b"".join(_sse_event(payload, seq)))


def _sse_event(payload: bytes, event_id: int | None) -> Sequence[bytes]:
    if event_id is None:
        return (b"data: ", payload, b"\n\n")
    return (b"id: %d\ndata: " % event_id, payload, b"\n\n")


def _event_pieces(out: Outgoing) -> Sequence[bytes]:
    return (out.sse,) if out.sse is not None else _sse_event(out.payload, out.event_id)


def sse_pieces(
    outs: Iterable[Outgoing], max_bytes: int, head: bytes = b""
) -> Iterator[list[bytes]]:
    """``head`` then ``outs`` as SSE events, in chunks of whole events that end once they
    reach ``max_bytes``, each a list of pieces to write in one go (the payloads and shared
    events are not copied), made when it is asked for: a transport that writes them one by
    one holds one chunk at a time, never the whole backlog. A :class:`Shared` batch smaller
    than a chunk is laid out once for every connection that sends it."""
    if isinstance(outs, Shared) and outs.nbytes < max_bytes:
        if outs.sse is None:
            outs.sse = b"".join([piece for out in outs for piece in _event_pieces(out)])
        if head:
            yield [head, outs.sse]
        elif outs:
            yield [outs.sse]
        return
    parts, size = [head] if head else [], len(head)
    for out in outs:
        for piece in _event_pieces(out):
            parts.append(piece)
            size += len(piece)
        if size >= max_bytes:
            yield parts
            parts, size = [], 0
    if size:
        yield parts


def sse_chunks(outs: Iterable[Outgoing], max_bytes: int, head: bytes = b"") -> Iterator[bytes]:
    """:func:`sse_pieces`, each chunk joined."""
    return (b"".join(parts) for parts in sse_pieces(outs, max_bytes, head))


# ---- connection-level messages (no id: they are not part of the resumable stream) ----------

PONG: Final = Outgoing(messages.encoder.encode(messages.Pong()))


def ack(
    command: str, execution_id: str | None = None, *, workflow_id: str | None = None
) -> Outgoing:
    data = _subject(messages.ReplyData(command=command), execution_id, workflow_id)
    return Outgoing(messages.encoder.encode(messages.Ack(data=data)))


def error(
    code: str,
    message: str,
    *,
    command: str | None = None,
    execution_id: str | None = None,
    workflow_id: str | None = None,
) -> Outgoing:
    data = messages.ReplyData(code=code, message=message)
    if command is not None:
        data.command = command
    return Outgoing(
        messages.encoder.encode(messages.Error(data=_subject(data, execution_id, workflow_id)))
    )


def _subject(
    data: messages.ReplyData, execution_id: str | None, workflow_id: str | None
) -> messages.ReplyData:
    """``data`` naming the execution or workflow a command was about."""
    if execution_id is not None:
        data.executionId = execution_id
    if workflow_id is not None:
        data.workflowId = workflow_id
    return data


def resume_failed(last_event_id: int) -> Outgoing:
    data = messages.ResumeFailedData(lastEventId=last_event_id)
    return Outgoing(messages.encoder.encode(messages.ResumeFailed(data=data)))


def snapshot(data: messages.ExecutionSnapshotData) -> Outgoing:
    return Outgoing(messages.encoder.encode(messages.ExecutionSnapshot(data=data)))
