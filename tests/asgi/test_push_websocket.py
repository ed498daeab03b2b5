"""WebSocket transport through Starlette's TestClient (the ASGI tier)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app import messages as m
from app.settings import Settings
from support.push import Harness, after_data, decode, run_messages, started


@pytest.fixture
def harness() -> Harness:
    return Harness(Settings(load_examples=False))


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(harness.app) as client:
        yield client


def emitter(harness: Harness, client: TestClient) -> Callable[[str, m.ExecutionMessage], None]:
    def emit(eid: str, message: m.ExecutionMessage) -> None:
        async def call() -> None:
            harness.service.emit(eid, message)

        client.portal.call(call)

    return emit


def close_code(ws: Any) -> int:
    """The code of the close frame the server sends next."""
    frame = ws.receive()
    assert frame["type"] == "websocket.close", frame
    return int(frame["code"])


def receive(ws: Any) -> tuple[str, dict[str, Any]]:
    frame = ws.receive()
    assert frame["type"] == "websocket.send"
    kind = "binary" if frame.get("bytes") is not None else "text"
    return kind, decode(frame.get("bytes") or frame["text"])


def test_run_messages_arrive_in_order_with_meta_ids_and_binary_after_data(
    harness: Harness, client: TestClient
) -> None:
    emit = emitter(harness, client)
    with client.websocket_connect("/agents/push?pushRef=abc") as ws:
        harness.service.create("e1", push_ref="abc")
        messages = run_messages("e1", nodes=2)
        for message in messages:
            emit("e1", message)
        got = [receive(ws) for _ in messages]
    node = [("text", "nodeExecuteBefore"), ("text", "nodeExecuteAfter")]
    node.append(("binary", "nodeExecuteAfterData"))
    assert [(kind, body["type"]) for kind, body in got] == [
        ("text", "executionStarted"),
        *node,
        *node,
        ("text", "executionFinished"),
    ]
    assert [body["meta"] for _, body in got] == [{"id": i} for i in range(1, 9)]
    assert got[0][1]["data"] == decode(m.encode(messages[0]))["data"]


def test_second_connection_with_the_same_push_ref_closes_the_first(
    harness: Harness, client: TestClient
) -> None:
    emit = emitter(harness, client)
    harness.service.create("e1", push_ref="abc")
    with (
        client.websocket_connect("/agents/push?pushRef=abc") as old,
        client.websocket_connect("/agents/push?pushRef=abc") as new,
    ):
        assert close_code(old) == 1000
        emit("e1", started("e1"))
        assert receive(new)[1]["type"] == "executionStarted"
        assert harness.hub.has("abc")
    assert harness.hub.connection_count == 0


def test_reconnect_with_last_event_id_receives_every_missed_message_once(
    harness: Harness, client: TestClient
) -> None:
    emit = emitter(harness, client)
    harness.service.create("e1", push_ref="abc")
    messages = run_messages("e1", nodes=3)
    with client.websocket_connect("/agents/push?pushRef=abc") as ws:
        for message in messages[:4]:
            emit("e1", message)
        seen = [receive(ws)[1] for _ in range(2)]  # read two, then drop the connection
    for message in messages[4:]:
        emit("e1", message)
    last = seen[-1]["meta"]["id"]
    with client.websocket_connect(f"/agents/push?pushRef=abc&lastEventId={last}") as ws:
        rest = [receive(ws)[1] for _ in range(len(messages) - 2)]
        ws.send_text('{"type":"ping"}')
        assert receive(ws)[1] == {"type": "pong"}  # nothing else was queued
    ids = [body["meta"]["id"] for body in seen + rest]
    assert ids == list(range(1, len(messages) + 1))
    assert [b["type"] for b in seen + rest] == [decode(m.encode(x))["type"] for x in messages]


def test_six_mib_after_data_becomes_the_placeholder_and_finished_still_arrives(
    harness: Harness, client: TestClient
) -> None:
    emit = emitter(harness, client)
    harness.service.create("e1", push_ref="abc")
    with client.websocket_connect("/agents/push?pushRef=abc") as ws:
        emit("e1", after_data("e1", "Big", [{"blob": "x" * (6 * 1024 * 1024)}]))
        emit("e1", run_messages("e1")[-1])
        frame = ws.receive()
        assert len(frame["bytes"]) < 5 * 1024 * 1024
        assert decode(frame["bytes"])["data"]["data"]["data"] == {"main": [[m.TRIMMED_ITEM]]}
        assert receive(ws)[1]["type"] == "executionFinished"


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
def test_cross_site_origin_is_closed_with_1008(client: TestClient, origin: str) -> None:
    headers = {"origin": origin}
    with client.websocket_connect("/agents/push?pushRef=abc", headers=headers) as ws:
        assert close_code(ws) == 1008


def test_same_origin_and_missing_origin_are_accepted(client: TestClient) -> None:
    for headers in ({}, {"origin": "http://testserver"}):
        with client.websocket_connect("/agents/push?pushRef=abc", headers=headers) as ws:
            ws.send_text('{"type":"ping"}')
            assert receive(ws)[1] == {"type": "pong"}


@pytest.mark.parametrize("query", ["", "?pushRef=", "?pushRef=bad%20ref", "?pushRef=" + "x" * 65])
def test_bad_push_ref_is_closed_with_1008(client: TestClient, query: str) -> None:
    with client.websocket_connect("/agents/push" + query) as ws:
        assert close_code(ws) == 1008


def test_api_key_is_required_when_keys_are_set() -> None:
    harness = Harness(Settings(load_examples=False, api_keys=("k1",)))
    with TestClient(harness.app) as client:
        with client.websocket_connect("/agents/push?pushRef=abc") as ws:
            assert close_code(ws) == 4401
        with client.websocket_connect("/agents/push?pushRef=abc&token=k1") as ws:
            ws.send_text('{"type":"ping"}')
            assert receive(ws)[1] == {"type": "pong"}


def test_a_thousand_bad_frames_get_errors_and_the_server_keeps_serving(
    harness: Harness, client: TestClient
) -> None:
    emit = emitter(harness, client)
    bad = ["{", "[]", '{"type":"nope"}', '{"type":"cancel_execution","data":{}}', "\x00" * 10]
    with (
        client.websocket_connect("/agents/push?pushRef=bad") as noisy,
        client.websocket_connect("/agents/push?pushRef=good") as good,
    ):
        for i in range(1000):
            noisy.send_text(bad[i % len(bad)])
        errors = [receive(noisy)[1]["type"] for _ in range(1000)]
        assert errors == ["error"] * 1000
        harness.service.create("e1", push_ref="good")
        emit("e1", started("e1"))
        assert receive(good)[1]["type"] == "executionStarted"
        noisy.send_text('{"type":"ping"}')
        assert receive(noisy)[1] == {"type": "pong"}


def test_frame_over_64_kib_closes_with_1009_and_others_are_unaffected(client: TestClient) -> None:
    with client.websocket_connect("/agents/push?pushRef=good") as good:
        for _ in range(20):
            with client.websocket_connect("/agents/push?pushRef=big") as big:
                big.send_bytes(b"x" * (64 * 1024 + 1))
                assert close_code(big) == 1009
        good.send_text('{"type":"ping"}')
        assert receive(good)[1] == {"type": "pong"}


def test_subscribe_and_cancel_over_the_socket(harness: Harness, client: TestClient) -> None:
    emit = emitter(harness, client)
    harness.service.create("e1")
    emit("e1", started("e1"))
    with client.websocket_connect("/agents/push?pushRef=abc") as ws:
        ws.send_text('{"type":"subscribe_execution","data":{"executionId":"e1","after":0}}')
        assert receive(ws)[1]["type"] == "executionStarted"
        assert receive(ws)[1]["type"] == "ack"
        ws.send_text('{"type":"cancel_execution","data":{"executionId":"e1"}}')
        finished = receive(ws)[1]
        assert finished["type"] == "executionFinished"
        assert finished["data"]["status"] == "canceled"
        assert receive(ws)[1]["type"] == "ack"


def test_nothing_is_left_behind_after_clients_go_away(harness: Harness, client: TestClient) -> None:
    async def task_count() -> int:
        import asyncio

        return len(asyncio.all_tasks())

    baseline = client.portal.call(task_count)
    for i in range(20):
        with client.websocket_connect(f"/agents/push?pushRef=c{i}") as ws:
            ws.send_text('{"type":"ping"}')
            receive(ws)
    assert harness.hub.connection_count == 0
    assert not any(s.connection for s in harness.hub.registry.sessions.values())
    assert client.portal.call(task_count) <= baseline
