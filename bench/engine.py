"""Engine overhead: runs/s of the same 3- and 20-node workflows through plain LangGraph
``ainvoke`` in-process vs through ``ExecutionService`` with push events and SQLite on.

    python -m bench.engine [--runs 2000] [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
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
from bench.harness import note, report, rounds, table


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


async def plain_langgraph(workflow: dict[str, Any], runs: int) -> float:
    """runs/s of ``ainvoke`` on the very graph graphpush compiles for the workflow."""
    registry = builtin_registry()
    parsed = parse_workflow(workflow, registry, python_modules=())
    compiled = compile_workflow(
        parsed, registry, checkpointer=None, default_recursion_limit=100, workflow_id="plain"
    )
    start = time.perf_counter()
    for _ in range(runs):
        await compiled.graph.ainvoke({"input": {}})
    return runs / (time.perf_counter() - start)


async def through_service(
    service: ExecutionService, finished: asyncio.Queue[str], workflow_id: str, runs: int
) -> float:
    """runs/s from queueing ``runs`` runs until every ``executionFinished`` is published."""
    start = time.perf_counter()
    await asyncio.gather(*(service.queue_manual_execution(workflow_id) for _ in range(runs)))
    for _ in range(runs):
        await finished.get()
    return runs / (time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings({"data_dir": folder, "queue_bound": 1_000_000}, environ={})
        store = SqliteStore(Path(folder) / "bench.sqlite")
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
            rows = []
            for size in (3, 20):
                workflow = await workflows.create(chain(size))
                runs = args.runs if size == 3 else max(args.runs // 5, 10)
                await through_service(service, finished, workflow["id"], 5)  # compile + warm up
                plain = await rounds(
                    lambda w=workflow, n=runs: plain_langgraph(w, n), rounds=args.rounds
                )
                ours = await rounds(
                    lambda w=workflow["id"], n=runs: through_service(service, finished, w, n),
                    rounds=args.rounds,
                )
                ratio = ours["median"] / plain["median"]
                report(
                    "engine",
                    f"{size}-node",
                    runs=runs,
                    plain_langgraph=plain,
                    graphpush=ours,
                    ratio=ratio,
                )
                rows.append(
                    [
                        f"{size}-node",
                        f"{plain['median']:.0f}",
                        f"{ours['median']:.0f}",
                        f"{ratio:.2f}",
                    ]
                )
            await service.shutdown()
        note(table(rows, ["workflow", "plain ainvoke runs/s", "graphpush runs/s", "ratio"]))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 100, 1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
