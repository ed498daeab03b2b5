"""Inbound frames: every bad frame gets exactly one error reply, nothing raises."""

from __future__ import annotations

from typing import get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import messages as m
from app.push import commands, wire
from support import hostile


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


@pytest.mark.parametrize(
    "frame",
    [b"[" * 5_000, b'{"a":' * 5_000, b'{"type":"ping","data":' + b"[" * 5_000, "[" * 100_000],
)
def test_json_nested_too_deep_is_invalid_json_not_an_exception(frame: bytes | str) -> None:
    assert b'"code":"invalid_json"' in reply(frame)


@pytest.mark.parametrize("after", [-1, 2**63, 10**30])
def test_a_subscribe_cursor_out_of_bounds_is_an_invalid_command(after: int) -> None:
    payload = reply(b'{"type":"subscribe_execution","data":{"executionId":"1","after":%d}}' % after)

    assert payload.startswith(
        b'{"type":"error","data":{"command":"subscribe_execution","executionId":"1",'
        b'"code":"invalid_command","message":"Expected `int` '
    )
    assert payload.endswith(b' - at `$.data.after`"}}')


@pytest.mark.parametrize("execution_id", ["a\\u0000b", "a.b", "", "x" * 65])
def test_an_execution_id_of_another_form_is_an_invalid_command_that_does_not_echo_it(
    execution_id: str,
) -> None:
    payload = reply(
        b'{"type":"cancel_execution","data":{"executionId":"%s"}}' % execution_id.encode()
    )

    assert payload.startswith(
        b'{"type":"error","data":{"command":"cancel_execution","code":"invalid_command",'
    )
    assert b"executionId" in payload and b'"executionId":' not in payload


def test_the_largest_cursor_subscribes() -> None:
    frame = b'{"type":"subscribe_execution","data":{"executionId":"1","after":%d}}' % (2**63 - 1)
    assert commands.parse(frame) == m.SubscribeExecution(m.SubscribeRef("1", 2**63 - 1))


@given(hostile.commands([]) | hostile.JSON, st.sampled_from([0, 1, 2, 5_000]))
def test_any_json_is_a_command_or_one_error_with_a_code_and_a_message(
    value: object, depth: int
) -> None:
    # Also inside arrays, and deeper than the interpreter's recursion limit.
    frame = b"[" * depth + msgspec.json.encode(value) + b"]" * depth

    result = commands.parse(frame)

    if isinstance(result, wire.Outgoing):
        error = msgspec.json.decode(result.payload)
        assert error["type"] == "error" and set(error) == {"type", "data"}
        assert isinstance(error["data"]["code"], str) and error["data"]["message"]
    else:
        assert isinstance(result, get_args(m.Command))
