"""The small harness every benchmark uses: warm-up, several rounds, median and spread,
and one JSON line per result with the versions and the machine it ran on."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("langgraph", "starlette", "uvicorn", "msgspec", "websockets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(terse=True),
        "versions": versions,
    }


async def rounds(
    work: Callable[[], Awaitable[float]], *, rounds: int, warmup: int = 1
) -> dict[str, float]:
    """Run ``work`` (which returns one measurement) ``warmup`` + ``rounds`` times."""
    for _ in range(warmup):
        await work()
    values = [await work() for _ in range(rounds)]
    return summary(values)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "rounds": len(values),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(bench: str, case: str, **fields: Any) -> dict[str, Any]:
    """Print one result as a JSON line and return it."""
    line = {"bench": bench, "case": case, **fields, "env": environment(), "at": time.time()}
    print(json.dumps(line), flush=True)
    return line


def table(rows: list[list[str]], header: list[str]) -> str:
    """A markdown table, for the human reading the run."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], *, within: float, what: str, every: float) -> None:
    """Block until ``ready()`` holds, calling it every ``every`` seconds; ``RuntimeError``
    naming ``what`` after ``within`` seconds (``ready`` may raise sooner, e.g. on a dead
    process)."""
    deadline = time.monotonic() + within
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(what)
        time.sleep(every)


def callgrind(module: str, args: list[str], *, valgrind: tuple[str, ...] = ()) -> int:
    """The instructions valgrind's callgrind counts in ``python -m module *args`` (a child
    process, hash randomization off), with the extra ``valgrind`` options (what to collect)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", *valgrind, f"--callgrind-out-file={out}"]
        command += [sys.executable, "-m", module, *args]
        environ = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, check=True, capture_output=True, env=environ)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")
