"""Connections that take the same messages with the same ids share one batch
(app/push/tail.py, app/push/wire.py): it is laid out once per transport, and every
connection still gets exactly the bytes of its own messages and ids."""

from __future__ import annotations

from test_push_core import Client, event
from websockets.frames import Frame, Opcode

from app.push import wire
from app.push.buffers import ResumeBuffer
from app.push.tail import Tail
from transports.ws_protocol import frames


def ids(next_id: int = 1) -> ResumeBuffer:
    buffer = ResumeBuffer(max_count=100, max_age_s=60, max_bytes=1 << 20)
    buffer.next_id = next_id
    return buffer


def following(tail: Tail, *names: str, next_id: int = 1) -> list[Client]:
    clients = [Client(push_ref=name) for name in names]
    for client in clients:
        tail.join(client.conn.push_ref, client.conn, ids(next_id), 0)
    return clients


def test_connections_with_the_same_ids_take_one_list_and_others_their_own() -> None:
    tail = Tail()
    a, b = following(tail, "a", "b")
    (c,) = following(tail, "c", next_id=5)
    for seq in (1, 2, 3):
        tail.append(event(seq, kind="nodeExecuteAfterData" if seq == 2 else "x"), now=0)
    batch_a, batch_b, batch_c = (x.conn.data_to_send() for x in (a, b, c))
    assert isinstance(batch_a, wire.Shared) and batch_a is batch_b
    assert batch_c is not batch_a
    assert [(o.event_id, o.binary) for o in batch_a] == [(1, False), (2, True), (3, False)]
    assert [o.event_id for o in batch_c] == [5, 6, 7]
    assert batch_a.nbytes == sum(len(o.payload) for o in batch_a)


def test_a_connection_that_takes_its_batch_later_gets_the_messages_since() -> None:
    tail = Tail()
    early, late = following(tail, "early", "late")
    for seq in (1, 2):
        tail.append(event(seq), now=0)
    first = early.conn.data_to_send()
    tail.append(event(3), now=0)
    later, rest = late.conn.data_to_send(), early.conn.data_to_send()
    assert [o.event_id for o in first] == [1, 2]
    assert [o.event_id for o in later] == [1, 2, 3]
    assert [o.event_id for o in rest] == [3]


def test_a_shared_batch_is_laid_out_as_each_message_would_be() -> None:
    tail = Tail()
    a, b = following(tail, "a", "b", next_id=120)  # ids cross the 3-digit boundary
    for seq in range(1, 13):
        tail.append(event(seq, kind="nodeExecuteAfterData" if seq % 4 else "x"), now=0)
    batch = a.conn.data_to_send()
    expected = b"".join(
        Frame(Opcode.BINARY if o.binary else Opcode.TEXT, wire.ws_frame(o)).serialize(mask=False)
        for o in batch
    )
    assert frames(batch) == expected
    assert b.conn.data_to_send() is batch

    sse = list(wire.sse_pieces(batch, 1 << 20, b":ok\n\n"))
    plain = list(wire.sse_pieces(list(batch), 1 << 20, b":ok\n\n"))
    assert b"".join(sse[0]) == b"".join(plain[0]) and len(sse) == len(plain) == 1
    assert sse[0][1] is batch.sse  # laid out once, kept with the batch
    assert list(wire.sse_pieces(batch, 1 << 20)) == [[batch.sse]]


def test_a_shared_batch_larger_than_a_chunk_is_chunked_as_any_other() -> None:
    tail = Tail()
    (a,) = following(tail, "a")
    for seq in range(1, 6):
        tail.append(event(seq), now=0)
    batch = a.conn.data_to_send()
    size = len(event(1).payload)
    chunks = list(wire.sse_chunks(batch, 2 * size))
    assert len(chunks) > 1 and b"".join(chunks) == b"".join(wire.sse_chunks(list(batch), 1 << 20))
    assert batch.sse is None
