"""Fan-out by cursor (app/push/tail.py) without an event loop: events in, exact bytes out."""

from __future__ import annotations

import pytest
from test_push_core import Client, event, settings

from app.bus.base import PushEvent
from app.model.records import StoredEvent
from app.push import wire
from app.push.connection import OVERHEAD_BYTES, CloseCode, State
from app.push.registry import Registry
from app.push.tail import SCAN_BYTES, TRIM_AT, Tail


def frame(seq: int, event_id: int, kind: str = "nodeExecuteBefore") -> bytes:
    return b'{"type":"%s","data":{"executionId":"e1","n":%d},"meta":{"id":%d}}' % (
        kind.encode(),
        seq,
        event_id,
    )


def subscribed(registry: Registry, push_ref: str, after: int = 0, **kw: object) -> Client:
    client = Client(push_ref, **kw)  # type: ignore[arg-type]
    registry.register(client.conn, None, now=0)
    registry.subscribe(client.conn, "e1", after=after)
    return client


def logged(*seqs: int) -> list[StoredEvent]:
    return [StoredEvent(s, "nodeExecuteBefore", event(s).payload) for s in seqs]


def test_one_tail_per_execution_and_each_reader_gets_everything_since_its_last_write() -> None:
    registry = Registry(settings())
    a, b = subscribed(registry, "a"), subscribed(registry, "b")
    registry.replayed(a.conn, "e1", [], now=0)
    registry.replayed(b.conn, "e1", [], now=0)
    for seq in (1, 2):
        registry.route(event(seq), now=0)
    assert a.frames() == [frame(1, 1), frame(2, 2)]  # a reads; b does not, yet
    for seq in (3, 4):
        registry.route(event(seq), now=0)
    assert a.frames() == [frame(3, 3), frame(4, 4)]
    assert b.frames() == [frame(s, s) for s in (1, 2, 3, 4)]
    assert (a.wakeups, b.wakeups) == (2, 1)  # once per batch, not per message
    (tail,) = registry._tails.values()
    assert len(tail.lanes) == 2


def test_a_subscriber_joining_mid_run_gets_the_log_then_the_same_tail() -> None:
    registry = Registry(settings())
    early = subscribed(registry, "early")
    registry.replayed(early.conn, "e1", [], now=0)
    for seq in (1, 2, 3):
        registry.route(event(seq), now=0)
    late = subscribed(registry, "late", after=1)
    registry.route(event(4), now=0)  # arrives while the late one reads the log
    registry.replayed(late.conn, "e1", logged(1, 2, 3, 4, 5), now=0)  # 5: stored, not yet routed
    registry.route(event(5), now=0)
    registry.route(event(6, kind="executionFinished"), now=0)
    assert early.frames() == [frame(s, s) for s in (1, 2, 3, 4, 5)] + [
        frame(6, 6, "executionFinished")
    ]
    assert late.frames() == [
        frame(2, 1),
        frame(3, 2),
        frame(4, 3),
        frame(5, 4),
        frame(6, 5, "executionFinished"),
    ]
    assert registry._tails == {} and registry.followed() == set()


def test_messages_of_a_segment_keep_their_order_with_replies_and_other_runs() -> None:
    registry = Registry(settings())
    client = subscribed(registry, "p1")
    registry.replayed(client.conn, "e1", [], now=0)
    registry.route(event(1), now=0)
    registry.route(event(2), now=0)
    client.conn.deliver(wire.PONG)  # ends the segment: 1 and 2 get their ids before
    registry.route(event(3), now=0)
    registry.route(event(1, eid="e2", push_ref="p1"), now=0)  # a run it started
    registry.route(event(4), now=0)
    assert client.frames() == [
        frame(1, 1),
        frame(2, 2),
        b'{"type":"pong"}',
        frame(3, 3),
        b'{"type":"nodeExecuteBefore","data":{"executionId":"e2","n":1},"meta":{"id":4}}',
        frame(4, 5),
    ]


def test_a_cut_at_the_bound_counts_the_segment_and_the_batch_being_written() -> None:
    size = len(event(1).payload) + OVERHEAD_BYTES
    registry = Registry(settings())
    slow = subscribed(registry, "slow", limit=4 * size)
    fast = subscribed(registry, "fast", limit=4 * size)
    registry.replayed(slow.conn, "e1", [], now=0)
    registry.replayed(fast.conn, "e1", [], now=0)
    registry.route(event(1), now=0)
    assert len(slow.conn.data_to_send()) == 1  # taken: being written until the next call
    assert fast.frames() == [frame(1, 1)]
    for seq in (2, 3, 4):
        registry.route(event(seq), now=0)
        assert fast.frames() == [frame(seq, seq)]
    assert slow.conn.open and slow.conn.queued_bytes == 3 * size  # + 1 being written
    registry.route(event(5), now=0)
    assert slow.conn.state is State.ABORTED
    assert slow.conn.close_code == CloseCode.SLOW_CONSUMER
    assert slow.conn.data_to_send() == []
    assert fast.frames() == [frame(5, 5)] and fast.conn.open


def test_a_reader_cut_off_resumes_from_its_buffer_or_is_told_it_cannot() -> None:
    size = len(event(1).payload) + OVERHEAD_BYTES
    registry = Registry(settings(resume_buffer_count=3))
    slow = Client("slow", limit=2 * size)
    registry.register(slow.conn, None, now=0)
    for seq in (1, 2, 3):
        registry.route(event(seq, push_ref="slow"), now=0)
    assert slow.conn.aborted  # cut at the third; what it held still has its ids
    registry.deregister(slow.conn, now=0)
    registry.route(event(4, push_ref="slow"), now=0)  # buffered, nobody connected
    again = Client("slow")
    registry.register(again.conn, 1, now=1)
    registry.route(event(5, push_ref="slow"), now=1)
    assert again.frames() == [frame(2, 2), frame(3, 3), frame(4, 4), frame(5, 5)]
    too_late = Client("slow")
    registry.register(too_late.conn, 0, now=2)  # entry 1 left the buffer (count 3)
    assert too_late.frames() == [b'{"type":"resumeFailed","data":{"lastEventId":0}}']


def test_a_reader_falling_off_the_tail_replays_from_the_store() -> None:
    registry = Registry(settings())
    size = len(event(1).payload) + OVERHEAD_BYTES
    stalled = subscribed(registry, "p1", limit=2 * size)
    registry.replayed(stalled.conn, "e1", [], now=0)
    for seq in (1, 2, 3):
        registry.route(event(seq), now=0)
    assert stalled.conn.aborted
    registry.deregister(stalled.conn, now=0)
    back = subscribed(registry, "p1", after=1)  # a new connection asks the log after seq 1
    registry.replayed(back.conn, "e1", logged(1, 2, 3), now=0)
    registry.route(event(4, kind="executionFinished"), now=0)
    assert [o.payload for o in back.conn.data_to_send()] == [
        event(2).payload,
        event(3).payload,
        event(4, kind="executionFinished").payload,
    ]


def test_streams_read_the_tail_by_seq_and_close_after_finished() -> None:
    registry, one, two = Registry(settings()), Client(push_ref=None), Client(push_ref=None)
    for client in (one, two):
        registry.open_stream(client.conn, "e1", after=0)
        registry.stream_replayed(client.conn, [], finished=False)
    registry.route(event(1), now=0)
    assert [o.event_id for o in one.conn.data_to_send()] == [1]
    registry.route(event(2, kind="executionFinished"), now=0)
    registry.route(event(3), now=0)
    assert [o.event_id for o in one.conn.data_to_send()] == [2]
    assert [o.event_id for o in two.conn.data_to_send()] == [1, 2]
    assert one.conn.state is two.conn.state is State.CLOSING


def test_a_growing_segment_wakes_its_writer_at_a_quarter_of_the_bound() -> None:
    size = len(event(1).payload) + OVERHEAD_BYTES
    registry = Registry(settings())
    client = subscribed(registry, "p1", limit=8 * size)
    registry.replayed(client.conn, "e1", [], now=0)
    registry.route(event(1), now=0)
    assert client.wakeups == 1 and not client.conn.pressing
    registry.route(event(2), now=0)
    assert client.wakeups == 2 and client.conn.pressing


def test_the_tail_keeps_only_what_an_open_segment_needs() -> None:
    tail, client = Tail(), Client()
    tail.join("p1", client.conn, None, 0)
    for seq in range(1, 3 * TRIM_AT):
        tail.append(event(seq), now=0)
        if seq % 100 == 0:
            client.conn.data_to_send()
    assert len(tail.events) < TRIM_AT
    assert [o.event_id for o in client.conn.data_to_send()] == list(range(3001, 3 * TRIM_AT))


def test_a_reader_far_from_its_bound_is_cut_exactly_when_it_passes_it() -> None:
    limit = 8 * SCAN_BYTES  # a quarter of it is far too: found by the periodic scan
    registry = Registry(settings())
    slow = subscribed(registry, "slow", limit=limit)
    registry.replayed(slow.conn, "e1", [], now=0)
    body = b'{"type":"nodeExecuteBefore","data":"' + b"x" * (SCAN_BYTES // 3) + b'"}'
    size = len(body) + OVERHEAD_BYTES
    cut_at = limit // size + 1  # the first message that takes it past the bound
    for seq in range(1, cut_at):
        registry.route(PushEvent("e1", seq, "nodeExecuteBefore", body), now=0)
    assert slow.conn.open and slow.conn.queued_bytes == (cut_at - 1) * size <= limit
    registry.route(PushEvent("e1", cut_at, "nodeExecuteBefore", body), now=0)
    assert slow.conn.aborted and slow.conn.close_code == CloseCode.SLOW_CONSUMER


@pytest.mark.parametrize("follows", ["subscribed", "started from it"])
def test_messages_routed_while_a_connection_closes_keep_one_id_each_for_its_resume(
    follows: str,
) -> None:
    registry = Registry(settings())
    push_ref = None if follows == "subscribed" else "p1"
    if push_ref is None:
        leaving = subscribed(registry, "p1")
        registry.replayed(leaving.conn, "e1", [], now=0)
    else:
        leaving = Client("p1")
        registry.register(leaving.conn, None, now=0)
    registry.route(event(1, push_ref=push_ref), now=0)
    assert leaving.frames() == [frame(1, 1)]
    leaving.conn.close(CloseCode.GOING_AWAY, "server shutting down")  # not deregistered yet
    for seq in (2, 3):
        registry.route(event(seq, push_ref=push_ref), now=0)
    assert leaving.conn.data_to_send() == []
    registry.deregister(leaving.conn, now=0)
    back = Client("p1")
    registry.register(back.conn, 1, now=0)
    registry.route(event(4, push_ref=push_ref), now=0)
    assert back.frames() == [frame(2, 2), frame(3, 3), frame(4, 4)]
