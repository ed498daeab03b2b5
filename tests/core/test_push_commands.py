"""Inbound frames: every bad frame gets exactly one error reply, nothing raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import messages as m
from app.push import commands, wire


def reply(frame: bytes | str) -> bytes:
    result = commands.parse(frame)
    assert isinstance(result, wire.Outgoing)
    return result.payload


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"{", b"invalid_json"),
        (b"", b"invalid_json"),
        (b"\xff\xfe", b"invalid_json"),
        (b"[1]", b"invalid_message"),
        (b"null", b"invalid_message"),
        (b"{}", b"unknown_command"),
        (b'{"type":"launch"}', b"unknown_command"),
        (b'{"type":5}', b"unknown_command"),
        (b'{"type":"cancel_execution"}', b"invalid_command"),
        (b'{"type":"subscribe_execution","data":{"executionId":1}}', b"invalid_command"),
        (
            b'{"type":"subscribe_execution","data":{"executionId":"1","after":-1}}',
            b"invalid_command",
        ),
    ],
)
def test_bad_frames_get_one_error_with_a_code(frame: bytes, code: bytes) -> None:
    payload = reply(frame)
    assert payload.startswith(b'{"type":"error","data":{')
    assert b'"code":"' + code + b'"' in payload and b'"message":"' in payload


def test_error_names_the_command_and_the_problem() -> None:
    assert reply(b'{"type":"cancel_execution","data":{}}') == (
        b'{"type":"error","data":{"command":"cancel_execution","code":"invalid_command",'
        b'"message":"Object missing required field `executionId` - at `$.data`"}}'
    )


def test_valid_commands_decode() -> None:
    assert commands.parse('{"type":"heartbeat"}') == m.Heartbeat()
    assert commands.parse(b'{"type":"ping","extra":true}') == m.Ping()
    sub = commands.parse(b'{"type":"subscribe_execution","data":{"executionId":"7","after":0}}')
    assert sub == m.SubscribeExecution(m.SubscribeRef("7", 0))


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
def test_parse_never_raises(frame: bytes | str) -> None:
    commands.parse(frame)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_parse_never_raises_on_any_json(value: object) -> None:
    import msgspec

    commands.parse(msgspec.json.encode(value))
