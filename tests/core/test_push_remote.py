"""What an API instance does with events from a shared bus before routing them: nothing
missed across a gap (read back from the log, in order), nothing routed twice, and resume
buffers only for the pushRefs it holds."""

from __future__ import annotations

import asyncio

import pytest

from app.bus.base import LocalEventBus, PushEvent
from app.model.records import StoredEvent
from app.push.remote import RemoteEvents
from support.wait import eventually

pytestmark = pytest.mark.timeout(10)

TYPES = {
    1: "executionStarted",
    2: "nodeExecuteBefore",
    3: "nodeExecuteAfter",
    4: "executionFinished",
}


def stored(seq: int) -> StoredEvent:
    return StoredEvent(seq, TYPES[seq], f'{{"seq":{seq}}}'.encode())


def live(seq: int, execution_id: str = "e1") -> PushEvent:
    event = stored(seq)
    return PushEvent(execution_id, seq, event.type, event.payload, push_ref="held", owner="o")


class Instance:
    def __init__(self) -> None:
        self.routed: list[PushEvent] = []
        self.log: dict[str, list[StoredEvent]] = {"e1": [stored(s) for s in (1, 2, 3, 4)]}
        self.reads: list[tuple[str, int]] = []
        self.remote = RemoteEvents(
            route=self.routed.append, holds={"held"}.__contains__, followed=set, read=self.read
        )
        self.remote.subscribe_to(LocalEventBus())

    async def read(self, execution_id: str, after: int, owner: str | None) -> list[StoredEvent]:
        self.reads.append((execution_id, after))
        return [e for e in self.log[execution_id] if e.seq > after]

    def seqs(self) -> list[int]:
        return [e.seq for e in self.routed]


async def test_events_in_order_are_routed_once_each() -> None:
    instance = Instance()
    for seq in (1, 2, 2, 3, 4, 4):
        instance.remote.on_event(live(seq))
    assert instance.seqs() == [1, 2, 3, 4]
    assert instance.reads == []


async def test_a_gap_after_a_reconnect_is_read_back_from_the_log_in_order() -> None:
    instance = Instance()
    instance.remote.on_event(live(1))
    instance.remote.on_gap()  # the bus was away: 2, 3 and 4 were published meanwhile
    await eventually(lambda: instance.seqs() == [1, 2, 3, 4])
    assert instance.reads == [("e1", 1)]
    assert all(e.push_ref == "held" and e.owner == "o" for e in instance.routed)
    instance.remote.on_event(live(4))  # the publisher's retry, late
    await asyncio.sleep(0.01)
    assert instance.seqs() == [1, 2, 3, 4]


async def test_a_run_queued_here_and_ended_unseen_during_a_gap_is_caught_up_whole() -> None:
    instance = Instance()
    instance.remote.expect("e1", "held", "o", "w1")  # queued through this instance, never seen
    instance.remote.on_gap()
    await eventually(lambda: instance.seqs() == [1, 2, 3, 4])
    # With its workflow: the runs feed of w1 routes by it (SPEC §11).
    assert {(e.push_ref, e.owner, e.workflow_id) for e in instance.routed} == {("held", "o", "w1")}


async def test_a_run_queued_here_without_a_push_ref_reaches_its_workflow_after_a_gap() -> None:
    instance = Instance()
    instance.remote.expect("e1", None, "o", "w1")  # e.g. followed on the runs feed only
    instance.remote.on_gap()
    await eventually(lambda: instance.seqs() == [1, 2, 3, 4])
    assert {(e.push_ref, e.workflow_id) for e in instance.routed} == {(None, "w1")}


async def test_an_event_after_a_skipped_seq_waits_for_the_log() -> None:
    instance = Instance()
    instance.remote.on_event(live(1))
    instance.remote.on_event(live(3))  # 2 was missed
    await eventually(lambda: instance.seqs() == [1, 2, 3, 4])
    assert instance.reads == [("e1", 1)]


async def test_a_push_ref_held_elsewhere_reaches_streams_here_without_a_buffer() -> None:
    instance = Instance()
    event = PushEvent("e2", 1, "executionStarted", b"{}", push_ref="elsewhere")
    instance.remote.on_event(event)
    assert instance.routed[0].push_ref is None
