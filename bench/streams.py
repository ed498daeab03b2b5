"""Streams inside a node (SPEC §8): N concurrent runs of trigger → llm(fake, 200 tokens,
``delay_ms`` 0 and 10) → set, one client per run over WebSocket and over SSE, against
``langgraph dev`` streaming the same graph with ``stream_mode: ["messages"]`` (``--peers``).

    python -m bench.streams [--peers] [--quick] [--runs 1 10 100] [--delays 0 10]

Method (also in bench/README.md):

- Each client opens its connection (graphpush: ``/agents/push?pushRef=...&lastEventId=0``
  as a WebSocket or as SSE), all clients wait for each other, then each POSTs its run and
  reads until ``executionFinished``. ``langgraph dev``: ``POST /threads`` first, then the
  clients start together with ``POST /threads/<id>/runs/stream`` (SSE) read to its end.
  At least 10 runs per case: with fewer clients each runs several times back to back.
- Token→client latency: the server stamps each token when the model yields it into
  LangGraph (:mod:`bench.streams_server` for graphpush, the graph module itself for
  ``langgraph dev``; a file, nothing on the wire); a client notes when a token's last
  character arrived; both read the same machine clock.
- tokens/s delivered = tokens every client received / (last run end - first POST).
  Stream messages and rows per run are what one run's client received (every message of a
  graphpush run is one row of its log). Server CPU is its process tree's user + system
  time over the case, per 1,000 delivered tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import websockets

from app.workflows.fake_chat import words
from bench import e2e_peers
from bench.e2e import SCRATCH, cpu_seconds
from bench.harness import note, percentile, report, table

ANSWER = " ".join(f"token{i}" for i in range(200))
#: Where each streamed word ends in the answer (the fake model's pieces, SPEC §8).
_ENDS = list(itertools.accumulate(len(piece) for piece in words(ANSWER)))
MIN_RUNS = 10
decode = msgspec.json.decode


@dataclass
class Run:
    """What one client saw of one run: when tokens arrived, by ``(message id, index)``."""

    started_ns: int = 0
    ended_ns: int = 0
    arrivals: list[tuple[str, int, int]] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)
    stream_messages: int = 0
    rows: int = 0

    def text(self, message_id: str, text: str, now: int) -> None:
        before = self.received.get(message_id, 0)
        after = self.received[message_id] = before + len(text)
        for index in range(bisect.bisect_right(_ENDS, before), bisect.bisect_right(_ENDS, after)):
            self.arrivals.append((message_id, index, now))


def workflow(delay_ms: int) -> dict[str, Any]:
    llm = {"model": "fake", "prompt": "p", "response": ANSWER, "delay_ms": delay_ms}
    names = ["Start", "Ask", "File"]
    nodes = [
        {"name": "Start", "type": "trigger"},
        {"name": "Ask", "type": "llm", "parameters": llm},
        {"name": "File", "type": "set", "parameters": {"values": {"filed": True}}},
    ]
    connections = {
        a: {"main": [[{"node": b, "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(names)
    }
    return {
        "id": f"stream{delay_ms}",
        "name": "streams",
        "nodes": nodes,
        "connections": connections,
    }


# ---- one run per client ------------------------------------------------------------------


def _graphpush_message(run: Run, message: dict[str, Any]) -> bool:
    """Fold one push message in; True at the run's end."""
    now = time.time_ns()
    run.rows += 1
    if message["type"] == "nodeExecuteStream":
        run.stream_messages += 1
        for chunk in message["data"]["chunks"]:
            if chunk["kind"] == "text":
                run.text(chunk["messageId"], chunk["text"], now)
    return bool(message["type"] == "executionFinished")


async def graphpush_ws(
    server: dict[str, Any], http: httpx.AsyncClient, ready: Callable[[], Awaitable[Any]]
) -> Run:
    ref, run = f"b{secrets.token_hex(6)}", Run()
    url = f"ws://{server['host']}/agents/push?pushRef={ref}&lastEventId=0"
    async with websockets.connect(url, max_size=None, compression=None) as ws:
        await ready()
        run.started_ns = time.time_ns()
        await http.post(f"/agents/workflows/{server['workflow_id']}/run", json={"push_ref": ref})
        async for frame in ws:
            if _graphpush_message(run, decode(frame)):
                break
    run.ended_ns = time.time_ns()
    return run


async def graphpush_sse(
    server: dict[str, Any], http: httpx.AsyncClient, ready: Callable[[], Awaitable[Any]]
) -> Run:
    ref, run = f"b{secrets.token_hex(6)}", Run()
    headers = {"Accept": "text/event-stream"}
    path = f"/agents/push?pushRef={ref}&lastEventId=0"
    async with http.stream("GET", path, headers=headers) as response:
        await ready()
        run.started_ns = time.time_ns()
        await http.post(f"/agents/workflows/{server['workflow_id']}/run", json={"push_ref": ref})
        async for line in response.aiter_lines():
            if line.startswith("data:") and _graphpush_message(run, decode(line[5:])):
                break
    run.ended_ns = time.time_ns()
    return run


async def langgraph_sse(
    server: dict[str, Any], http: httpx.AsyncClient, ready: Callable[[], Awaitable[Any]]
) -> Run:
    run = Run()
    thread = (await http.post("/threads", json={})).json()["thread_id"]
    body = {
        "assistant_id": "llm3",
        "input": {"input": {"delay_ms": server["delay_ms"]}},
        "stream_mode": ["messages"],
    }
    await ready()
    run.started_ns = time.time_ns()
    async with http.stream("POST", f"/threads/{thread}/runs/stream", json=body) as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                _langgraph_event(run, event, decode(line[5:]))
    run.ended_ns = time.time_ns()
    return run


def _langgraph_event(run: Run, event: str, data: Any) -> None:
    """``messages/partial`` carries each message whole so far; ``messages`` a delta."""
    now = time.time_ns()
    run.rows += 1
    if event == "messages/partial":
        run.stream_messages += 1
        for message in data:
            seen = run.received.get(message["id"], 0)
            run.text(message["id"], str(message.get("content", ""))[seen:], now)
    elif event == "messages":
        run.stream_messages += 1
        run.text(data[0]["id"], str(data[0].get("content", "")), now)


Client = Callable[[dict[str, Any], httpx.AsyncClient, Callable[[], Awaitable[Any]]], Awaitable[Run]]


async def case(client: Client, server: dict[str, Any], clients: int) -> list[Run]:
    """``clients`` clients at once, each running its share of at least MIN_RUNS runs."""
    each = -(-MIN_RUNS // clients)
    limits = httpx.Limits(max_connections=2 * clients + 10, max_keepalive_connections=2 * clients)
    base = f"http://{server['host']}"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as http:
        runs: list[Run] = []
        for _ in range(each):
            barrier = asyncio.Barrier(clients)
            runs += await asyncio.gather(
                *(client(server, http, barrier.wait) for _ in range(clients))
            )
        return runs


# ---- measuring ---------------------------------------------------------------------------


def stamps(path: Path) -> dict[tuple[str, int], int]:
    found = {}
    for line in path.read_text().splitlines():
        message_id, index, ns = line.split()
        found[message_id, int(index)] = int(ns)
    return found


def measure(runs: list[Run], stamped: dict[tuple[str, int], int], cpu_s: float) -> dict[str, Any]:
    tokens = sum(len(r.arrivals) for r in runs)
    span_s = (max(r.ended_ns for r in runs) - min(r.started_ns for r in runs)) / 1e9
    latencies = [
        (now - stamped[message_id, index]) / 1e6
        for r in runs
        for message_id, index, now in r.arrivals
        if (message_id, index) in stamped
    ]
    return {
        "runs": len(runs),
        "tokens": tokens,
        "tokens_per_s": tokens / span_s,
        "latency_p50_ms": percentile(latencies, 0.5) if latencies else None,
        "latency_p99_ms": percentile(latencies, 0.99) if latencies else None,
        "stamped": len(latencies),
        "stream_messages_per_run": sum(r.stream_messages for r in runs) / len(runs),
        "rows_per_run": sum(r.rows for r in runs) / len(runs),
        "cpu_ms_per_1k_tokens": 1000 * cpu_s / (tokens / 1000) if tokens else None,
        "duration_s": span_s,
    }


async def measured(
    client: Client, server: dict[str, Any], clients: int, stamp_file: Path
) -> dict[str, Any]:
    _truncate(stamp_file)
    cpu_before = cpu_seconds(server["pid"])
    runs = await case(client, server, clients)
    cpu_s = cpu_seconds(server["pid"]) - cpu_before
    await asyncio.sleep(0.2)  # the last answers' stamps are written as their runs end
    result = measure(runs, stamps(stamp_file), cpu_s)
    if result["tokens"] != len(_ENDS) * len(runs):
        note(f"warning: {result['tokens']} tokens of {len(_ENDS) * len(runs)} delivered")
    return result


def _truncate(path: Path) -> None:
    path.write_text("")


# ---- the benchmark -----------------------------------------------------------------------

TARGETS: dict[str, Client] = {
    "graphpush WS": graphpush_ws,
    "graphpush SSE": graphpush_sse,
    "langgraph dev SSE": langgraph_sse,
}


def row(target: str, delay: int, clients: int, r: dict[str, Any]) -> list[str]:
    def ms(value: float | None) -> str:
        return "—" if value is None else f"{value:,.1f}"

    return [
        target,
        str(delay),
        str(clients),
        f"{r['tokens_per_s']:,.0f}",
        ms(r["latency_p50_ms"]),
        ms(r["latency_p99_ms"]),
        f"{r['stream_messages_per_run']:.1f}",
        f"{r['rows_per_run']:.1f}",
        ms(r["cpu_ms_per_1k_tokens"]),
    ]


HEADER = [
    "server",
    "delay ms",
    "runs at once",
    "tokens/s",
    "token→client p50 ms",
    "p99 ms",
    "stream msgs/run",
    "log rows/run",
    "CPU ms/1k tokens",
]


async def run_target(
    target: str, servers: dict[int, dict[str, Any]], args: argparse.Namespace, stamp: Path
) -> list[list[str]]:
    client, rows = TARGETS[target], []
    for delay in args.delays:
        server = servers[delay]
        await case(client, server, 1)  # warm-up
        for clients in args.runs:
            result = await measured(client, server, clients, stamp)
            report("streams", f"{target} delay={delay} runs={clients}", **result)
            rows.append(row(target, delay, clients, result))
    return rows


async def main(args: argparse.Namespace) -> None:
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="graphpush-streams-") as folder:
        stamp = Path(folder) / "stamps"
        env = {"GRAPHPUSH_BENCH_STAMPS": str(stamp)}
        # One execution worker per run at once: an LLM node waits on its model, as a run of
        # ``langgraph dev`` does (its default: 10 runs at once per worker process).
        served = {**env, "GRAPHPUSH_WORKERS": str(max(args.runs))}
        with contextlib.ExitStack() as stack:
            servers = {
                delay: stack.enter_context(
                    e2e_peers.graphpush(workflow(delay), main="bench.streams_server", env=served)
                )
                for delay in args.delays
            }
            for target in ("graphpush WS", "graphpush SSE"):
                rows += await run_target(target, servers, args, stamp)
        if args.peers:
            scratch = SCRATCH.expanduser()
            with e2e_peers.langgraph(scratch, env=env) as lg:
                servers = {delay: {**lg, "delay_ms": delay} for delay in args.delays}
                rows += await run_target("langgraph dev SSE", servers, args, stamp)
    note(table(rows, HEADER))
    note(f"load average: {os.getloadavg()}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.streams", description=__doc__)
    parser.add_argument("--peers", action="store_true", help="also langgraph dev")
    parser.add_argument("--runs", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--delays", type=int, nargs="+", default=[0, 10])
    parser.add_argument("--quick", action="store_true", help="1 and 10 runs, delay 0 (CI)")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.delays = [1, 10], [0]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
