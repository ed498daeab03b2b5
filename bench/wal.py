"""The SQLite WAL under sustained load: its size, and user and kernel CPU per run, while
runs of a 3-node workflow never stop coming.

    python -m bench.wal [--runs 8000] [--every 1000] [--quick]

Every run is queued at once through ``ExecutionService`` on SQLite (``bench.engine``'s
engine), so a commit lands during every WAL checkpoint until the last run ends. Each block
of ``--every`` finished runs reports the WAL file's size (``<db>-wal``: it never shrinks
while the store is open, so it is the most of it ever in use), and the process's user and
kernel CPU per run over the block (``getrusage``: every thread, the checkpoint thread
too). Run it in two checkouts to compare code (``PYTHONPATH=<checkout>``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
from typing import Any

from bench.engine import engine
from bench.harness import note, report, table


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def main(args: argparse.Namespace) -> None:
    rows = []
    async with engine() as ours:
        workflow_id = (await ours.workflow(3))["id"]
        wal = f"{ours.path}-wal"
        queued = [ours.service.queue_manual_execution(workflow_id) for _ in range(args.runs)]
        queueing = asyncio.gather(*queued)
        cpu, start = _cpu(), time.perf_counter()
        for block in range(args.runs // args.every):
            for _ in range(args.every):
                await ours.finished.get()
            now, elapsed = _cpu(), time.perf_counter() - start
            found = _block(args.every, cpu, now, elapsed, os.stat(wal).st_size)
            report("wal", f"runs-{(block + 1) * args.every}", load=os.getloadavg(), **found)
            rows.append(_row((block + 1) * args.every, found))
            cpu, start = now, time.perf_counter()
        await queueing
    header = ["runs", "WAL MB", "runs/s", "user µs/run", "kernel µs/run"]
    note(table(rows, header))


def _block(
    runs: int, cpu: tuple[float, float], now: tuple[float, float], elapsed: float, wal: int
) -> dict[str, Any]:
    return {
        "wal_bytes": wal,
        "runs_per_s": runs / elapsed,
        "user_us_per_run": 1e6 * (now[0] - cpu[0]) / runs,
        "kernel_us_per_run": 1e6 * (now[1] - cpu[1]) / runs,
    }


def _row(runs: int, found: dict[str, Any]) -> list[str]:
    return [
        f"{runs:,}",
        f"{found['wal_bytes'] / 1e6:.1f}",
        f"{found['runs_per_s']:.0f}",
        f"{found['user_us_per_run']:.0f}",
        f"{found['kernel_us_per_run']:.0f}",
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=8000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.every = 200, 100
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
