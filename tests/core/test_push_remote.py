"""What an API instance does with events from a shared bus before routing them: nothing
missed across a gap (read back from the log, in order), nothing routed twice, and resume
buffers only for the pushRefs it holds."""

from __future__ import annotations

import asyncio

import pytest

from app.bus.base import LocalEventBus, PushEvent
from app.model.records import StoredEvent
from app.push.feed import RunRef
from app.push.remote import CLOCK_SKEW_MS, RemoteEvents
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
    """``workflows``: the runs feeds followed here; ``begun``: the store's runs by workflow
    and the epoch ms their log began; ``listing``: while clear, listing them waits;
    ``store_away``: listing them fails."""

    def __init__(self) -> None:
        self.routed: list[PushEvent] = []
        self.log: dict[str, list[StoredEvent]] = {"e1": [stored(s) for s in (1, 2, 3, 4)]}
        self.reads: list[tuple[str, int]] = []
        self.now = 1_000_000
        self.workflows: set[str] = set()
        self.begun: dict[str, list[tuple[RunRef, int]]] = {}
        self.listed: list[tuple[str, int]] = []
        self.listing = asyncio.Event()
        self.listing.set()
        self.store_away = False
        self.remote = RemoteEvents(
            route=self.routed.append,
            holds={"held"}.__contains__,
            followed=set,
            read=self.read,
            workflows=lambda: self.workflows,
            started_since=self.started_since,
            clock=lambda: self.now,
        )
        self.remote.subscribe_to(LocalEventBus())

    async def read(self, execution_id: str, after: int, owner: str | None) -> list[StoredEvent]:
        self.reads.append((execution_id, after))
        return [e for e in self.log[execution_id] if e.seq > after]

    async def started_since(self, workflow_id: str, since_ms: int) -> list[RunRef]:
        self.listed.append((workflow_id, since_ms))
        await self.listing.wait()
        if self.store_away:
            raise ConnectionError("the store is away too")
        runs = self.begun.get(workflow_id, [])
        return [run for run, began in reversed(runs) if began >= since_ms]  # newest first

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


# ---- runs of followed workflows begun during a gap (the runs feed, SPEC §11) ---------------


def lifecycle(instance: Instance, execution_id: str) -> None:
    """``execution_id``'s log: started, waiting, then (resumed) finished."""
    types = ["executionStarted", "nodeExecuteBefore", "executionWaiting", "executionFinished"]
    instance.log[execution_id] = [
        StoredEvent(seq, t, f'{{"id":"{execution_id}","seq":{seq}}}'.encode())
        for seq, t in enumerate(types, 1)
    ]


def routed(instance: Instance, execution_id: str) -> list[tuple[int, str | None, str | None]]:
    return [
        (e.seq, e.owner, e.workflow_id) for e in instance.routed if e.execution_id == execution_id
    ]


async def test_a_run_of_a_followed_workflow_begun_elsewhere_during_a_gap_is_caught_up() -> None:
    instance = Instance()
    instance.workflows = {"w1"}
    instance.remote.on_event(live(1))  # e1 seen here: heard at `now`
    heard_at = instance.now
    instance.now += 60_000  # the gap: found a minute later
    for run, began in [("old", heard_at - 10 * CLOCK_SKEW_MS), ("r1", heard_at + 1)]:
        lifecycle(instance, run)  # queued through another instance, never seen here
        instance.begun.setdefault("w1", []).append((RunRef(run, "elsewhere", "o2"), began))
    instance.begun["w1"].append((RunRef("e1", "held", "o"), heard_at - 1))  # seen: not again
    instance.remote.on_gap()
    await eventually(lambda: len(routed(instance, "r1")) == 4 and instance.seqs()[-1] == 4)
    assert instance.listed == [("w1", heard_at - CLOCK_SKEW_MS)]
    assert routed(instance, "r1") == [(s, "o2", "w1") for s in (1, 2, 3, 4)]  # in order, once
    assert all(e.push_ref is None for e in instance.routed if e.execution_id == "r1")  # not held
    assert routed(instance, "old") == []  # began long before the gap: not the gap's
    assert [e.seq for e in instance.routed if e.execution_id == "e1"] == [1, 2, 3, 4]
    instance.remote.on_event(PushEvent("r1", 4, "executionFinished", b"{}", workflow_id="w1"))
    await asyncio.sleep(0.01)  # the publisher's retry, late: not routed again
    assert len(routed(instance, "r1")) == 4


async def test_a_run_heard_again_while_the_gap_is_listed_is_caught_up_from_its_start() -> None:
    instance = Instance()
    instance.workflows = {"w1"}
    lifecycle(instance, "r1")
    instance.begun["w1"] = [(RunRef("r1", None, "o"), instance.now)]
    instance.listing.clear()  # the store answers slowly
    instance.remote.on_gap()
    await eventually(lambda: instance.listed != [])
    # r1's next message comes live before the list: 1 and 2 were missed, it waits for them
    instance.remote.on_event(PushEvent("r1", 3, "executionWaiting", b"{}", workflow_id="w1"))
    other = PushEvent("r2", 5, "nodeExecuteAfter", b"{}", workflow_id="w2")  # not followed
    instance.remote.on_event(other)
    assert routed(instance, "r1") == [] and instance.routed == [other]
    instance.listing.set()
    await eventually(lambda: len(routed(instance, "r1")) == 4)
    assert [seq for seq, _, _ in routed(instance, "r1")] == [1, 2, 3, 4]
    instance.remote.on_event(PushEvent("r3", 2, "nodeExecuteBefore", b"{}", workflow_id="w1"))
    assert instance.routed[-1].execution_id == "r3"  # after the listing: routed as it comes


async def test_listing_a_gap_that_fails_is_tried_again_at_the_next_gap() -> None:
    instance = Instance()
    instance.workflows = {"w1"}
    lifecycle(instance, "r1")
    instance.begun["w1"] = [(RunRef("r1", None, "o"), instance.now)]
    instance.store_away = True
    instance.remote.on_gap()
    await eventually(lambda: instance.listed != [])
    await asyncio.sleep(0.01)
    assert routed(instance, "r1") == []
    instance.store_away = False
    instance.now += 1_000
    instance.remote.on_gap()  # a later gap: listed since the earlier one began
    await eventually(lambda: len(routed(instance, "r1")) == 4)
    assert instance.listed == [("w1", instance.listed[0][1])] * 2
