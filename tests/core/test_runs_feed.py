"""The runs feed in the push core (SPEC §11): exact bytes, no event loop I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from app import messages as m
from app.bus.base import LocalEventBus, PushEvent
from app.errors import Forbidden, NotFound
from app.model.access import Caller, Scope
from app.push.connection import Connection
from app.push.feed import RunRef, RunsPage, snapshot_message
from app.push.hub import PushHub
from app.push.wire import sse_chunks, ws_frame
from app.settings import Settings
from support.push import FakeService, before, finished, started, waiting

SETTINGS = Settings(load_examples=False)


class FakeRuns:
    """Runs of workflow ``wf`` as list items; ``during`` runs while a snapshot is read."""

    def __init__(self) -> None:
        self.items: list[tuple[dict[str, Any], int, str | None]] = []
        self.during: Callable[[], None] | None = None
        self.asked: list[tuple[str, int, str | None]] = []

    async def latest_runs(self, workflow_id: str, limit: int, owner: str | None) -> RunsPage:
        self.asked.append((workflow_id, limit, owner))
        if workflow_id != "wf":
            raise NotFound(f"workflow {workflow_id!r} not found")
        if self.during is not None:
            self.during()
        mine = [(i, s) for i, s, o in self.items if owner is None or o == owner][:limit]
        return RunsPage([i for i, _ in mine], {i["execution_id"]: s for i, s in mine})

    async def started_since(self, workflow_id: str, since_ms: int) -> list[RunRef]:
        raise AssertionError("asked only after a gap, which an in-process bus never has")


def make_hub() -> tuple[PushHub, LocalEventBus, FakeRuns]:
    bus = LocalEventBus()
    runs = FakeRuns()
    hub = PushHub(settings=SETTINGS, service=FakeService(bus), bus=bus, runs=runs)
    hub.start()
    return hub, bus, runs


def publish(
    bus: LocalEventBus,
    eid: str,
    seq: int,
    message: m.ExecutionMessage,
    *,
    workflow: str = "wf",
    owner: str | None = None,
    push_ref: str | None = None,
) -> None:
    kind = message.__struct_config__.tag
    assert isinstance(kind, str)
    payload = m.encode(message)
    bus.publish_nowait(
        PushEvent(eid, seq, kind, payload, push_ref, owner=owner, workflow_id=workflow)
    )


def frames(conn: Connection) -> list[bytes]:
    return [ws_frame(o) for o in conn.data_to_send()]


def item(eid: str, status: str) -> dict[str, Any]:
    return {"execution_id": eid, "status": status}


SUBSCRIBE = b'{"type":"subscribe_workflow","data":{"workflowId":"wf","limit":5}}'
ACK = b'{"type":"ack","data":{"command":"subscribe_workflow","workflowId":"wf"}}'


def started_frame(eid: str, meta: int) -> bytes:
    return (
        b'{"type":"executionStarted","data":{"executionId":"%s","mode":"manual",'
        b'"startedAt":"2026-11-25T18:37:50.207Z","workflowId":"wf","flattedRunData":"[{}]",'
        b'"workflowName":"Flow"},"meta":{"id":%d}}' % (eid.encode(), meta)
    )


def finished_frame(eid: str, meta: int) -> bytes:
    return (
        b'{"type":"executionFinished","data":{"executionId":"%s","workflowId":"wf",'
        b'"status":"success"},"meta":{"id":%d}}' % (eid.encode(), meta)
    )


async def test_subscribe_workflow_sends_the_snapshot_then_acks_then_lifecycle_only() -> None:
    hub, bus, runs = make_hub()
    runs.items = [(item("e1", "success"), 11, None)]
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, SUBSCRIBE)
    publish(bus, "e2", 1, started("e2"))
    publish(bus, "e2", 2, before("e2", "A", 0))  # not a lifecycle message: not in the feed
    publish(bus, "x1", 1, started("x1"), workflow="other")  # another workflow
    publish(bus, "e2", 3, waiting("e2"))
    publish(bus, "e2", 4, finished("e2"))
    assert frames(conn) == [
        b'{"type":"runsSnapshot","data":{"workflowId":"wf","items":'
        b'[{"execution_id":"e1","status":"success"}]},"meta":{"id":1}}',
        ACK,
        started_frame("e2", 2),
        b'{"type":"executionWaiting","data":{"executionId":"e2"},"meta":{"id":3}}',
        finished_frame("e2", 4),
    ]
    assert runs.asked == [("wf", 5, None)]


async def test_events_during_the_snapshot_read_follow_it_unless_it_reflects_them() -> None:
    hub, bus, runs = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)

    def meanwhile() -> None:  # e1 started and was stored; e2 started, not yet stored
        publish(bus, "e1", 1, started("e1"))
        publish(bus, "e2", 1, started("e2"))
        runs.items = [(item("e1", "running"), 1, None), (item("e2", "new"), 0, None)]

    runs.during = meanwhile
    await hub.receive(conn, SUBSCRIBE)
    publish(bus, "e1", 5, finished("e1"))
    got = frames(conn)
    assert got[0].startswith(b'{"type":"runsSnapshot","data":{"workflowId":"wf","items":[{')
    assert got[1:] == [started_frame("e2", 2), ACK, finished_frame("e1", 3)]


async def test_a_reconnect_resumes_the_feed_from_the_pushref_buffer_without_gap() -> None:
    hub, bus, runs = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, SUBSCRIBE)
    publish(bus, "e1", 1, started("e1"))
    assert frames(conn)[1:] == [ACK, started_frame("e1", 2)]
    hub.disconnect(conn)
    publish(bus, "e1", 2, finished("e1"))  # while away
    again = hub.connect("p1", None, 2, lambda: None)
    publish(bus, "e3", 1, started("e3"))
    assert frames(again) == [finished_frame("e1", 3), started_frame("e3", 4)]
    assert len(runs.asked) == 1  # the subscription carried over: no second snapshot


async def test_a_run_started_by_the_follower_comes_once() -> None:
    hub, bus, _ = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, SUBSCRIBE)
    frames(conn)
    publish(bus, "e1", 1, started("e1"), push_ref="p1")
    publish(bus, "e1", 2, before("e1", "A", 0), push_ref="p1")
    publish(bus, "e1", 3, finished("e1"), push_ref="p1")
    assert [msgspec.json.decode(f)["type"] for f in frames(conn)] == [
        "executionStarted",
        "nodeExecuteBefore",
        "executionFinished",
    ]


async def test_an_api_key_sees_only_its_own_runs() -> None:
    hub, bus, runs = make_hub()
    runs.items = [(item("a1", "success"), 3, "alice"), (item("b1", "success"), 3, "bob")]
    conn = hub.connect("p1", "alice", None, lambda: None)
    await hub.receive(conn, SUBSCRIBE)
    publish(bus, "b2", 1, started("b2"), owner="bob")
    publish(bus, "a2", 1, started("a2"), owner="alice")
    got = [msgspec.json.decode(f) for f in frames(conn)]
    assert got[0]["data"]["items"] == [item("a1", "success")]
    assert [(g["type"], g["data"].get("executionId")) for g in got[1:]] == [
        ("ack", None),
        ("executionStarted", "a2"),
    ]
    assert runs.asked == [("wf", 5, "alice")]


async def test_unknown_workflow_and_bad_limit_get_one_error_and_no_feed() -> None:
    hub, bus, _ = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, b'{"type":"subscribe_workflow","data":{"workflowId":"nope"}}')
    await hub.receive(conn, b'{"type":"subscribe_workflow","data":{"workflowId":"wf","limit":0}}')
    await hub.receive(conn, b'{"type":"subscribe_workflow","data":{"workflowId":"wf","limit":201}}')
    publish(bus, "e1", 1, started("e1"), workflow="nope")
    assert frames(conn) == [
        b'{"type":"error","data":{"command":"subscribe_workflow","workflowId":"nope",'
        b'"code":"not_found","message":"workflow \'nope\' not found"}}',
        b'{"type":"error","data":{"command":"subscribe_workflow","workflowId":"wf",'
        b'"code":"invalid_command","message":"Expected `int` >= 1 - at `$.data.limit`"}}',
        b'{"type":"error","data":{"command":"subscribe_workflow","workflowId":"wf",'
        b'"code":"invalid_command","message":"Expected `int` <= 200 - at `$.data.limit`"}}',
    ]


async def test_unsubscribe_workflow_acks_and_stops_the_feed() -> None:
    hub, bus, _ = make_hub()
    conn = hub.connect("p1", None, None, lambda: None)
    await hub.receive(conn, SUBSCRIBE)
    await hub.receive(conn, b'{"type":"unsubscribe_workflow","data":{"workflowId":"wf"}}')
    publish(bus, "e1", 1, started("e1"))
    assert frames(conn)[1:] == [
        ACK,
        b'{"type":"ack","data":{"command":"unsubscribe_workflow","workflowId":"wf"}}',
    ]


async def test_a_feed_stream_has_the_feed_log_as_cursor_and_resumes_from_it() -> None:
    hub, bus, runs = make_hub()
    runs.during = lambda: publish(bus, "e1", 1, started("e1"))  # held, then sent
    conn = await hub.open_feed("wf", 20, None, Caller(), lambda: None)
    publish(bus, "e1", 2, finished("e1"))
    got = conn.data_to_send()
    base = got[0].event_id
    assert base is not None
    assert [o.event_id for o in got] == [base, base + 1, base + 2]
    assert b"".join(sse_chunks(got[1:], 1 << 20)) == (
        b"id: %d\ndata: " % (base + 1) + m.encode(started("e1")) + b"\n\n"
        b"id: %d\ndata: " % (base + 2) + m.encode(finished("e1")) + b"\n\n"
    )
    hub.disconnect(conn)
    publish(bus, "e2", 1, started("e2"))  # while away
    again = await hub.open_feed("wf", 20, base + 2, Caller(), lambda: None)
    assert [(o.event_id, o.payload) for o in again.data_to_send()] == [
        (base + 3, m.encode(started("e2")))
    ]
    assert len(runs.asked) == 1  # resumed: no snapshot
    hub.disconnect(again)


async def test_a_feed_stream_cursor_the_log_does_not_hold_gets_a_new_snapshot() -> None:
    hub, _, runs = make_hub()
    conn = await hub.open_feed("wf", 3, 12345, Caller(), lambda: None)
    assert msgspec.json.decode(conn.data_to_send()[0].payload)["type"] == "runsSnapshot"
    assert runs.asked == [("wf", 3, None)]
    hub.disconnect(conn)
    assert hub.stats()["push_feed_streams"] == 0


async def test_a_feed_stream_of_an_unknown_workflow_raises_and_leaves_nothing() -> None:
    hub, _, _ = make_hub()
    try:
        await hub.open_feed("nope", 20, None, Caller(), lambda: None)
    except NotFound:
        pass
    else:
        raise AssertionError("expected NotFound")
    assert hub.connection_count == 0
    assert hub.stats()["push_feed_streams"] == 0


def test_an_oversized_snapshot_drops_graph_states_then_the_oldest_items() -> None:
    items = [{"execution_id": f"e{i}", "graph_state": {"x": "y" * 100}} for i in range(3)]
    page = RunsPage(items, {})
    full = snapshot_message("wf", page, 10_000)
    assert msgspec.json.decode(full)["data"]["items"] == items
    slim = snapshot_message("wf", page, 150)
    assert slim == (
        b'{"type":"runsSnapshot","data":{"workflowId":"wf","items":'
        b'[{"execution_id":"e0"},{"execution_id":"e1"},{"execution_id":"e2"}]}}'
    )
    assert msgspec.json.decode(snapshot_message("wf", page, 90))["data"]["items"] == [
        {"execution_id": "e0"}
    ]


READ_WF = Scope(actions=frozenset({"read"}), workflow_id="wf")


async def test_a_token_scoped_to_the_workflow_follows_it_and_sees_only_its_runs() -> None:
    hub, bus, runs = make_hub()
    conn = hub.connect("p1", "alice", None, lambda: None, scope=READ_WF)
    await hub.receive(conn, SUBSCRIBE)
    publish(bus, "e1", 1, started("e1"), owner="alice")
    publish(bus, "e2", 1, started("e2"), owner="bob")  # another key's run of the workflow
    assert frames(conn)[1:] == [ACK, started_frame("e1", 2)]
    assert runs.asked == [("wf", 5, "alice")]


async def test_a_token_scoped_elsewhere_is_refused_the_feed() -> None:
    hub, _, runs = make_hub()
    for scope in (
        Scope(actions=frozenset({"read"}), workflow_id="other"),
        Scope(actions=frozenset({"read"}), execution_ids=frozenset({"e1"})),
        Scope(actions=frozenset({"cancel"}), workflow_id="wf"),
    ):
        conn = hub.connect("p1", "alice", None, lambda: None, scope=scope)
        await hub.receive(conn, SUBSCRIBE)
        [reply] = [msgspec.json.decode(f) for f in frames(conn)]
        assert (reply["type"], reply["data"]["code"]) == ("error", "forbidden")
        try:
            await hub.open_feed("wf", 20, None, Caller("alice", scope), lambda: None)
        except Forbidden:
            pass
        else:
            raise AssertionError(f"{scope} opened the feed stream")
    assert runs.asked == []
    assert hub.stats()["push_feed_streams"] == 0
