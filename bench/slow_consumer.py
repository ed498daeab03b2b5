"""Slow consumers: publish→arrival latency (p50/p99) of healthy WebSocket subscribers of
graphpush runs, with and without 10% of the subscribers that stop reading.

    python -m bench.slow_consumer [--rounds 3] [--clients 100] [--runs 30] [--quick]

Method (also in bench/README.md):

- ``clients`` WebSocket connections on ``/agents/push`` subscribe (``subscribe_execution``)
  to ``runs`` runs of a 60-node chain (182 messages, about 0.75 MB per run and subscriber,
  ``graph_state`` included) queued behind a gate run; cancelling the gate releases them,
  and the server's one worker runs them back to back. Server and stamps as in
  :mod:`bench.push` (the publish time of each event, before the push hub routes it).
- Healthy clients (:mod:`bench.push_clients`, 2 processes) read everything; latency =
  arrival - publish over every message of every healthy client.
- "without": all ``clients`` are healthy. "with": 10% of them are stalled instead: in a
  process of their own, each reads its ``ack`` replies, then never reads again (receive
  buffer 4 KiB). With the defaults a stalled subscriber is sent about 22 MB, more
  than the 8 MiB outbound bound plus the kernel's buffers, so the server should cut it off
  (WebSocket close 4008); after the round the stalled clients read what was left for them
  and report whether the server closed them, and the close code if a close frame came
  (after ``CLOSE_GRACE_S`` + 1 s: the server aborts a cut-off client that does not take
  its close frame within that grace).
- Rounds alternate without/with, after a warm-up pair; each number is the median of the
  rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import time
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import psutil

from bench import push_clients, push_servers
from bench.e2e_clients import ws_upgrade
from bench.engine import chain
from bench.harness import note, percentile, report, summary, table
from bench.push import CTX, GATE, Api, Clients, server
from transports.ws_protocol import CLOSE_GRACE_S

NODES = 60
MESSAGES = 1 + 3 * NODES + 1
STALLED_RCVBUF = 4096


def _stalled_open(host: str, path: str) -> socket.socket:
    address, port = host.rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.settimeout(30)
    sock.connect((address, int(port)))
    sock.sendall(ws_upgrade(host, path))
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the head is read here
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:200].decode(errors="replace"))
    return sock


def _read_acks(sock: socket.socket, count: int) -> None:
    """Read exactly ``count`` small reply frames (one per command), then stop reading."""
    for _ in range(count):
        first = sock.recv(2, socket.MSG_WAITALL)
        length = first[1] & 0x7F
        if length >= 126:
            raise RuntimeError("a reply frame longer than expected")
        reply = sock.recv(length, socket.MSG_WAITALL)
        if b'"ack"' not in reply:
            raise RuntimeError(f"not an ack: {reply!r}")


def _drain(sock: socket.socket, timeout_s: float) -> dict[str, Any]:
    """Read what was left for this client: was it closed by the server (its close code, if
    a close frame came; the server may drop a slow consumer's queue, close frame and all)?"""
    sock.settimeout(0.5)
    received, tail, closed = 0, b"", False
    deadline = time.monotonic() + timeout_s
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline:
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:  # nothing more came: the server kept it open
                break
            if not data:
                closed = True
                break
            received += len(data)
            tail = (tail + data)[-256:]
    at = tail.rfind(b"\x88")
    code = int.from_bytes(tail[at + 2 : at + 4]) if closed and 0 <= at <= len(tail) - 4 else None
    return {"bytes": received, "closed": closed, "close_code": code}


def stalled_main(pipe: Connection) -> None:
    """The stalled clients' process: ``open host paths``, ``subscribe ids``, ``drain``."""
    socks: list[socket.socket] = []
    while True:
        command, *args = pipe.recv()
        try:
            if command == "open":
                host, paths = args
                socks = [_stalled_open(host, path) for path in paths]
                reply: Any = len(socks)
            elif command == "subscribe":
                for sock in socks:
                    for execution_id in args[0]:
                        data = {
                            "type": "subscribe_execution",
                            "data": {"executionId": execution_id},
                        }
                        sock.sendall(push_clients.masked_text(msgspec.json.encode(data)))
                for sock in socks:
                    _read_acks(sock, len(args[0]))
                reply = None
            elif command == "drain":
                reply = [_drain(sock, args[0]) for sock in socks]
                for sock in socks:
                    sock.close()
                socks = []
            else:
                pipe.send(("ok", None))
                return
            pipe.send(("ok", reply))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


class Stalled:
    def __init__(self) -> None:
        self.pipe, theirs = CTX.Pipe()
        self.process = CTX.Process(target=stalled_main, args=(theirs,), daemon=True)
        self.process.start()

    def call(self, *command: Any) -> Any:
        self.pipe.send(command)
        status, reply = self.pipe.recv()
        if status != "ok":
            raise RuntimeError(f"stalled clients: {reply}")
        return reply

    def close(self) -> None:
        self.call("quit")
        self.process.join(5)


class Bench:
    """The graphpush server (its host and pid), both kinds of clients, and the workflows."""

    def __init__(self, host: str, pid: int, args: argparse.Namespace) -> None:
        self.host, self.pid, self.args = host, pid, args
        self.api = Api(host)
        self.chain = self.api.create({**chain(NODES), "id": f"chain{NODES}"})
        self.gate = self.api.create(GATE)
        self.clients, self.stalled = Clients(), Stalled()

    def close(self) -> None:
        self.clients.close()
        self.stalled.close()

    def round(self, slow: int) -> dict[str, Any]:
        """One release of ``runs`` runs to ``clients`` subscribers, ``slow`` of them stalled."""
        api, clients, stalled, args = self.api, self.clients, self.stalled, self.args
        tag, healthy = f"{slow}x{time.monotonic_ns() % 10**8}", args.clients - slow
        paths = [f"/agents/push?pushRef=h{tag}x{i}" for i in range(healthy)]
        clients.open("healthy", "ws", self.host, paths)
        if slow:
            stalled.call(
                "open", self.host, [f"/agents/push?pushRef=s{tag}x{i}" for i in range(slow)]
            )
        try:
            gate = api.run(self.gate)
            runs = [api.run(self.chain) for _ in range(args.runs)]
            for execution_id in runs:
                clients.call("subscribe", "healthy", execution_id)
            if slow:
                stalled.call("subscribe", runs)
            expected = MESSAGES * args.runs
            clients.call("expect", "healthy", expected)
            rss = psutil.Process(self.pid).memory_info().rss
            api.cancel(gate)
            times, _ = clients.collect("healthy", args.timeout)
            stamps = sorted(t for execution_id in runs for t in api.stamps(execution_id))
            grown = psutil.Process(self.pid).memory_info().rss - rss
            if slow:  # a cut-off stalled client is closed at most CLOSE_GRACE_S after its cut
                time.sleep(CLOSE_GRACE_S + 1)
            drained = stalled.call("drain", 10.0) if slow else []
        finally:
            clients.call("close", "healthy")
        received = sum(len(t) for t in times)
        if received != expected * healthy or len(stamps) != expected:
            raise RuntimeError(f"{received}/{expected * healthy} messages, {len(stamps)} stamps")
        latencies = [t[k] - stamps[k] for t in times for k in range(expected)]
        return {
            "p50_ms": 1000 * percentile(latencies, 0.5),
            "p99_ms": 1000 * percentile(latencies, 0.99),
            "msgs_per_s": received / (max(t[-1] for t in times) - stamps[0]),
            "rss_growth_mib": grown / 2**20,
            "stalled_closed": sum(d["closed"] for d in drained),
            "stalled_closed_4008": sum(d["close_code"] == 4008 for d in drained),
            "stalled_mib_received": sum(d["bytes"] for d in drained) / 2**20,
        }


def main(args: argparse.Namespace) -> None:
    push_clients.raise_nofile()
    slow = max(1, args.clients // 10)
    results: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    with server(push_servers.graphpush) as (host, process):
        assert process.pid is not None
        bench = Bench(host, process.pid, args)
        try:
            for index in range(args.warmup + args.rounds):
                for case, count in (("without", 0), ("with", slow)):
                    found = bench.round(count)
                    if index >= args.warmup:
                        results[case].append(found)
        finally:
            bench.close()
    pairs = list(zip(results["without"], results["with"], strict=True))
    ratio = {
        "p99": summary([w["p99_ms"] / wo["p99_ms"] for wo, w in pairs]),
        "msgs_per_s": summary([w["msgs_per_s"] / wo["msgs_per_s"] for wo, w in pairs]),
    }
    rows = []
    for case, found in results.items():
        result = {k: summary([r[k] for r in found]) for k in found[0]}
        stalled = slow if case == "with" else 0
        extra = {"ratio_to_without": ratio} if stalled else {}
        report(
            "slow_consumer",
            f"{case}-stalled",
            clients=args.clients,
            stalled=stalled,
            runs=args.runs,
            load=os.getloadavg(),
            **result,
            **extra,
        )
        rows.append(_row(args.clients - stalled, stalled, result, extra.get("ratio_to_without")))
    header = ["subscribers", "healthy p50 / p99 ms", "healthy msgs/s", "p99, msgs/s ÷ without"]
    header += ["server RSS growth MiB", "stalled closed by server (with 4008)"]
    header += ["MiB the stalled got", "rounds"]
    note(table(rows, header))


def _row(
    healthy: int, stalled: int, result: dict[str, Any], ratio: dict[str, Any] | None
) -> list[str]:
    med = {k: v["median"] for k, v in result.items()}
    return [
        f"{healthy} healthy + {stalled} stalled",
        f"{med['p50_ms']:.1f} / {med['p99_ms']:.1f}",
        f"{med['msgs_per_s']:,.0f}",
        f"{ratio['p99']['median']:.2f}, {ratio['msgs_per_s']['median']:.2f}" if ratio else "",
        f"{med['rss_growth_mib']:.1f}",
        f"{med['stalled_closed']:.0f} ({med['stalled_closed_4008']:.0f})" if stalled else "",
        f"{med['stalled_mib_received']:.1f}" if stalled else "",
        str(result["p99_ms"]["rounds"]),
    ]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=1, help="pairs of rounds not counted")
    parser.add_argument("--runs", type=int, default=30, help="runs per round")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per round")
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under 1 min")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.clients, args.runs, args.timeout = 1, 0, 20, 2, 20.0
    return args


if __name__ == "__main__":
    main(parse())
