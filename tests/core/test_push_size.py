"""The 5 MiB rule (SPEC §5.3): nothing over the limit is ever sent."""

from __future__ import annotations

from typing import Any

import msgspec

from app import messages as m
from app.bus.base import PushEvent
from app.push.size import fit
from support.push import after_data, before, finished, started

LIMIT = 5 * 1024 * 1024


def as_event(message: m.ExecutionMessage) -> PushEvent:
    tag = message.__struct_config__.tag
    assert isinstance(tag, str)
    return PushEvent("e1", 1, tag, m.encode(message))


def big_state() -> dict[str, Any]:
    return {"blob": "s" * (6 * 1024 * 1024)}


def test_a_message_that_fits_is_returned_as_is() -> None:
    event = as_event(finished("e1"))
    assert fit(event, LIMIT) is event


def test_6_mib_after_data_becomes_one_placeholder_per_item() -> None:
    items = [{"text": "x" * (1024 * 1024)} for _ in range(6)]
    event = as_event(after_data("e1", "Big", items))
    assert len(event.payload) > LIMIT
    trimmed = fit(event, LIMIT)
    assert trimmed is not None and len(trimmed.payload) <= LIMIT
    body = msgspec.json.decode(trimmed.payload)
    assert body["type"] == "nodeExecuteAfterData"
    assert body["data"]["data"]["data"] == {"main": [[m.TRIMMED_ITEM] * 6]}
    assert body["data"]["itemCountByConnectionType"] == {"main": [6]}
    assert body["data"]["data"]["executionStatus"] == "success"


def test_millions_of_items_fall_back_to_one_placeholder_per_output() -> None:
    event = as_event(after_data("e1", "Many", [{}] * 200_000))
    trimmed = fit(event, 1_000_000)
    assert trimmed is not None
    assert msgspec.json.decode(trimmed.payload)["data"]["data"]["data"] == {
        "main": [[m.TRIMMED_ITEM]]
    }


def test_lifecycle_messages_lose_graph_state_but_are_never_dropped() -> None:
    for message in (
        finished("e1", graph_state=big_state()),
        started("e1", graph_state=big_state()),
    ):
        trimmed = fit(as_event(message), LIMIT)
        assert trimmed is not None and len(trimmed.payload) <= LIMIT
        assert "graph_state" not in msgspec.json.decode(trimmed.payload)["data"]


def test_execution_started_forgets_huge_prior_run_data() -> None:
    message = started("e1")
    message.data.flattedRunData = "[" + "1," * 3_000_000 + "1]"
    trimmed = fit(as_event(message), LIMIT)
    assert trimmed is not None
    assert msgspec.json.decode(trimmed.payload)["data"]["flattedRunData"] == "[{}]"


def test_a_message_that_cannot_be_trimmed_enough_is_dropped() -> None:
    message = before("e1", "n" * (6 * 1024 * 1024), 0)
    assert fit(as_event(message), LIMIT) is None
