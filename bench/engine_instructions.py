"""The engine bench's two sides counted in CPU instructions per run (valgrind's callgrind),
a measure the machine's load moves far less than time (on the graphpush side it still
moves a little: fewer runs share a group commit when the process waits for a core).

    python -m bench.engine_instructions [--runs 100] [--sizes 3 20] [--slowdown 50]

For each workflow size it runs itself under ``valgrind --tool=callgrind`` three times: once
for plain ``ainvoke`` on the graph graphpush compiles, once for runs queued through
``ExecutionService`` on SQLite (``bench.engine``'s sides), and once for the setup alone
(imports, the store, the warm-up runs, the shutdown). Callgrind collects from the start in
every thread, so a side's count includes the work its runs leave to other threads (the
SQLite WAL checkpoints of :mod:`app.storage.wal`, and the last of them at shutdown); the
setup's count is subtracted. Hash randomization is off in the children so that the setup
costs the same in each. Valgrind runs the process about 50 times slower, which would shrink
the store's group commits (their delays are wall time): ``--slowdown`` scales those delays
so as many runs share a commit as at full speed. Instructions leave out the kernel's time
(SQLite's write and checkpoint system calls, the event loop's ``epoll_wait``), which CPU
time (``bench.engine``) includes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os

from app.executions import workers
from app.storage import sqlite
from bench.engine import engine, plain_graph, plain_langgraph
from bench.harness import callgrind, note, report, table

SIDES = ("plain", "graphpush")
#: The child that only sets up (``--runs 0``): what each side's count has beyond its runs.
SETUP = "setup"


def measured(side: str, size: int, runs: int) -> None:
    """Set up both sides, warm them up, then run ``runs`` runs of ``side`` (none for
    :data:`SETUP`)."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    try:
        ours = loop.run_until_complete(stack.enter_async_context(engine()))
        workflow = loop.run_until_complete(ours.workflow(size))
        graph = plain_graph(workflow)
        loop.run_until_complete(plain_langgraph(graph, 5))
        if side == "plain":
            loop.run_until_complete(plain_langgraph(graph, runs))
        elif side == "graphpush":
            loop.run_until_complete(ours.runs(workflow["id"], runs))
    finally:
        loop.run_until_complete(stack.aclose())
        loop.close()


def instructions(side: str, size: int, runs: int, slowdown: float) -> int:
    """The instructions of a child process (every thread, from start to exit) that sets
    up, then runs ``runs`` runs of ``side``, under callgrind."""
    args = ["--child", side, "--runs", str(runs), "--sizes", str(size)]
    return callgrind("bench.engine_instructions", [*args, "--slowdown", str(slowdown)])


def main(args: argparse.Namespace) -> None:
    if args.child:
        sqlite.FLUSH_DELAY_S *= args.slowdown
        workers.LINGER_S *= args.slowdown
        measured(args.child, args.sizes[0], args.runs)
        return
    rows = []
    for size in args.sizes:
        runs = args.runs if size == 3 else max(args.runs // 5, 10)
        setup = instructions(SETUP, size, 0, args.slowdown)
        plain, ours = (
            (instructions(side, size, runs, args.slowdown) - setup) / runs for side in SIDES
        )
        found = {"plain_per_run": plain, "graphpush_per_run": ours, "ratio": plain / ours}
        report("engine_instructions", f"{size}-node", runs=runs, load=os.getloadavg(), **found)
        rows.append(
            [f"{size}-node", f"{plain / 1e6:.2f} M", f"{ours / 1e6:.2f} M", f"{plain / ours:.3f}"]
        )
    note(table(rows, ["workflow", "plain ainvoke / run", "graphpush / run", "ratio"]))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 20])
    parser.add_argument("--slowdown", type=float, default=50.0)
    parser.add_argument("--child", choices=(*SIDES, SETUP), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse())
