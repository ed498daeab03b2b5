"""End to end: runs/s and POST→first-event / POST→executionFinished latency of a
trigger → set → set workflow with 1, 8 and 64 clients, graphpush (a real server, SQLite
history on) over WebSocket and SSE, vs n8n 2.41.1 (manual runs, WebSocket push) and vs
``langgraph dev`` (its SSE runs API) with ``--peers``.

    python -m bench.e2e [--peers] [--baseline CHECKOUT] [--quick] [--rounds 5]
                        [--clients 1 8 64] [--scale 1]

``--baseline`` serves another source tree of graphpush beside this one (WebSocket rounds,
paired like the peers'): how a change moves runs/s, latency and server CPU per run.

Method (also in bench/README.md):

- Each client opens its push connection (graphpush: ``/agents/push?pushRef=...`` as a
  WebSocket, or as SSE with ``Accept: text/event-stream``; n8n: ``/rest/push`` with its
  login cookie and ``Origin``), then runs back to back on its own HTTP keep-alive
  connection: note the time, POST the run with its push ref, wait for the run's first push
  message and for its ``executionFinished``. For ``langgraph dev`` a run is
  ``POST /threads`` then ``POST /threads/<id>/runs/stream`` (SSE): latencies count from
  the second POST, to its first event and to the end of the stream.
- 1 client is the sequential case. Clients live in one process apart from the servers
  (uvloop, hand-written HTTP/WebSocket/SSE; :mod:`bench.e2e_clients`). A round lasts
  ``duration`` seconds (a run under way then finishes) and at most a count of runs.
- runs/s = runs / (last end - first POST) of a round. Latency percentiles are over every
  run of a round. Each number is the median of the rounds; servers take their rounds in
  turn (graphpush WS, graphpush SSE, n8n, langgraph), so each ratio compares rounds made
  back to back on this shared machine, and is itself the median of per-round ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any

import psutil

from bench import e2e_clients, e2e_peers
from bench.engine import chain
from bench.harness import note, percentile, report, summary, table

CTX = mp.get_context("spawn")
SCRATCH = Path(os.environ.get("GRAPHPUSH_BENCH_SCRATCH", "~/.cache/graphpush-bench"))
#: Per server: seconds per round, runs per round at most (over all clients), run timeout,
#: seconds of warm-up (n8n's JIT needs a few hundred runs).
PACE = {
    "graphpush": (2.0, 5000, 30.0, 1.0),
    "n8n": (3.0, 400, 60.0, 6.0),
    "langgraph": (3.0, 100, 120.0, 3.0),
}
METRICS = (
    "runs_per_s",
    "first_p50_ms",
    "first_p99_ms",
    "finished_p50_ms",
    "finished_p99_ms",
    "server_cpu_ms_per_run",
    "client_cpu_ms_per_run",
)


class ClientProcess:
    """The process the clients live in; :meth:`round` runs one round there."""

    def __init__(self) -> None:
        self.pipe, theirs = CTX.Pipe()
        self.process = CTX.Process(target=e2e_clients.main, args=(theirs,), daemon=True)
        self.process.start()

    def round(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.pipe.send(("round", spec))
        status, reply = self.pipe.recv()
        if status != "ok":
            raise RuntimeError(f"clients: {reply}")
        return dict(reply)

    def close(self) -> None:
        self.pipe.send(("quit",))
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and its helpers so far."""
    process = psutil.Process(pid)
    total = 0.0
    for one in (process, *process.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            times = one.cpu_times()
            total += times.user + times.system
    return total


def measure(result: dict[str, Any], cpu_s: float, client_cpu_s: float) -> dict[str, float]:
    """runs/s, latency percentiles (ms), server and client CPU per run of one round."""
    runs = result["runs"]
    if not runs:
        raise RuntimeError(f"no run completed: {result['errors'][:3]}")
    span = max(r[2] for r in runs) - min(r[0] for r in runs)
    first = [1000 * (f - s) for s, f, _ in runs]
    finished = [1000 * (e - s) for s, _, e in runs]
    return {
        "runs_per_s": len(runs) / span,
        "first_p50_ms": percentile(first, 0.5),
        "first_p99_ms": percentile(first, 0.99),
        "finished_p50_ms": percentile(finished, 0.5),
        "finished_p99_ms": percentile(finished, 0.99),
        "server_cpu_ms_per_run": 1000 * cpu_s / len(runs),
        "client_cpu_ms_per_run": 1000 * client_cpu_s / len(runs),
        "runs": len(runs),
        "errors": len(result["errors"]),
    }


class Bench:
    def __init__(self, servers: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
        self.servers = servers  # target name → client spec (kind, host, ...)
        self.args = args
        self.clients = ClientProcess()

    def spec(self, target: str, clients: int, warming: bool = False) -> dict[str, Any]:
        server = self.servers[target]
        duration, budget, timeout, warmup = PACE[server["kind"]]
        if self.args.quick:
            duration, budget, warmup = 0.5, 500, 0.3
        return {
            **server,
            "clients": clients,
            "duration_s": (warmup if warming else duration) * self.args.scale,
            "max_runs": max(1, budget // clients),
            "run_timeout_s": timeout,
        }

    def case(self, clients: int) -> dict[str, list[dict[str, float]]]:
        """Warm-up, then ``rounds`` rounds of every server in turn."""
        for target in self.servers:
            self.clients.round(self.spec(target, clients, warming=True))
        rounds: dict[str, list[dict[str, float]]] = {target: [] for target in self.servers}
        errors: dict[str, list[str]] = {target: [] for target in self.servers}
        for _ in range(self.args.rounds):
            for target in self.servers:
                pid, theirs = self.servers[target]["pid"], self.clients.process.pid
                assert theirs is not None  # started in __init__
                cpu, client_cpu = cpu_seconds(pid), cpu_seconds(theirs)
                result = self.clients.round(self.spec(target, clients))
                cpu, client_cpu = cpu_seconds(pid) - cpu, cpu_seconds(theirs) - client_cpu
                errors[target] += result["errors"]
                rounds[target].append(measure(result, cpu, client_cpu))
        for target, found in errors.items():
            if found:
                note(f"{target} x{clients}: {len(found)} failed runs, e.g. {found[0]}")
        return rounds

    def close(self) -> None:
        self.clients.close()


def ratios(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> dict[str, Any]:
    """Per-round ratios of graphpush WS to a server measured right after it."""
    pairs = list(zip(ours, theirs, strict=True))
    return {
        "runs_per_s": summary([o["runs_per_s"] / t["runs_per_s"] for o, t in pairs]),
        "finished_p50": summary([t["finished_p50_ms"] / o["finished_p50_ms"] for o, t in pairs]),
        "first_p50": summary([t["first_p50_ms"] / o["first_p50_ms"] for o, t in pairs]),
        "server_cpu": summary(
            [t["server_cpu_ms_per_run"] / o["server_cpu_ms_per_run"] for o, t in pairs]
        ),
    }


def row(clients: int, target: str, result: dict[str, Any]) -> list[str]:
    med = {k: result[k]["median"] for k in METRICS}
    ratio = result.get("graphpush_ws_ratio")
    return [
        str(clients),
        target,
        f"{med['runs_per_s']:,.1f}",
        f"{med['first_p50_ms']:.2f} / {med['first_p99_ms']:.2f}",
        f"{med['finished_p50_ms']:.2f} / {med['finished_p99_ms']:.2f}",
        f"{med['server_cpu_ms_per_run']:.2f}",
        f"{med['client_cpu_ms_per_run']:.2f}",
        f"{ratio['runs_per_s']['median']:,.1f}x" if ratio else "",
        f"{ratio['finished_p50']['median']:,.1f}x" if ratio else "",
        f"{ratio['server_cpu']['median']:,.2f}x" if ratio else "",
        str(result["runs_per_s"]["rounds"]),
    ]


def goals(results: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """The issue's goals, against this run's medians."""
    lines, found = [], {}
    eight = results.get(("graphpush-ws", 8))
    if eight:
        found["ws_x8_runs_per_s"] = value = eight["runs_per_s"]["median"]
        lines.append(f"- >= 600 runs/s, 8 clients, WebSocket: {value:,.0f} ({_met(value >= 600)})")
        found.update(ceilings(eight))
        lines.append(
            f"  at the rounds' median CPU per run, the server's one event loop allows"
            f" {found['server_core_runs_per_s']:,.0f} runs/s and this machine's"
            f" {os.cpu_count()} cores, shared with the clients,"
            f" {found['machine_runs_per_s']:,.0f}"
        )
    one = results.get(("graphpush-ws", 1))
    if one:
        found["ws_x1_finished_p50_ms"] = value = one["finished_p50_ms"]["median"]
        lines.append(f"- sequential POST→finished p50 < 2 ms: {value:.2f} ms ({_met(value < 2)})")
    peer = [
        r["graphpush_ws_ratio"]["runs_per_s"]["median"]
        for (target, _), r in results.items()
        if target == "langgraph"
    ]
    if peer:
        found["vs_langgraph_min"] = value = min(peer)
        met = _met(value >= 100)
        lines.append(f"- >= 100x langgraph dev runs/s: {value:,.0f}x at worst ({met})")
    report("e2e", "goals", **found, load=os.getloadavg())
    return lines


def ceilings(result: dict[str, Any]) -> dict[str, float]:
    """The runs/s the median CPU per run of ``result``'s rounds allows: one core for the
    server (its event loop is one thread), and every core for the server and the clients
    together."""
    server = result["server_cpu_ms_per_run"]["median"]
    client = result["client_cpu_ms_per_run"]["median"]
    return {
        "server_core_runs_per_s": 1000 / server,
        "machine_runs_per_s": (os.cpu_count() or 1) * 1000 / (server + client),
    }


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def main(args: argparse.Namespace) -> None:
    scratch = SCRATCH.expanduser()
    peers = e2e_peers.versions(scratch) if args.peers else {}
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        workflow = {**chain(3), "id": "e2e3"}
        server = stack.enter_context(e2e_peers.graphpush(workflow))
        spec = {"kind": "graphpush", **server}
        servers = {
            "graphpush-ws": {**spec, "transport": "ws"},
            "graphpush-sse": {**spec, "transport": "sse"},
        }
        if args.baseline:  # another checkout of graphpush, side by side (paired rounds)
            baseline = {"PYTHONPATH": str(Path(args.baseline).resolve())}
            other = stack.enter_context(e2e_peers.graphpush(workflow, env=baseline))
            servers["baseline-ws"] = {"kind": "graphpush", **other, "transport": "ws"}
        if args.peers:
            servers["n8n"] = {"kind": "n8n", **stack.enter_context(e2e_peers.n8n(scratch))}
            lg = stack.enter_context(e2e_peers.langgraph(scratch))
            servers["langgraph"] = {"kind": "langgraph", **lg}
            peers = e2e_peers.versions(scratch)
        bench = Bench(servers, args)
        stack.callback(bench.close)
        for clients in args.clients:
            rounds = bench.case(clients)
            for target, found in rounds.items():
                result: dict[str, Any] = {k: summary([r[k] for r in found]) for k in METRICS}
                result["runs"] = sum(r["runs"] for r in found)
                if target != "graphpush-ws":
                    result["graphpush_ws_ratio"] = ratios(rounds["graphpush-ws"], found)
                results[target, clients] = result
                case = f"{target}-x{clients}"
                report("e2e", case, clients=clients, peers=peers, load=os.getloadavg(), **result)
    header = ["clients", "server", "runs/s", "POST→first p50 / p99 ms"]
    header += ["POST→finished p50 / p99 ms", "server CPU ms/run", "clients' CPU ms/run"]
    header += ["graphpush WS ÷ this, runs/s"]
    header += ["this ÷ graphpush WS, finished p50", "this ÷ graphpush WS, server CPU", "rounds"]
    rows = [row(c, t, r) for (t, c), r in results.items()]
    note(table(rows, header))
    note("\n".join(goals(results)))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", action="store_true", help="also n8n and langgraph dev")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--scale", type=float, default=1.0, help="round lengths times this")
    parser.add_argument(
        "--baseline", metavar="CHECKOUT", help="also a graphpush served from this source tree"
    )
    parser.add_argument("--quick", action="store_true", help="graphpush only, well under 1 min")
    args = parser.parse_args(argv)
    if args.quick:
        args.peers, args.baseline, args.rounds, args.clients = False, None, 1, [1, 8]
    return args


if __name__ == "__main__":
    main(parse())
