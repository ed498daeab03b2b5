"""Would a writer thread take SQLite's group commits off the event loop? The commits of a
real run path are captured, then written again into a fresh file on the main thread, and on
a thread of their own while the main thread counts in pure Python (as a busy event loop
would run): how much of a commit's time still holds the GIL, and how long a commit takes
once it has to win the GIL back from a busy thread.

    python -m bench.commit_thread [--runs 800] [--rounds 3] [--quick]

The commits are those of ``bench.run_path``'s 8 clients (``POST /run`` → ``executionFinished``
through the real ASGI app, SQLite in WAL mode). ``sqlite3`` gives the GIL back around each
statement's steps and the ``COMMIT``; the thread takes it back after at most the switch
interval (``sys.setswitchinterval``, 5 ms by default), measured at 5 ms and 0.2 ms.
"""

from __future__ import annotations

import argparse
import copy
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from app.storage import sqlite
from app.storage.sql_rows import KeyRow
from app.storage.sqlite_batch import write_batch
from app.storage.sqlite_schema import open_database
from app.storage.staging import Staged
from bench import run_path
from bench.harness import note, report, summary, table

Commit = tuple[Staged, list[KeyRow]]
#: How long the main thread counts beside the writer thread.
WINDOW_S = 2.0


def captured(runs: int) -> list[Commit]:
    """The batches of every group commit of ``runs`` runs over 8 clients."""
    commits: list[Commit] = []

    def keep(db: sqlite3.Connection, batch: Staged, keys: list[KeyRow]) -> None:
        commits.append((copy.deepcopy(batch), list(keys)))
        write_batch(db, batch, keys)

    async def drive() -> None:
        async with run_path.driver() as ours:
            commits.clear()  # the warm-up's
            await ours.runs(runs, 8)

    sqlite.write_batch = keep  # type: ignore[assignment]
    try:
        uvloop.run(drive())
    finally:
        sqlite.write_batch = write_batch
    return commits


def replay(commits: list[Commit], folder: str, done: list[int] | None = None) -> None:
    """Write ``commits`` into a fresh database in ``folder``, on the calling thread, counting
    each in ``done``."""
    db = open_database(str(Path(tempfile.mkdtemp(dir=folder)) / "replay.sqlite"))
    try:
        for batch, keys in commits:
            write_batch(db, batch, keys)
            if done is not None:
                done[0] += 1
    finally:
        db.close()


def count_for(seconds: float, writer: threading.Thread | None = None) -> float:
    """Count in pure Python for ``seconds`` (or until ``writer`` ends): iterations/s."""
    start = time.perf_counter()
    deadline, n = start + seconds, 0
    while time.perf_counter() < deadline and (writer is None or writer.is_alive()):
        for _ in range(1000):
            n += 1
    return n / (time.perf_counter() - start)


def on_main(commits: list[Commit], folder: str) -> float:
    """µs per commit written on the main thread."""
    start = time.perf_counter()
    replay(commits, folder)
    return 1e6 * (time.perf_counter() - start) / len(commits)


def beside_busy_thread(commits: list[Commit], folder: str, interval: float) -> dict[str, float]:
    """The commits on a thread for ``WINDOW_S`` while this one counts: µs per commit, and µs
    of this thread's time each commit still took (the GIL it held, and the hand-overs)."""
    rate_alone = count_for(WINDOW_S)
    done = [0]
    writer = threading.Thread(target=replay, args=(commits, folder, done), daemon=True)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    try:
        start = time.perf_counter()
        writer.start()
        rate = count_for(WINDOW_S, writer)
        seconds = time.perf_counter() - start
        written = done[0]
    finally:
        sys.setswitchinterval(previous)
    writer.join()
    lost = seconds * (1 - rate / rate_alone)
    return {
        "us_per_commit": 1e6 * seconds / max(written, 1),
        "loop_us_per_commit": 1e6 * max(0.0, lost) / max(written, 1),
    }


def main(args: argparse.Namespace) -> None:
    commits = captured(args.runs)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        alone = summary([on_main(commits, folder) for _ in range(args.rounds)])
        load = os.getloadavg()
        report("commit_thread", "main thread", commits=len(commits), load=load, us_per_commit=alone)
        rows.append(["on the main thread", f"{alone['median']:.0f}", f"{alone['median']:.0f}"])
        for interval in (0.005, 0.0002):
            found = [beside_busy_thread(commits, folder, interval) for _ in range(args.rounds)]
            result: dict[str, Any] = {k: summary([f[k] for f in found]) for k in found[0]}
            case = f"writer thread, switch interval {interval * 1000:g} ms"
            report("commit_thread", case, commits=len(commits), load=os.getloadavg(), **result)
            med = {k: v["median"] for k, v in result.items()}
            rows.append([case, f"{med['us_per_commit']:.0f}", f"{med['loop_us_per_commit']:.0f}"])
    header = ["commits written", "µs per commit", "µs of the main thread per commit"]
    note(f"{len(commits)} commits of {args.runs} runs, 8 clients")
    note(table(rows, header))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke run in a few seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.rounds = 80, 1
    return args


if __name__ == "__main__":
    main(parse())
