"""The benchmarks still run: their ``--quick`` modes as a CI smoke test (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.scaleout import needs_services

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("module", "cases"),
    [
        ("bench.push", {"websocket-x1", "websocket-x50", "sse-x50", "idle-ws", "idle-sse"}),
        ("bench.engine", {"3-node", "20-node"}),
        ("bench.run_path", {"clients-x1", "clients-x8"}),
        ("bench.history", {"empty history", "2,000 runs kept", "prune", "pruned to 500"}),
        ("bench.idle", {"ws-x100", "sse-x100"}),
        (
            "bench.e2e",
            {"graphpush-ws-x1", "graphpush-sse-x1", "graphpush-ws-x8", "graphpush-sse-x8", "goals"},
        ),
        ("bench.slow_consumer", {"without-stalled", "with-stalled"}),
        ("bench.full_disk", {"round-0", "summary"}),
        (
            "bench.streams",
            {f"graphpush {t} delay=0 runs={n}" for t in ("WS", "SSE") for n in (1, 10)},
        ),
        ("bench.retry", {"3-node chain, from n2", "20-node chain, from n19"}),
        ("bench.webhooks", {"no webhook", "webhook delivered"}),
        ("bench.feed", {"followers-x0", "followers-x10"}),
        ("bench.wal", {"runs-100", "runs-200"}),
        (
            "bench.commit_thread",
            {f"writer thread, switch interval {ms} ms" for ms in ("5", "0.2")} | {"main thread"},
        ),
        pytest.param(
            "bench.scaleout",
            {f"runs/s {c}" for c in ("embedded", "1 worker process", "2 worker processes")}
            | {"fan-out in-process bus", "fan-out Redis pub/sub"},
            marks=needs_services(),
        ),
    ],
)
def test_quick_benchmark_exits_0_and_prints_json_lines(module: str, cases: set[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert {line["case"] for line in lines} == cases
    assert all(line["bench"] == module.split(".")[1] for line in lines)
    assert "|" in done.stderr  # the markdown table for the human reading the run
