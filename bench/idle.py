"""Idle connections: server memory per idle WebSocket and SSE connection, and server CPU
while they sit idle, at 1,000 and 5,000 connections.

    python -m bench.idle [--counts 1000 5000] [--window 10] [--quick]

Method (also in bench/README.md), for each transport and count, in a fresh server
(:func:`bench.push_servers.graphpush`: the real app on real uvicorn):

- 50 connections opened and closed as a warm-up; ``gc.collect()`` in the server; then the
  server's CPU seconds (user + system, psutil) over ``window`` seconds with no connection:
  the baseline.
- RSS; ``count`` idle connections to ``/agents/push`` (WebSocket, or SSE with
  ``Accept: text/event-stream``) from 2 client processes (:mod:`bench.push_clients`); 1 s;
  ``gc.collect()``; RSS. Reported: RSS growth / ``count``.
- Then the server's CPU seconds over ``window`` seconds with all of them open, as % of one
  core. ``RLIMIT_NOFILE`` is raised in the server and in the clients.
"""

from __future__ import annotations

import argparse
import os
import time

import psutil

from bench import push_clients, push_servers
from bench.harness import note, report, table
from bench.push import Api, Clients, server

WARMUP = 50


def cpu_percent(process: psutil.Process, window_s: float) -> float:
    """The process's CPU use over the next ``window_s`` seconds, as % of one core."""
    before, start = process.cpu_times(), time.monotonic()
    time.sleep(window_s)
    after, wall = process.cpu_times(), time.monotonic() - start
    used = (after.user - before.user) + (after.system - before.system)
    return 100 * used / wall


def idle(kind: str, count: int, clients: Clients, window_s: float) -> dict[str, float]:
    """Memory per idle connection and CPU while idle, in a fresh server."""
    with server(push_servers.graphpush) as (host, spawned):
        api, process = Api(host), psutil.Process(spawned.pid)
        paths = [f"/agents/push?pushRef=idle{i}" for i in range(count)]
        clients.open("idle", kind, host, paths[:WARMUP])  # code paths, allocator pools
        clients.call("close", "idle")
        time.sleep(0.5)
        api.gc()
        baseline = cpu_percent(process, window_s)
        before = process.memory_info().rss
        started = time.monotonic()
        clients.open("idle", kind, host, paths)
        opened_s = time.monotonic() - started
        time.sleep(1.0)
        api.gc()
        after = process.memory_info().rss
        try:
            busy = cpu_percent(process, window_s)
        finally:
            clients.call("close", "idle")
        return {
            "bytes_per_connection": (after - before) / count,
            "rss_growth_mib": (after - before) / 2**20,
            "rss_mib": after / 2**20,
            "cpu_percent_idle": busy,
            "cpu_percent_no_connections": baseline,
            "open_s": opened_s,
        }


def main(args: argparse.Namespace) -> None:
    push_clients.raise_nofile()
    clients = Clients(2)
    rows: list[list[str]] = []
    try:
        for kind in ("ws", "sse"):
            for count in args.counts:
                result = idle(kind, count, clients, args.window)
                report(
                    "idle",
                    f"{kind}-x{count}",
                    connections=count,
                    window_s=args.window,
                    load=os.getloadavg(),
                    **result,
                )
                rows.append(
                    [
                        f"idle {'WebSocket' if kind == 'ws' else 'SSE'} x{count:,}",
                        f"{result['bytes_per_connection'] / 1024:.1f}",
                        f"{result['rss_growth_mib']:.1f}",
                        f"{result['cpu_percent_idle']:.2f}",
                        f"{result['cpu_percent_no_connections']:.2f}",
                    ]
                )
    finally:
        clients.close()
    header = [
        "case",
        "RSS KiB per connection",
        "RSS growth MiB",
        f"server CPU % of a core, {args.window:g} s idle",
        "same, no connections",
    ]
    note(table(rows, header))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--window", type=float, default=10.0, help="seconds of idle CPU")
    parser.add_argument("--quick", action="store_true", help="a smoke run in under 30 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.counts, args.window = [100], 1.0
    return args


if __name__ == "__main__":
    main(parse())
