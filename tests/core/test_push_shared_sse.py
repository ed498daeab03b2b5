"""Execution streams share their items (app/push/tail.py, app/push/wire.py): each message's
SSE event is made once for every stream, and every reader still gets exactly the bytes of
its own stream."""

from __future__ import annotations

from test_push_core import Client, event, settings
from test_push_tail import logged

from app.push import wire
from app.push.connection import OVERHEAD_BYTES, CloseCode, State
from app.push.registry import Registry
from app.push.tail import TRIM_AT, Tail


def sse(*seqs: int) -> bytes:
    """The SSE events of an execution stream, laid out by hand (id: the seq)."""
    return b"".join(b"id: %d\ndata: %b\n\n" % (s, event(s).payload) for s in seqs)


def body(client: Client) -> bytes:
    return b"".join(wire.sse_chunks(client.conn.data_to_send(), 1 << 20))


def streaming(registry: Registry, after: int = 0, *, limit: int = 1 << 20) -> Client:
    client = Client(push_ref=None, limit=limit)
    registry.open_stream(client.conn, "e1", after=after)
    registry.stream_replayed(client.conn, logged(*range(after + 1, 4)), finished=False)
    return client


def test_a_stream_joining_mid_run_gets_its_log_then_the_items_every_stream_shares() -> None:
    registry = Registry(settings())
    early = streaming(registry)  # the log holds 1..3, all stored before it opened
    for seq in (4, 5):
        registry.route(event(seq), now=0)
    early_items = early.conn.data_to_send()
    late = streaming(registry, after=1)  # reads 2..3 from the log, then follows the tail
    for seq in (6, 7):
        registry.route(event(seq), now=0)
    late_items, more = late.conn.data_to_send(), early.conn.data_to_send()
    assert b"".join(wire.sse_chunks(early_items + more, 1 << 20)) == sse(*range(1, 8))
    assert b"".join(wire.sse_chunks(late_items, 1 << 20)) == sse(2, 3, 6, 7)
    assert [o.sse for o in more] == [sse(6), sse(7)]  # laid out with the item, once
    assert all(a is b for a, b in zip(late_items[2:], more, strict=True))  # the same objects


def test_the_shared_events_are_the_bytes_of_the_per_message_layout() -> None:
    item = wire.stream_item(7, event(7).payload)
    plain = wire.Outgoing(item.payload, False, 7)
    assert list(wire.sse_chunks([item], 1 << 20)) == list(wire.sse_chunks([plain], 1 << 20))
    head = b":ok\n\n"
    assert list(wire.sse_pieces([item, plain], 1 << 20, head)) == [
        [head, sse(7), b"id: 7\ndata: ", item.payload, b"\n\n"]
    ]


def test_a_stream_cut_at_its_bound_takes_nothing_from_the_others() -> None:
    size = len(event(4).payload) + OVERHEAD_BYTES
    registry = Registry(settings())
    slow = streaming(registry, after=3, limit=2 * size)
    fast = streaming(registry, after=3)
    for seq in (4, 5):
        registry.route(event(seq), now=0)
    assert slow.conn.open and body(fast) == sse(4, 5)
    registry.route(event(6), now=0)  # the third message passes slow's bound
    assert slow.conn.aborted and slow.conn.close_code == CloseCode.SLOW_CONSUMER
    assert slow.conn.data_to_send() == []
    registry.route(event(7, kind="executionFinished"), now=0)
    assert (
        body(fast) == sse(6) + b"id: 7\ndata: %b\n\n" % event(7, kind="executionFinished").payload
    )
    assert fast.conn.state is State.CLOSING


def test_a_push_ref_over_sse_keeps_its_own_ids_after_resume_failed() -> None:
    registry = Registry(settings(resume_buffer_count=2))
    first = Client()
    registry.register(first.conn, None, now=0)
    for seq in (1, 2, 3):
        registry.route(event(seq, push_ref="p1"), now=0)
    registry.deregister(first.conn, now=1)
    again = Client()
    registry.register(again.conn, 0, now=2)  # entry 1 was evicted: resume fails
    registry.route(event(4, push_ref="p1"), now=2)
    failed = wire.resume_failed(0).payload
    four = event(4, push_ref="p1").payload
    assert body(again) == b"data: %b\n\nid: 4\ndata: %b\n\n" % (failed, four)


def test_shared_items_stay_aligned_with_the_messages_when_the_tail_is_trimmed() -> None:
    tail, reader, lagging = Tail(), Client(push_ref=None), Client(push_ref=None)
    tail.join("reader", reader.conn, None, 0)
    seqs: list[int] = []
    for seq in range(1, 3 * TRIM_AT):
        tail.append(event(seq), now=0)
        if seq % 100 == 0:
            seqs += [o.event_id or 0 for o in reader.conn.data_to_send()]
        if seq == 2 * TRIM_AT:
            tail.join("lagging", lagging.conn, None, 0)  # joins after two trims
    seqs += [o.event_id or 0 for o in reader.conn.data_to_send()]
    assert seqs == list(range(1, 3 * TRIM_AT))
    assert body(lagging) == sse(*range(2 * TRIM_AT + 1, 3 * TRIM_AT))
