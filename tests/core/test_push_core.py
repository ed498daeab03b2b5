"""The push core without an event loop: events in, exact bytes out."""

from __future__ import annotations

import pytest

from app.bus.base import PushEvent
from app.model.records import StoredEvent
from app.push import wire
from app.push.connection import CloseCode, Connection, State
from app.push.registry import Registry
from app.settings import Settings


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {"load_examples": False, "resume_buffer_age_s": 60.0}
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def event(seq: int, *, eid: str = "e1", kind: str = "nodeExecuteBefore", **kw: object) -> PushEvent:
    payload = b'{"type":"%s","data":{"executionId":"%s","n":%d}}' % (
        kind.encode(),
        eid.encode(),
        seq,
    )
    return PushEvent(eid, seq, kind, payload, **kw)  # type: ignore[arg-type]


class Client:
    """A connection plus the frames a WebSocket transport would write for it."""

    def __init__(self, push_ref: str | None = "p1", owner: str | None = None, limit: int = 1 << 20):
        self.wakeups = 0
        self.conn = Connection(push_ref=push_ref, owner=owner, limit=limit, wakeup=self._wake)

    def _wake(self) -> None:
        self.wakeups += 1

    def frames(self) -> list[bytes]:
        return [wire.ws_frame(out) for out in self.conn.data_to_send()]


def test_ws_frame_splices_meta_id_beside_type_and_data() -> None:
    out = wire.Outgoing(b'{"type":"executionWaiting","data":{"executionId":"7"}}', False, 12)
    assert wire.ws_frame(out) == (
        b'{"type":"executionWaiting","data":{"executionId":"7"},"meta":{"id":12}}'
    )
    assert wire.ws_frame(wire.PONG) == b'{"type":"pong"}'


def test_sse_chunk_has_id_lines_only_for_cursor_messages() -> None:
    outs = [wire.Outgoing(b'{"type":"a"}', False, 3), wire.Outgoing(b'{"type":"b"}')]
    chunks = list(wire.sse_chunks(outs, 1 << 20))
    assert chunks == [b'id: 3\ndata: {"type":"a"}\n\ndata: {"type":"b"}\n\n']


def test_sse_chunks_are_bounded_and_a_large_event_is_a_chunk_of_its_own() -> None:
    small, large = wire.Outgoing(b"s" * 10, event_id=1), wire.Outgoing(b"L" * 100, event_id=2)
    chunks = list(wire.sse_chunks([small, small, large, small], 40, head=b":ok\n\n"))
    assert chunks == [
        b":ok\n\nid: 1\ndata: ssssssssss\n\nid: 1\ndata: ssssssssss\n\n",
        b"id: 2\ndata: " + b"L" * 100 + b"\n\n",
        b"id: 1\ndata: ssssssssss\n\n",
    ]
    assert list(wire.sse_chunks([], 40)) == []


def test_replies_are_exact_n8n_style_objects() -> None:
    assert wire.ack("cancel_execution", "9").payload == (
        b'{"type":"ack","data":{"command":"cancel_execution","executionId":"9"}}'
    )
    assert wire.error("not_found", "no such execution").payload == (
        b'{"type":"error","data":{"code":"not_found","message":"no such execution"}}'
    )
    assert wire.resume_failed(4).payload == b'{"type":"resumeFailed","data":{"lastEventId":4}}'


def test_run_messages_reach_the_push_ref_with_connection_ids_and_binary_after_data() -> None:
    registry, client = Registry(settings()), Client()
    registry.register(client.conn, None, now=0)
    registry.route(event(1, kind="executionStarted", push_ref="p1"), now=0)
    registry.route(event(2, kind="nodeExecuteAfterData", push_ref="p1"), now=0)
    registry.route(event(3, push_ref="other"), now=0)
    outs = client.conn.data_to_send()
    assert [(o.event_id, o.binary) for o in outs] == [(1, False), (2, True)]
    assert [wire.ws_frame(o) for o in outs] == [
        b'{"type":"executionStarted","data":{"executionId":"e1","n":1},"meta":{"id":1}}',
        b'{"type":"nodeExecuteAfterData","data":{"executionId":"e1","n":2},"meta":{"id":2}}',
    ]


def test_broadcast_shares_one_payload_object_between_connections() -> None:
    registry, a, b = Registry(settings()), Client("a"), Client("b")
    registry.register(a.conn, None, now=0)
    registry.register(b.conn, None, now=0)
    recovered = event(0, kind="executionRecovered", broadcast=True)
    registry.route(recovered, now=0)
    (out_a,), (out_b,) = a.conn.data_to_send(), b.conn.data_to_send()
    assert out_a.payload is out_b.payload is recovered.payload


def test_new_connection_with_same_push_ref_replaces_the_old_one() -> None:
    registry, old, new = Registry(settings()), Client(), Client()
    registry.register(old.conn, None, now=0)
    registry.register(new.conn, None, now=0)
    assert old.conn.state is State.ABORTED and old.conn.close_code == CloseCode.NORMAL
    registry.deregister(old.conn, now=1)  # the old one's cleanup runs late
    assert registry.has("p1")
    registry.route(event(1, push_ref="p1"), now=1)
    assert new.frames() == [
        b'{"type":"nodeExecuteBefore","data":{"executionId":"e1","n":1},"meta":{"id":1}}'
    ]
    assert old.frames() == []


def test_reconnect_with_last_id_gets_exactly_the_missed_messages() -> None:
    registry, first = Registry(settings()), Client()
    registry.register(first.conn, None, now=0)
    for seq in (1, 2):
        registry.route(event(seq, push_ref="p1"), now=0)
    assert len(first.frames()) == 2
    registry.deregister(first.conn, now=1)
    for seq in (3, 4):
        registry.route(event(seq, push_ref="p1"), now=2)  # nobody connected: buffered
    second = Client()
    registry.register(second.conn, 2, now=3)
    registry.route(event(5, push_ref="p1"), now=3)
    assert [o.event_id for o in second.conn.data_to_send()] == [3, 4, 5]


@pytest.mark.parametrize(
    ("overrides", "last_id", "when"),
    [
        ({"resume_buffer_count": 2}, 1, 0),  # entry 2 was evicted by count
        ({"resume_buffer_age_s": 5.0}, 1, 10),  # ... by age
        ({}, 9, 0),  # an id never handed out (the server restarted)
    ],
)
def test_resume_failed_when_the_buffer_does_not_cover_the_gap(
    overrides: dict[str, object], last_id: int, when: float
) -> None:
    registry, first = Registry(settings(**overrides)), Client()
    registry.register(first.conn, None, now=0)
    for seq in (1, 2, 3, 4):
        registry.route(event(seq, push_ref="p1"), now=0)
    second = Client()
    registry.register(second.conn, last_id, now=when)
    registry.route(event(5, push_ref="p1"), now=when)
    frames = second.frames()
    assert frames[0] == b'{"type":"resumeFailed","data":{"lastEventId":%d}}' % last_id
    assert frames[1:] == [
        b'{"type":"nodeExecuteBefore","data":{"executionId":"e1","n":5},"meta":{"id":5}}'
    ]


def test_resume_buffer_is_bounded_in_bytes() -> None:
    registry = Registry(settings(connection_buffer_bytes=1000))
    for seq in range(1, 51):
        registry.route(event(seq, push_ref="p1"), now=0)
    buffer = registry.sessions["p1"].buffer
    assert buffer.last_id == 50 and 0 < len(buffer) < 50
    assert sum(len(e.payload) for _, e in buffer.after(50 - len(buffer), 0) or []) <= 1000


def test_slow_consumer_is_aborted_past_its_bound_without_touching_others() -> None:
    registry = Registry(settings(connection_buffer_bytes=2000))
    slow, fast = Client("slow", limit=2000), Client("fast", limit=2000)
    registry.register(slow.conn, None, now=0)
    registry.register(fast.conn, None, now=0)
    big = b'{"type":"nodeExecuteBefore","data":{"x":"' + b"x" * 500 + b'"}}'
    for seq in range(1, 11):
        registry.route(PushEvent("e", seq, "nodeExecuteBefore", big, broadcast=True), now=0)
        assert len(fast.frames()) == 1  # the fast one reads as it goes
    assert slow.conn.state is State.ABORTED
    assert slow.conn.close_code == CloseCode.SLOW_CONSUMER == 4008
    assert slow.conn.queued_bytes == 0 and slow.conn.data_to_send() == []


def test_backlog_does_not_count_against_the_bound() -> None:
    conn = Client(limit=100).conn
    conn.deliver(wire.Outgoing(b"x" * 500), backlog=True)
    conn.deliver(wire.Outgoing(b"y" * 10))
    assert conn.open
    conn.deliver(wire.Outgoing(b"z" * 200))
    assert conn.aborted


def test_the_batch_being_written_counts_against_the_bound_until_the_next_is_taken() -> None:
    conn = Client(limit=1000).conn
    conn.deliver(wire.Outgoing(b"x" * 600))
    assert len(conn.data_to_send()) == 1  # the transport writes it (a stalled socket: for long)
    conn.deliver(wire.Outgoing(b"y" * 300))
    assert conn.aborted and conn.close_code == CloseCode.SLOW_CONSUMER


def test_taking_the_next_batch_releases_the_one_written() -> None:
    conn = Client(limit=1000).conn
    conn.deliver(wire.Outgoing(b"x" * 600))
    conn.data_to_send()
    assert conn.data_to_send() == []  # the transport wrote the batch and asks for more
    conn.deliver(wire.Outgoing(b"y" * 600))
    assert conn.open


def test_wakeup_once_per_batch_and_on_state_changes() -> None:
    client = Client()
    client.conn.deliver(wire.PONG)
    client.conn.deliver(wire.PONG)
    assert client.wakeups == 1
    client.conn.data_to_send()
    client.conn.deliver(wire.PONG)
    client.conn.close(CloseCode.GOING_AWAY)
    assert client.wakeups == 3
    client.conn.deliver(wire.PONG)  # closing: ignored
    assert len(client.conn.data_to_send()) == 1 and not client.conn.open


def test_subscription_replays_the_log_then_live_without_gap_or_duplicate() -> None:
    registry, client = Registry(settings()), Client()
    registry.register(client.conn, None, now=0)
    registry.subscribe(client.conn, "e9", after=2)
    for seq in (5, 6):  # arrive while the log is being read
        registry.route(event(seq, eid="e9"), now=0)
    assert client.conn.data_to_send() == []
    logged = [StoredEvent(s, "nodeExecuteBefore", event(s, eid="e9").payload) for s in (3, 4, 5)]
    registry.replayed(client.conn, "e9", logged, now=0)
    registry.route(event(6, eid="e9"), now=0)  # a duplicate delivery is dropped too
    registry.route(event(7, eid="e9"), now=0)
    outs = client.conn.data_to_send()
    assert [o.payload for o in outs] == [event(s, eid="e9").payload for s in (3, 4, 5, 6, 7)]
    assert [o.event_id for o in outs] == [1, 2, 3, 4, 5]


def test_subscription_ends_with_the_run_and_is_deduplicated_with_the_push_ref() -> None:
    registry, client = Registry(settings()), Client()
    registry.register(client.conn, None, now=0)
    registry.subscribe(client.conn, "e1", after=0)
    registry.replayed(client.conn, "e1", [], now=0)
    registry.route(event(1, push_ref="p1"), now=0)  # started from p1 *and* subscribed
    registry.route(event(2, kind="executionFinished", push_ref="p1"), now=0)
    assert len(client.conn.data_to_send()) == 2
    assert registry.sessions["p1"].subscriptions == {}


def test_owner_only_sees_its_own_executions() -> None:
    registry, mine = Registry(settings()), Client("a", owner="alice")
    registry.register(mine.conn, None, now=0)
    registry.route(event(1, push_ref="a", owner="bob"), now=0)
    registry.route(event(0, kind="executionRecovered", broadcast=True, owner="bob"), now=0)
    registry.route(event(2, push_ref="a", owner="alice"), now=0)
    assert [o.payload for o in mine.conn.data_to_send()] == [event(2).payload]


def test_execution_stream_uses_seq_as_id_and_closes_after_finished() -> None:
    registry, client = Registry(settings()), Client(push_ref=None)
    registry.open_stream(client.conn, "e1", after=1)
    registry.route(event(3), now=0)
    logged = [StoredEvent(2, "nodeExecuteBefore", event(2).payload)]
    registry.stream_replayed(client.conn, logged, finished=False)
    registry.route(event(4, kind="executionFinished"), now=0)
    registry.route(event(5), now=0)
    assert [(o.event_id, o.binary) for o in client.conn.data_to_send()] == [
        (2, False),
        (3, False),
        (4, False),
    ]
    assert client.conn.state is State.CLOSING
    registry.deregister(client.conn, now=0)
    assert registry.streams == {}


def test_stream_of_a_finished_run_ends_after_the_replay() -> None:
    registry, client = Registry(settings()), Client(push_ref=None)
    registry.open_stream(client.conn, "e1", after=9)
    registry.stream_replayed(client.conn, [], finished=True)
    assert not client.conn.open and client.conn.data_to_send() == []


def test_sweep_forgets_idle_sessions_but_keeps_connected_ones() -> None:
    registry, client = Registry(settings(resume_buffer_age_s=10.0)), Client("live")
    registry.register(client.conn, None, now=0)
    registry.route(event(1, push_ref="gone"), now=0)
    registry.sweep(now=5)
    assert set(registry.sessions) == {"live", "gone"}
    registry.sweep(now=11)
    assert set(registry.sessions) == {"live"}
