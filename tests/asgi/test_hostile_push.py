"""Hostile push input through the real app (SPEC §5.1): every WebSocket command gets one
reply and leaves the connection open (a ``ping`` after it is answered); a refused handshake
closes with its documented code; SSE parameters never get a 5xx.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import quote

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from app.main import create_app
from app.push.connection import CloseCode
from app.settings import Settings, load_settings
from support.app import Server
from support.engine import chain, error_body, node
from support.hostile import (
    FOREIGN_RANDOM,
    HEADER_VALUE,
    JSON,
    NUMBERISH,
    STORES,
    TEXT,
    TOO_DEEP,
    commands,
    store_options,
)

pytestmark = [pytest.mark.timeout(120), FOREIGN_RANDOM]

BOUNDED = settings(max_examples=60, deadline=None)
SIMPLE = chain(node("Start"), node("Set", "set", values={"x": 1}), name="simple")
WAITING = chain(node("Start"), node("Hold", "wait"), name="waiting")
PING = '{"type":"ping"}'
REFUSED = {CloseCode.POLICY_VIOLATION, CloseCode.UNAUTHORIZED}


def app_settings(data_dir: Path, **options: Any) -> Settings:
    return load_settings({"data_dir": data_dir, "load_examples": False, **options}, environ={})


@pytest.fixture(scope="module", params=STORES)
def push(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, list[str]]]:
    """The app with a finished and a waiting run; their execution ids."""
    data_dir = Path(tmp_path_factory.mktemp("push"))
    options = app_settings(data_dir, **store_options(request.param))
    with TestClient(create_app(options)) as client:
        ids = []
        for body in (SIMPLE, WAITING):
            workflow_id = client.post("/agents/workflows", json=body).json()["id"]
            ids.append(client.post(f"/agents/workflows/{workflow_id}/run").json()["execution_id"])
        yield client, ids


def until_pong(ws: Any) -> list[dict[str, Any]]:
    """Every message up to the ``pong``; fails on a close instead."""
    messages = []
    while True:
        frame = ws.receive()
        assert frame["type"] == "websocket.send", frame
        message = msgspec.json.decode(frame.get("bytes") or frame["text"])
        if message == {"type": "pong"}:
            return messages
        messages.append(message)


def replied(messages: list[dict[str, Any]]) -> None:
    """Errors carry a code and a message, and none is the server's own failure."""
    for message in messages:
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        if message["type"] == "error":
            assert isinstance(message["data"]["code"], str) and message["data"]["message"]
            assert message["data"]["code"] != "internal_error", message


def frames(ids: list[str]) -> st.SearchStrategy[bytes | str]:
    encoded = (commands(ids) | JSON).map(msgspec.json.encode)
    return st.one_of(encoded, encoded.map(bytes.decode), TOO_DEEP, st.binary(max_size=40))


def test_any_command_is_answered_and_the_connection_stays_open(
    push: tuple[TestClient, list[str]],
) -> None:
    client, ids = push
    refs = itertools.count()

    @BOUNDED
    @given(st.lists(frames(ids), min_size=1, max_size=3))
    def check(sent: list[bytes | str]) -> None:
        with client.websocket_connect(f"/agents/push?pushRef=cmd{next(refs)}") as ws:
            for frame in sent:
                if isinstance(frame, bytes):
                    ws.send_bytes(frame)
                else:
                    ws.send_text(frame)
                ws.send_text(PING)
                replied(until_pong(ws))

    check()


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 5_000,
        '{"type":"subscribe_execution","data":{"executionId":"%s","after":9223372036854775808}}',
        '{"type":"subscribe_execution","data":{"executionId":"%s","after":-1}}',
        '{"type":"subscribe_execution","data":{"executionId":"a\\u0000b"}}',
        '{"type":"cancel_execution","data":{"executionId":"a\\u0000b"}}',
    ],
)
def test_hostile_commands_get_an_error_and_the_connection_stays_open(
    push: tuple[TestClient, list[str]], frame: str
) -> None:
    client, ids = push
    with client.websocket_connect("/agents/push?pushRef=deep") as ws:
        ws.send_text(frame.replace("%s", ids[0]))
        ws.send_text(PING)
        (reply,) = until_pong(ws)

    assert reply["type"] == "error"
    assert reply["data"]["code"] in ("invalid_json", "invalid_command")


def test_the_largest_cursor_subscribes_with_nothing_to_replay(
    push: tuple[TestClient, list[str]],
) -> None:
    client, ids = push
    command = {"type": "subscribe_execution", "data": {"executionId": ids[0], "after": 2**63 - 1}}
    with client.websocket_connect("/agents/push?pushRef=largest") as ws:
        ws.send_text(msgspec.json.encode(command).decode())
        ws.send_text(PING)
        replies = until_pong(ws)

    assert replies == [
        {"type": "ack", "data": {"command": "subscribe_execution", "executionId": ids[0]}}
    ]


HANDSHAKE_QUERY = st.fixed_dictionaries(
    {},
    optional={
        "pushRef": st.just("ref") | TEXT,
        "lastEventId": NUMBERISH | TEXT,
        "token": TEXT,
    },
)
HANDSHAKE_HEADERS = st.fixed_dictionaries(
    {}, optional={"last-event-id": HEADER_VALUE, "origin": HEADER_VALUE}
)


def test_any_handshake_is_admitted_or_refused_with_its_close_code(
    push: tuple[TestClient, list[str]],
) -> None:
    client, _ = push

    @BOUNDED
    @given(HANDSHAKE_QUERY, HANDSHAKE_HEADERS)
    def check(query: dict[str, str], headers: dict[str, bytes]) -> None:
        url = "/agents/push?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
        with client.websocket_connect(url, headers=headers) as ws:  # type: ignore[arg-type]
            ws.send_text(PING)
            frame = ws.receive()
            if frame["type"] == "websocket.close":
                assert frame["code"] in REFUSED, frame
                return
            ws.send_text(PING)  # the first frame was a pong or a resumeFailed
            replied([msgspec.json.decode(frame["text"]), *until_pong(ws)])

    check()


@pytest.fixture(scope="module", params=STORES)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A real uvicorn (SSE streams do not end, TestClient would wait for them)."""
    data_dir = Path(tmp_path_factory.mktemp("sse"))
    options = app_settings(data_dir, **store_options(request.param))
    with (
        Server(create_app(options), options) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        ids = []
        for body in (SIMPLE, WAITING):
            workflow_id = client.post("/agents/workflows", json=body).json()["id"]
            ids.append(client.post(f"/agents/workflows/{workflow_id}/run").json()["execution_id"])
        yield client, ids


def streamed(client: httpx.Client, url: str, headers: dict[str, bytes]) -> None:
    """Open the stream, check its status and error body, and hang up."""
    with client.stream("GET", url, headers={"accept": b"text/event-stream", **headers}) as r:
        assert r.status_code < 500, r.status_code
        if r.status_code >= 400:
            r.read()
            error_body(r)
        else:
            assert r.headers["content-type"].startswith("text/event-stream")


def test_any_sse_parameters_are_answered(served: tuple[httpx.Client, list[str]]) -> None:
    client, ids = served
    path_id = st.sampled_from(ids) | TEXT.filter(bool)
    push = HANDSHAKE_QUERY.map(lambda q: "/agents/push?" + httpx.QueryParams(q).__str__())
    stream = st.tuples(path_id, st.fixed_dictionaries({}, optional={"after": NUMBERISH | TEXT}))
    stream_url = stream.map(
        lambda p: f"/agents/executions/{quote(p[0], safe='')}/stream?{httpx.QueryParams(p[1])}"
    )

    @settings(max_examples=40, deadline=None)
    @given(push | stream_url, HANDSHAKE_HEADERS)
    def check(url: str, headers: dict[str, bytes]) -> None:
        streamed(client, url, headers)

    check()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir = Path(tmp_path_factory.mktemp("keyed"))
    with TestClient(create_app(app_settings(data_dir, api_keys=("k1",)))) as client:
        yield client


@BOUNDED
@given(
    st.fixed_dictionaries({}, optional={"token": TEXT}),
    st.fixed_dictionaries({}, optional={"authorization": HEADER_VALUE, "cookie": HEADER_VALUE}),
)
def test_any_credentials_are_refused_with_their_close_code_when_keys_are_on(
    keyed: TestClient, query: dict[str, str], headers: dict[str, bytes]
) -> None:
    url = "/agents/push?" + str(httpx.QueryParams({"pushRef": "ref", **query}))
    with keyed.websocket_connect(url, headers=headers) as ws:  # type: ignore[arg-type]
        frame = ws.receive()

    assert frame == {"type": "websocket.close", "code": CloseCode.UNAUTHORIZED, "reason": ANY}
