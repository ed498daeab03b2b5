"""Inbound WebSocket frames → commands, or the one ``error`` reply a bad frame gets.

Pure: :func:`parse` never raises for any input; carrying a command out is the hub's job,
and :func:`answer` turns how it went into the one reply.
Error codes: ``invalid_json`` (not JSON, or nested deeper than the interpreter's recursion
limit), ``invalid_message`` (JSON that is not an object), ``unknown_command`` (missing or
unknown ``type``), ``invalid_command`` (bad ``data``, such as a cursor out of bounds).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Final, get_args

import msgspec

from app.errors import GraphpushError
from app.messages import Command, CommandType, command_decoder
from app.model.ids import is_identifier
from app.push import wire
from app.push.connection import Connection

log = logging.getLogger(__name__)

COMMAND_TYPES: Final = frozenset(get_args(CommandType))
_INVALID_JSON: Final = wire.error("invalid_json", "the message is not valid JSON")


def parse(frame: bytes | str) -> Command | wire.Outgoing:
    """The decoded command, or the ``error`` reply to send instead."""
    try:
        command: Command = command_decoder.decode(frame)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: catch it first
        return _explain(frame, str(exc))
    except (msgspec.DecodeError, RecursionError):  # RecursionError: nested too deep
        return _INVALID_JSON
    return command


def _explain(frame: bytes | str, detail: str) -> wire.Outgoing:
    """Tell a non-object, an unknown type and bad data apart (only on the error path)."""
    try:
        message: Any = msgspec.json.decode(frame)
    except (msgspec.DecodeError, RecursionError):  # the shape can fail before the syntax
        return _INVALID_JSON
    if not isinstance(message, dict):
        return wire.error("invalid_message", "a command must be a JSON object")
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in COMMAND_TYPES:
        known = ", ".join(sorted(COMMAND_TYPES))
        return wire.error("unknown_command", f"unknown or missing command type; known: {known}")
    data = message.get("data")
    ids = {
        name: value
        for name, key in (("execution_id", "executionId"), ("workflow_id", "workflowId"))
        if isinstance(data, dict)
        and isinstance(value := data.get(key), str)
        and is_identifier(value)  # only ids are echoed, never arbitrary text
    }
    return wire.error("invalid_command", detail, command=kind, **ids)


async def answer(conn: Connection, command: str, call: Awaitable[object], **subject: str) -> None:
    """Await ``call`` (the command carried out) and queue its ``ack`` on ``conn``, or the
    ``error`` it raised; ``subject``: the ``execution_id`` or ``workflow_id`` it names."""
    try:
        await call
    except GraphpushError as exc:
        reply = wire.error(exc.code, exc.message, command=command, **subject)
    except Exception:
        log.exception("push command %s on %s failed", command, subject)
        reply = wire.error("internal_error", "the command failed", command=command, **subject)
    else:
        reply = wire.ack(command, **subject)
    conn.deliver(reply)
