"""The hub: commands against a fake service, streams, lifecycle (in one event loop)."""

from __future__ import annotations

import asyncio

from app.bus.base import LocalEventBus
from app.push.connection import CloseCode, Connection
from app.push.hub import PushHub
from app.push.wire import ws_frame
from app.settings import Settings
from support.push import FakeService, decode, finished, run_messages, started

SETTINGS = Settings(load_examples=False)


def make_hub() -> tuple[PushHub, FakeService]:
    bus = LocalEventBus()
    service = FakeService(bus)
    hub = PushHub(settings=SETTINGS, service=service, bus=bus)
    hub.start()
    return hub, service


def replies(conn: Connection) -> list[dict[str, object]]:
    return [decode(ws_frame(o)) for o in conn.data_to_send()]


async def test_ping_heartbeat_and_garbage_each_get_at_most_one_reply() -> None:
    hub, _ = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    for frame in ('{"type":"ping"}', '{"type":"heartbeat"}', "nope", b"[]", '{"type":"x"}'):
        await hub.receive(conn, frame)
    assert [r["type"] for r in replies(conn)] == ["pong", "error", "error", "error"]
    assert conn.open


async def test_subscribe_with_after_replays_the_log_then_acks_then_goes_live() -> None:
    hub, service = make_hub()
    service.create("e1")
    messages = run_messages("e1", nodes=1)
    for message in messages[:3]:
        service.emit("e1", message)
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, '{"type":"subscribe_execution","data":{"executionId":"e1","after":1}}')
    for message in messages[3:]:
        service.emit("e1", message)
    got = replies(conn)
    assert [r["type"] for r in got] == [
        "nodeExecuteBefore",
        "nodeExecuteAfter",
        "ack",
        "nodeExecuteAfterData",
        "executionFinished",
    ]
    assert got[2] == {
        "type": "ack",
        "data": {"command": "subscribe_execution", "executionId": "e1"},
    }
    assert [r.get("meta") for r in got if r["type"] != "ack"] == [{"id": i} for i in (1, 2, 3, 4)]


async def test_subscribe_without_after_is_live_only_and_checks_the_execution() -> None:
    hub, service = make_hub()
    service.create("e1")
    service.emit("e1", started("e1"))
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, '{"type":"subscribe_execution","data":{"executionId":"e1"}}')
    await hub.receive(conn, '{"type":"subscribe_execution","data":{"executionId":"nope"}}')
    service.emit("e1", finished("e1"))
    got = replies(conn)
    assert [r["type"] for r in got] == ["ack", "error", "executionFinished"]
    assert got[1]["data"] == {
        "command": "subscribe_execution",
        "executionId": "nope",
        "code": "not_found",
        "message": "execution nope not found",
    }


async def test_cancel_is_acked_or_refused_with_the_service_error() -> None:
    hub, service = make_hub()
    service.create("e1", push_ref="p1")
    conn = hub.connect("p1", None, None, lambda: None)
    cancel = '{"type":"cancel_execution","data":{"executionId":"e1"}}'
    await hub.receive(conn, cancel)
    await hub.receive(conn, cancel)
    got = replies(conn)
    assert [r["type"] for r in got] == ["executionFinished", "ack", "error"]
    assert got[2]["data"]["code"] == "illegal_transition"  # type: ignore[index]


async def test_unsubscribe_stops_delivery() -> None:
    hub, service = make_hub()
    service.create("e1")
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, '{"type":"subscribe_execution","data":{"executionId":"e1"}}')
    await hub.receive(conn, '{"type":"unsubscribe_execution","data":{"executionId":"e1"}}')
    service.emit("e1", started("e1"))
    assert [r["type"] for r in replies(conn)] == ["ack", "ack"]


async def test_oversize_frame_aborts_with_1009() -> None:
    hub, _ = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, "x" * (64 * 1024))
    assert conn.open
    await hub.receive(conn, "é" * (33 * 1024))  # 66 KiB once encoded
    assert conn.aborted and conn.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_open_stream_sends_snapshot_then_log_then_live_until_finished() -> None:
    hub, service = make_hub()
    service.create("e1")
    messages = run_messages("e1", nodes=1)
    for message in messages[:2]:
        service.emit("e1", message)
    conn = await hub.open_stream("e1", 1, None, lambda: None)
    for message in messages[2:]:
        service.emit("e1", message)
    outs = conn.data_to_send()
    assert [o.event_id for o in outs] == [None, 2, 3, 4, 5]
    assert decode(outs[0].payload) == {
        "type": "executionSnapshot",
        "data": {
            "executionId": "e1",
            "status": "running",
            "graph_state": {"completed_nodes": []},
            "streams": {},
        },
    }
    assert not conn.open
    hub.disconnect(conn)
    assert hub.connection_count == 0


async def test_aclose_closes_every_connection_and_waits_for_transports() -> None:
    hub, _ = make_hub()
    conns = [hub.connect(f"p{i}", None, None, lambda: None) for i in range(3)]

    async def transport_goes_away() -> None:
        await asyncio.sleep(0.01)
        for conn in conns:
            hub.disconnect(conn)

    task = asyncio.create_task(transport_goes_away())
    await asyncio.wait_for(hub.aclose(), 2)
    await task
    assert all(c.close_code == CloseCode.GOING_AWAY and not c.open for c in conns)
    late = hub.connect("late", None, None, lambda: None)
    assert not late.open
    hub.disconnect(late)


def test_metrics_text_is_prometheus_gauges() -> None:
    hub, _ = make_hub()
    hub.connect("p1", None, None, lambda: None)
    assert hub.metrics_text() == (
        "# TYPE graphpush_push_connections gauge\ngraphpush_push_connections 1\n"
        "# TYPE graphpush_push_sessions gauge\ngraphpush_push_sessions 1\n"
        "# TYPE graphpush_push_execution_streams gauge\ngraphpush_push_execution_streams 0\n"
        "# TYPE graphpush_push_feed_streams gauge\ngraphpush_push_feed_streams 0\n"
    )
