"""Push fan-out: one run of a 20-node workflow (62 messages) streamed live to many WebSocket
and SSE subscribers of graphpush on real uvicorn, beside a raw ``websockets`` broadcast of
the same frames to as many clients; and the server memory per idle connection.

    python -m bench.push [--rounds 5] [--quick]

Method (also in bench/README.md):

- Fan-out is many canvases watching one run: every WebSocket client sends
  ``subscribe_execution`` for the run; every SSE client opens
  ``/agents/executions/{id}/stream``. The run is queued behind a gate run (a long ``delay``)
  while they subscribe; cancelling the gate starts it.
- The server stamps each event as the engine publishes it (before the push hub routes it);
  clients, in 2 other processes, stamp each message as it arrives (one monotonic clock for
  the machine). Latency = arrival - publish, over every message of every client.
  Delivered messages/s = messages received / (last arrival - first publish).
- The ceiling is a plain ``websockets`` server that broadcasts the same 62 pre-encoded frames
  back to back (no engine, no routing, no resume buffer) to the same clients.
- Per round, each side also reports its server's CPU time and write system calls per client
  (``/proc/<pid>/io``) and the client processes' CPU time, which the load moves far less
  than the clock (:class:`Meter`).
- Memory: RSS growth of a fresh server process when ``count`` idle connections open on
  ``/agents/push`` (WebSocket, or SSE with ``Accept: text/event-stream``), divided by
  ``count``, after a warm-up and a ``gc.collect()`` on both sides of the measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Callable, Iterator
from multiprocessing.context import SpawnProcess
from typing import Any

import httpx
import msgspec
import psutil
from websockets.sync.client import connect

from app.messages import BINARY_TYPES
from app.push import wire
from bench import push_clients, push_servers
from bench.engine import chain
from bench.harness import free_port, note, percentile, report, summary, table, wait_until

NODES = 20
MESSAGES = 1 + 3 * NODES + 1  # executionStarted, before/after/afterData per node, finished
GATE = {
    "id": "gate",
    "name": "gate",
    "nodes": [
        {"name": "Start", "type": "trigger"},
        {"name": "Hold", "type": "delay", "parameters": {"ms": 60_000}},
    ],
    "connections": {"Start": {"main": [[{"node": "Hold", "type": "main", "index": 0}]]}},
}
CTX = mp.get_context("spawn")


@contextlib.contextmanager
def server(target: Callable[..., None], *args: Any) -> Iterator[tuple[str, SpawnProcess]]:
    """Run ``target(port, *args)`` in a process; yield ``host:port`` once it accepts."""
    port = free_port()
    process = CTX.Process(target=target, args=(port, *args), daemon=True)
    process.start()

    def accepts() -> bool:
        if not process.is_alive():
            raise RuntimeError("the server exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
            return True
        return False

    try:
        wait_until(accepts, within=60, what="the server did not start", every=0.05)
        yield f"127.0.0.1:{port}", process
    finally:
        process.terminate()
        process.join(10)


class Clients:
    """The client processes; each command goes to all of them, and waits for every reply.
    Clients are kept in named groups (graphpush's, the ceiling's)."""

    def __init__(self, processes: int = 2) -> None:
        self.pipes = []
        self.processes = []
        for _ in range(processes):
            mine, theirs = CTX.Pipe()
            process = CTX.Process(target=push_clients.main, args=(theirs,), daemon=True)
            process.start()
            self.pipes.append(mine)
            self.processes.append(process)

    def call(self, command: str, group: str, *args: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, group, *args))
        return self._replies(command)

    def open(self, group: str, kind: str, host: str, paths: list[str]) -> None:
        """Open ``paths`` as ``kind`` clients of ``group``, shared out over the processes."""
        for i, pipe in enumerate(self.pipes):
            pipe.send(("open", group, kind, host, paths[i :: len(self.pipes)]))
        self._replies("open")

    def collect(self, group: str, timeout_s: float) -> tuple[list[list[float]], int]:
        replies = self.call("collect", group, timeout_s)
        return [t for r in replies for t in r["times"]], sum(r["finished"] for r in replies)

    def _replies(self, command: str) -> list[Any]:
        replies = []
        for pipe in self.pipes:
            status, reply = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"client {command}: {reply}")
            replies.append(reply)
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(("quit",))
        for process in self.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()


class Api:
    """The REST calls the driver makes on the graphpush server."""

    def __init__(self, host: str) -> None:
        self.http = httpx.Client(base_url=f"http://{host}", timeout=30)

    def create(self, workflow: dict[str, Any]) -> str:
        response = self.http.post("/agents/workflows", json=workflow)
        response.raise_for_status()
        return str(response.json()["id"])

    def run(self, workflow_id: str) -> str:
        response = self.http.post(f"/agents/workflows/{workflow_id}/run", json={})
        response.raise_for_status()
        return str(response.json()["execution_id"])

    def cancel(self, execution_id: str) -> None:
        self.http.post(f"/agents/executions/{execution_id}/cancel").raise_for_status()

    def stamps(self, execution_id: str) -> list[float]:
        """Publish times by seq (index 0 is seq 1)."""
        pairs = self.http.get(f"/__bench/stamps/{execution_id}").json()
        return [t for _, t in sorted(pairs)]

    def frames(self, execution_id: str) -> list[push_servers.Frame]:
        """The run's messages as graphpush's WebSocket frames (``meta.id`` = seq)."""
        body = self.http.get(f"/agents/executions/{execution_id}/events").content
        items = msgspec.json.decode(body, type=_Events).items
        outs = [wire.Outgoing(bytes(e.message), e.type in BINARY_TYPES, e.seq) for e in items]
        return [(wire.ws_frame(out), out.binary) for out in outs]

    def status(self, execution_id: str) -> str:
        return str(self.http.get(f"/agents/executions/{execution_id}").json()["status"])

    def gc(self) -> None:
        self.http.post("/__bench/gc").raise_for_status()

    def passes(self) -> tuple[float, float, float]:
        """The push passes so far, their seconds, and the longest since the last call
        (``/metrics``)."""
        text = self.http.get("/metrics").text
        series = dict(line.split(" ") for line in text.splitlines() if not line.startswith("#"))
        passes, seconds, longest = (
            float(series[f"graphpush_push_{name}"])
            for name in ("passes_total", "pass_seconds_total", "pass_max_seconds")
        )
        return passes, seconds, longest


class _Event(msgspec.Struct):
    seq: int
    type: str
    message: msgspec.Raw


class _Events(msgspec.Struct):
    items: list[_Event]


def measure(stamps: list[float], times: list[list[float]], finished: int) -> dict[str, float]:
    """Delivered messages/s and publish→arrival latency of one run."""
    received = sum(len(t) for t in times)
    expected = MESSAGES * len(times)
    if received != expected or finished != len(times) or len(stamps) != MESSAGES:
        raise RuntimeError(
            f"{received}/{expected} messages, {finished}/{len(times)} clients saw the end, "
            f"{len(stamps)} publishes"
        )
    span = max(t[-1] for t in times) - stamps[0]
    latencies = [t[k] - stamps[k] for t in times for k in range(len(t))]
    return {
        "msgs_per_s": received / span,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


Round = Callable[[], dict[str, float]]


class Meter:
    """A server process's CPU time and write system calls (``/proc/<pid>/io``'s ``syscw``),
    and the client processes' CPU time, which the machine's load moves far less than the
    wall clock: what one round cost each side."""

    def __init__(self, pid: int, clients: Clients) -> None:
        self.server = psutil.Process(pid)
        self.clients = [psutil.Process(p.pid) for p in clients.processes]
        self._start = (0.0, 0.0, 0.0)

    def start(self) -> None:
        self._start = self._now()

    def per_client(self, clients: int) -> dict[str, float]:
        cpu, writes, client_cpu = (b - a for a, b in zip(self._start, self._now(), strict=True))
        return {
            "server_cpu_ms": 1000 * cpu,
            "writes_per_client": writes / clients,
            "client_cpu_ms": 1000 * client_cpu,
        }

    def _now(self) -> tuple[float, float, float]:
        times = self.server.cpu_times()
        writes = float(self.server.io_counters().write_count)
        client_cpu = sum(sum(c.cpu_times()[:2]) for c in self.clients)
        return times.user + times.system, writes, client_cpu


class Bench:
    """The graphpush server, the ceiling server, the client processes, and the cases.

    Each case alternates a graphpush round with a ceiling round to as many clients (both
    groups stay connected side by side), so that each ratio compares two runs made under the
    same conditions: this machine is shared, and its load moves absolute numbers a lot."""

    def __init__(self, host: str, pid: int, clients: Clients, args: argparse.Namespace) -> None:
        self.host = host
        self.meter = Meter(pid, clients)
        self.clients = clients
        self.args = args
        self.api = Api(host)
        self.chain = self.api.create({**chain(NODES), "id": "chain20"})
        self.gate = self.api.create(GATE)
        self.raw_host = ""
        self.raw_meter: Meter | None = None

    def frames(self) -> list[push_servers.Frame]:
        """The frames graphpush sends for one run of the workflow (to give the ceiling)."""
        execution_id = self.api.run(self.chain)
        wait_until(
            lambda: self.api.status(execution_id) == "success",
            within=30,
            what="the sample run did not finish",
            every=0.05,
        )
        return self.api.frames(execution_id)

    def websocket(self, count: int) -> dict[str, Any]:
        paths = [f"/agents/push?pushRef=ws{count}x{i}" for i in range(count)]
        self.clients.open("graphpush", "ws", self.host, paths)
        try:
            return self._paired(lambda: self._gated(self._subscribe), count)
        finally:
            self.clients.call("close", "graphpush")

    def sse(self, count: int) -> dict[str, Any]:
        def one_round() -> dict[str, float]:
            try:
                return self._gated(lambda e: self._streams(e, count))
            finally:
                self.clients.call("close", "graphpush")

        return self._paired(one_round, count)

    def _subscribe(self, execution_id: str) -> None:
        self.clients.call("subscribe", "graphpush", execution_id)

    def _streams(self, execution_id: str, count: int) -> None:
        path = f"/agents/executions/{execution_id}/stream"
        self.clients.open("graphpush", "sse", self.host, [path] * count)

    def _gated(self, subscribe: Callable[[str], None]) -> dict[str, float]:
        """Queue a run behind a gate, let the clients subscribe, release it, measure."""
        gate = self.api.run(self.gate)
        target = self.api.run(self.chain)
        subscribe(target)
        self.clients.call("expect", "graphpush", MESSAGES)
        self.meter.start()
        passes, seconds, _ = self.api.passes()
        self.api.cancel(gate)
        times, finished = self.clients.collect("graphpush", self.args.timeout)
        cost = self.meter.per_client(len(times))
        passes_after, seconds_after, longest = self.api.passes()
        count = passes_after - passes
        cost |= {
            "passes": count,
            "pass_mean_ms": 1000 * (seconds_after - seconds) / max(count, 1),
            "pass_max_ms": 1000 * longest,
        }
        return measure(self.api.stamps(target), times, finished) | cost

    def _paired(self, ours: Round, count: int) -> dict[str, Any]:
        self.clients.open("raw", "ws", self.raw_host, [f"/raw{i}" for i in range(count)])
        try:
            with connect(f"ws://{self.raw_host}/control") as control:

                def raw() -> dict[str, float]:
                    assert self.raw_meter is not None
                    self.clients.call("expect", "raw", MESSAGES)
                    self.raw_meter.start()
                    control.send("go")
                    stamps = msgspec.json.decode(control.recv(timeout=60))
                    times, finished = self.clients.collect("raw", self.args.timeout)
                    cost = self.raw_meter.per_client(len(times))
                    return measure(stamps, times, finished) | cost

                for _ in range(self.args.warmup):
                    ours(), raw()
                pairs = [(ours(), raw()) for _ in range(self.args.rounds)]
        finally:
            self.clients.call("close", "raw")
        result: dict[str, Any] = {
            "graphpush": {k: summary([o[k] for o, _ in pairs]) for k in pairs[0][0]},
            "raw": {k: summary([r[k] for _, r in pairs]) for k in pairs[0][1]},
        }
        result["ratio"] = summary([o["msgs_per_s"] / r["msgs_per_s"] for o, r in pairs])
        return result


def idle_memory(kind: str, count: int, clients: Clients) -> float:
    """Bytes of server RSS per idle ``/agents/push`` connection, in a fresh server."""
    with server(push_servers.graphpush) as (host, process):
        api, rss = Api(host), psutil.Process(process.pid).memory_info
        paths = [f"/agents/push?pushRef=idle{i}" for i in range(count)]
        clients.open("idle", kind, host, paths[:50])  # warm-up: code paths, allocator pools
        clients.call("close", "idle")
        time.sleep(0.5)
        api.gc()
        before = rss().rss
        clients.open("idle", kind, host, paths)
        time.sleep(1.0)
        api.gc()
        after = rss().rss
        clients.call("close", "idle")
        return (after - before) / count


def main(args: argparse.Namespace) -> None:
    push_clients.raise_nofile()
    clients = Clients()
    rows: list[list[str]] = []
    try:
        with server(push_servers.graphpush, not args.default_gc) as (host, ours):
            assert ours.pid is not None
            bench = Bench(host, ours.pid, clients, args)
            with server(push_servers.raw_websockets, bench.frames()) as (raw_host, raw):
                assert raw.pid is not None
                bench.raw_host, bench.raw_meter = raw_host, Meter(raw.pid, clients)
                for count in args.ws:
                    rows.append(_case("websocket", count, bench.websocket(count)))
                for count in args.sse:
                    rows.append(_case("sse", count, bench.sse(count)))
        for kind in ("ws", "sse") if args.idle else ():
            per = idle_memory(kind, args.idle, clients)
            report("push", f"idle-{kind}", connections=args.idle, bytes_per_connection=per)
            rows.append([f"idle {kind} x{args.idle}", f"{per / 1024:.1f} KiB/conn", *[""] * 7])
    finally:
        clients.close()
    header = [
        "case",
        "graphpush msg/s (p50/p99 ms)",
        "raw websockets msg/s",
        "ratio",
        "server CPU ms: graphpush / raw",
        "clients' CPU ms: graphpush / raw",
        "writes per client: graphpush / raw",
        "graphpush passes (mean / longest ms)",
        "rounds",
    ]
    note(table(rows, header))


def _case(transport: str, count: int, result: dict[str, Any]) -> list[str]:
    report("push", f"{transport}-x{count}", subscribers=count, load=os.getloadavg(), **result)
    ours, raw = result["graphpush"], result["raw"]
    latency = f"({ours['p50_ms']['median']:.1f}/{ours['p99_ms']['median']:.1f})"
    name = "WebSocket" if transport == "websocket" else "SSE"
    return [
        f"{name} x{count}",
        f"{ours['msgs_per_s']['median']:,.0f} {latency}",
        f"{raw['msgs_per_s']['median']:,.0f}",
        f"{result['ratio']['median']:.2f}",
        f"{ours['server_cpu_ms']['median']:.0f} / {raw['server_cpu_ms']['median']:.0f}",
        f"{ours['client_cpu_ms']['median']:.0f} / {raw['client_cpu_ms']['median']:.0f}",
        f"{ours['writes_per_client']['median']:.1f} / {raw['writes_per_client']['median']:.1f}",
        f"{ours['passes']['median']:.0f} ({ours['pass_mean_ms']['median']:.1f}"
        f" / {ours['pass_max_ms']['median']:.1f})",
        str(result["ratio"]["rounds"]),
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--ws", type=int, nargs="*", default=[1, 100, 1000])
    parser.add_argument("--sse", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per round")
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under 1 min")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="leave the server's garbage collector as CPython sets it (not as `graphpush serve`)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.ws, args.sse, args.idle = 1, 1, [1, 50], [50], 100
        args.timeout = 10.0
    return args


if __name__ == "__main__":
    main(parse())
