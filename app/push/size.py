"""The 5 MiB rule (SPEC §5.3): no message over ``max_message_bytes`` is ever sent.

Applied once per message before fan-out, so every connection shares the trimmed bytes.
Trimming goes step by step until the message fits:

1. ``nodeExecuteAfterData``: each output item becomes :data:`~app.messages.TRIMMED_ITEM`
   (n8n's editor shows it as "data too large"; the item counts stay true).
2. Any message: the ``graph_state`` extension is dropped.
3. ``nodeExecuteAfterData``: each non-empty output keeps one placeholder item (n8n's own
   trimmed form), for runs with so many items that step 1 alone is still too big.
4. ``executionStarted``: ``flattedRunData`` becomes ``"[{}]"`` (no prior run data).

A message that still does not fit is dropped and logged; lifecycle messages
(``executionStarted/Waiting/Finished``) only carry ids once trimmed, so they always fit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from app.bus.base import PushEvent
from app.messages import TRIMMED_ITEM
from app.model.access import Scope
from app.model.records import StoredEvent

log = logging.getLogger(__name__)

Message = dict[str, Any]
Step = Callable[[Message], bool]


def fit(event: PushEvent, limit: int) -> PushEvent | None:
    """``event`` itself if its payload fits ``limit`` bytes, else a trimmed copy, else None."""
    if len(event.payload) <= limit:
        return event
    message = msgspec.json.decode(event.payload)
    for step in _STEPS:
        if not step(message):
            continue
        payload = msgspec.json.encode(message)
        if len(payload) <= limit:
            log.info(
                "trimmed %s of execution %s from %d to %d bytes",
                event.type,
                event.execution_id,
                len(event.payload),
                len(payload),
            )
            return msgspec.structs.replace(event, payload=payload)
    log.warning(
        "dropped %s of execution %s: %d bytes do not fit the %d-byte limit",
        event.type,
        event.execution_id,
        len(event.payload),
        limit,
    )
    return None


def fit_logged(
    execution_id: str, logged: Sequence[StoredEvent], reader: Reader, limit: int
) -> list[PushEvent]:
    """Logged events as fitted bus events, stamped as within the reach of ``reader``, whom
    the service let read them (its owner, and its token's workflow)."""
    owner, workflow_id = reader.owner, reader.scope.workflow_id if reader.scope else None
    events = (
        PushEvent(execution_id, e.seq, e.type, e.payload, owner=owner, workflow_id=workflow_id)
        for e in logged
    )
    return [f for f in (fit(e, limit) for e in events) if f is not None]


class Reader(Protocol):
    """Whom logged events are read for (a :class:`~app.push.connection.Connection`)."""

    @property
    def owner(self) -> str | None: ...

    @property
    def scope(self) -> Scope | None: ...


def _outputs(message: Message) -> dict[str, list[list[Any]]] | None:
    if message.get("type") != "nodeExecuteAfterData":
        return None
    task = message.get("data", {}).get("data", {})
    outputs = task.get("data") if isinstance(task, dict) else None
    return outputs if isinstance(outputs, dict) else None


def _trim_each_item(message: Message) -> bool:
    outputs = _outputs(message)
    if outputs is None:
        return False
    for kind, lists in outputs.items():
        outputs[kind] = [[TRIMMED_ITEM] * len(items) for items in lists]
    return True


def _trim_to_one_item(message: Message) -> bool:
    outputs = _outputs(message)
    if outputs is None:
        return False
    for kind, lists in outputs.items():
        outputs[kind] = [[TRIMMED_ITEM] if items else [] for items in lists]
    return True


def _drop_graph_state(message: Message) -> bool:
    data = message.get("data")
    return isinstance(data, dict) and data.pop("graph_state", None) is not None


def _forget_run_data(message: Message) -> bool:
    if message.get("type") != "executionStarted":
        return False
    message["data"]["flattedRunData"] = "[{}]"
    return True


_STEPS: tuple[Step, ...] = (_trim_each_item, _drop_graph_state, _trim_to_one_item, _forget_run_data)
