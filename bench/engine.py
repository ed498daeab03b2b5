"""Engine overhead: runs/s of the same 3- and 20-node workflows through plain LangGraph
``ainvoke`` in-process vs through ``ExecutionService`` with push events and SQLite on.

    python -m bench.engine [--runs 2000] [--rounds 5] [--quick]

Rounds are paired: a plain round, then a graphpush round, ``rounds`` times; the ratio is the
median of the per-pair ratios, so a shared machine's load moves both sides of a pair alike.
CPU per run (``time.process_time``, the whole process) is reported beside runs/s: it moves
much less with the load than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver

from app.bus.base import LocalEventBus, PushEvent
from app.executions.runner import LangGraphRunner
from app.executions.service import ExecutionService
from app.queue.base import LocalQueue
from app.settings import load_settings
from app.storage.sqlite import SqliteStore
from app.workflows.builtin_nodes import builtin_registry
from app.workflows.compiler import compile_workflow
from app.workflows.schema import parse_workflow
from app.workflows.service import WorkflowService
from bench.harness import note, report, summary, table

#: A round's result: runs/s and CPU µs per run.
Round = tuple[float, float]


def chain(size: int) -> dict[str, Any]:
    """trigger -> set -> set ... (``size`` nodes in all)."""
    nodes = [{"name": "n0", "type": "trigger"}] + [
        {"name": f"n{i}", "type": "set", "parameters": {"values": {f"k{i}": i}}}
        for i in range(1, size)
    ]
    connections = {
        f"n{i}": {"main": [[{"node": f"n{i + 1}", "type": "main", "index": 0}]]}
        for i in range(size - 1)
    }
    return {
        "id": f"chain{size}",
        "name": f"chain of {size}",
        "nodes": nodes,
        "connections": connections,
    }


def plain_graph(workflow: dict[str, Any]) -> Any:
    """The very LangGraph graph graphpush compiles for ``workflow``."""
    registry = builtin_registry()
    parsed = parse_workflow(workflow, registry, python_modules=())
    compiled = compile_workflow(
        parsed, registry, checkpointer=None, default_recursion_limit=100, workflow_id="plain"
    )
    return compiled.graph


async def plain_langgraph(graph: Any, runs: int) -> Round:
    """runs/s and CPU µs per run of ``ainvoke`` on ``graph`` (:func:`plain_graph`)."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        await graph.ainvoke({"input": {}})
    return _round(runs, start, cpu)


async def through_service(
    service: ExecutionService, finished: asyncio.Queue[str], workflow_id: str, runs: int
) -> Round:
    """runs/s and CPU µs per run from queueing ``runs`` runs until every
    ``executionFinished`` is published."""
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(service.queue_manual_execution(workflow_id) for _ in range(runs)))
    for _ in range(runs):
        await finished.get()
    return _round(runs, start, cpu)


def _round(runs: int, start: float, cpu: float) -> Round:
    return runs / (time.perf_counter() - start), 1e6 * (time.process_time() - cpu) / runs


async def paired(
    plain: Callable[[], Awaitable[Round]], ours: Callable[[], Awaitable[Round]], rounds: int
) -> dict[str, Any]:
    """A warm-up of each, then ``rounds`` pairs (plain round, graphpush round)."""
    await plain()
    await ours()
    pairs = [(await plain(), await ours()) for _ in range(rounds)]
    return {
        "plain_langgraph": summary([p[0] for p, _ in pairs]),
        "graphpush": summary([o[0] for _, o in pairs]),
        "plain_cpu_us_per_run": summary([p[1] for p, _ in pairs]),
        "graphpush_cpu_us_per_run": summary([o[1] for _, o in pairs]),
        "ratio": summary([o[0] / p[0] for p, o in pairs]),
        "cpu_ratio": summary([p[1] / o[1] for p, o in pairs]),
    }


@dataclass
class Engine:
    """``ExecutionService`` on SQLite with its bus: side (b) of the bench."""

    service: ExecutionService
    workflows: WorkflowService
    #: The execution id of every ``executionFinished`` published.
    finished: asyncio.Queue[str]
    #: The SQLite file of the store.
    path: Path

    async def workflow(self, size: int) -> dict[str, Any]:
        """A stored ``chain(size)`` workflow, compiled and warmed up by 5 runs."""
        workflow = await self.workflows.create(chain(size))
        await self.runs(workflow["id"], 5)
        return workflow

    async def runs(self, workflow_id: str, runs: int) -> Round:
        return await through_service(self.service, self.finished, workflow_id, runs)


@contextlib.asynccontextmanager
async def engine() -> AsyncIterator[Engine]:
    """An :class:`Engine` on a fresh SQLite file, shut down at the end."""
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"data_dir": folder, "queue_bound": 1_000_000}, environ={})
        path = Path(folder) / "bench.sqlite"
        store = SqliteStore(path)
        async with store:
            bus = LocalEventBus()
            finished: asyncio.Queue[str] = asyncio.Queue()

            def on_event(event: PushEvent) -> None:
                if event.type == "executionFinished":
                    finished.put_nowait(event.execution_id)

            bus.subscribe(on_event)
            workflows = WorkflowService(
                store=store,
                checkpointer=InMemorySaver(),
                python_modules=settings.python_modules,
                default_recursion_limit=settings.default_recursion_limit,
            )
            service = ExecutionService(
                settings=settings,
                store=store,
                workflows=workflows,
                bus=bus,
                queue=LocalQueue(settings.queue_bound, store=store),
                runner=LangGraphRunner(),
            )
            await service.start()
            try:
                yield Engine(service, workflows, finished, path)
            finally:
                await service.shutdown()


async def main(args: argparse.Namespace) -> None:
    rows = []
    async with engine() as ours:
        for size in (3, 20):
            workflow = await ours.workflow(size)
            runs = args.runs if size == 3 else max(args.runs // 5, 10)
            graph = plain_graph(workflow)
            found = await paired(
                lambda g=graph, n=runs: plain_langgraph(g, n),
                lambda w=workflow["id"], n=runs: ours.runs(w, n),
                args.rounds,
            )
            report("engine", f"{size}-node", runs=runs, load=os.getloadavg(), **found)
            rows.append(_row(size, found))
    header = ["workflow", "plain ainvoke runs/s", "graphpush runs/s", "ratio (pairs)"]
    header += ["plain CPU µs/run", "graphpush CPU µs/run", "CPU ratio (pairs)"]
    note(table(rows, header))


def _row(size: int, found: dict[str, Any]) -> list[str]:
    med = {k: v["median"] for k, v in found.items()}
    return [
        f"{size}-node",
        f"{med['plain_langgraph']:.0f}",
        f"{med['graphpush']:.0f}",
        _spread(found["ratio"]),
        f"{med['plain_cpu_us_per_run']:.0f}",
        f"{med['graphpush_cpu_us_per_run']:.0f}",
        _spread(found["cpu_ratio"]),
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 100, 1
    return args


def _spread(values: dict[str, float]) -> str:
    return f"{values['median']:.2f} ({values['min']:.2f} to {values['max']:.2f})"


if __name__ == "__main__":
    asyncio.run(main(parse()))
