"""What the runs feed costs the push core: µs to route one lifecycle message of a workflow
(``executionWaiting``) to 0, 10, 100 and 1,000 pushRef sessions that follow it
(``subscribe_workflow``), against routing the same message to as many sessions that
subscribed to its execution instead
(``subscribe_execution``, the core's other fan-out path). In process, no sockets: the
core's own work, which every transport then shares.

    python -m bench.feed [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from app import messages as m
from app.bus.base import PushEvent
from app.push.connection import Connection
from app.push.feed import RunRef, RunsPage
from app.push.hub import PushHub
from app.settings import Settings
from bench.harness import note, report, rounds, table

MESSAGES = 200


class _NoService:
    async def snapshot(self, execution_id: str, owner: str | None) -> m.ExecutionSnapshotData:
        return m.ExecutionSnapshotData(execution_id, "running", {})

    async def read_events(self, execution_id: str, after: int, owner: str | None) -> list[object]:
        return []

    async def cancel_execution(self, execution_id: str, owner: str | None) -> None:
        return None


class _NoRuns:
    async def latest_runs(self, workflow_id: str, limit: int, owner: str | None) -> RunsPage:
        return RunsPage([], {})

    async def started_since(self, workflow_id: str, since_ms: int) -> list[RunRef]:
        return []  # the in-process bus has no gap

    async def start_run(self, workflow_id: str, input: object, owner: str | None) -> str:
        raise NotImplementedError


def _waiting(execution_id: str, seq: int) -> PushEvent:
    """A lifecycle message that ends no subscription (so every one of them is delivered)."""
    data = m.ExecutionWaitingData(execution_id, graph_state={"nodes": {}})
    payload = m.encode(m.ExecutionWaiting(data))
    return PushEvent(execution_id, seq, "executionWaiting", payload, workflow_id="wf")


async def _hub(followers: int, command: str) -> tuple[PushHub, list[Connection]]:
    settings = Settings(load_examples=False, connection_buffer_bytes=1 << 30)
    hub = PushHub(settings=settings, service=_NoService(), runs=_NoRuns())
    conns = [hub.connect(f"p{i}", None, None, lambda: None) for i in range(followers)]
    frame = (
        '{"type":"subscribe_workflow","data":{"workflowId":"wf"}}'
        if command == "subscribe_workflow"
        else '{"type":"subscribe_execution","data":{"executionId":"e1"}}'
    )
    for conn in conns:
        await hub.receive(conn, frame)
        conn.data_to_send()
    return hub, conns


async def _route_us(followers: int, command: str) -> float:
    """µs per routed message, with ``followers`` sessions receiving each."""
    hub, conns = await _hub(followers, command)
    seq = 0

    async def work() -> float:
        nonlocal seq
        events = [_waiting("e1", seq + i + 1) for i in range(MESSAGES)]
        seq += MESSAGES
        start = time.perf_counter()
        for event in events:
            hub.on_event(event)
        elapsed = time.perf_counter() - start
        for conn in conns:
            conn.data_to_send()
        return elapsed / MESSAGES * 1e6

    return (await rounds(work, rounds=ROUNDS, warmup=1))["median"]


ROUNDS = 5


async def main(quick: bool) -> None:
    sizes = [0, 10] if quick else [0, 10, 100, 1000]
    rows = []
    for followers in sizes:
        feed = await _route_us(followers, "subscribe_workflow")
        execution = await _route_us(followers, "subscribe_execution")
        report("feed", f"followers-x{followers}", feed_us=feed, execution_us=execution)
        ratio = f"{feed / execution:.2f}" if execution else "—"
        rows.append([str(followers), f"{feed:.1f}", f"{execution:.1f}", ratio])
    note(table(rows, ["followers", "feed µs/msg", "subscription µs/msg", "feed / subscription"]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    ROUNDS = 2 if args.quick else args.rounds
    asyncio.run(main(args.quick))
