"""Scale-out deployments for end-to-end tests: ``graphpush serve --workers 0`` API instances
and ``graphpush worker`` processes on loopback, sharing a fresh PostgreSQL schema and a Redis
key prefix of their own (docs/deploy.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import redis

from support.app import free_port, healthy
from support.scaleout import REDIS_URL, fresh_prefix, fresh_schema
from support.wait import eventually_blocking

ROOT = Path(__file__).resolve().parents[2]


class Cluster:
    """Subprocesses of ``graphpush serve --workers 0`` and ``graphpush worker``."""

    def __init__(
        self,
        folder: Path,
        *,
        redis_url: str = REDIS_URL,
        database_url: str | None = None,
        claim_idle_s: float = 1.5,
    ) -> None:
        self.folder = folder
        self.prefix = fresh_prefix()
        self.env = {
            **os.environ,
            "GRAPHPUSH_DATABASE_URL": database_url or fresh_schema(),
            "GRAPHPUSH_REDIS_URL": redis_url,
            "GRAPHPUSH_REDIS_PREFIX": self.prefix,
            "GRAPHPUSH_CLAIM_IDLE_S": str(claim_idle_s),
            "GRAPHPUSH_LOAD_EXAMPLES": "false",
            "GRAPHPUSH_SHUTDOWN_TIMEOUT_S": "2",
            "GRAPHPUSH_DATA_DIR": str(folder),
        }
        self.redis = redis.Redis.from_url(redis_url)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        self.workers: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", *args], cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
        self.processes.append(process)
        return process

    def start_api(self, *, redis_url: str | None = None) -> None:
        """An API instance; ``redis_url``: its own way to the cluster's Redis (a proxy)."""
        port = free_port()
        options = ["--redis-url", redis_url] if redis_url else []
        self._spawn(f"api-{port}", "serve", "--port", str(port), "--workers", "0", *options)
        self.urls.append(f"http://127.0.0.1:{port}")

    def start_worker(self, workers: int = 2) -> subprocess.Popen[bytes]:
        worker = self._spawn(f"worker-{len(self.workers)}", "worker", "--workers", str(workers))
        self.workers.append(worker)
        return worker

    def wait_ready(self, timeout_s: float = 45) -> None:
        """Every API answers /healthz and every worker not killed says it is ready."""
        eventually_blocking(self._ready, within=timeout_s, what=self._logs)

    def _logs(self) -> str:
        logs = {p.name: p.read_text()[-2000:] for p in self.folder.glob("*.log")}
        return f"the cluster did not start: {logs}"

    def _ready(self) -> bool:
        apis_up = all(healthy(url) for url in self.urls)
        return apis_up and all(self._worker_ready(i) for i in range(len(self.workers)))

    def _worker_ready(self, index: int) -> bool:
        if self.workers[index].returncode is not None:
            return True  # killed by a test
        return "worker ready" in (self.folder / f"worker-{index}.log").read_text()

    def holder(self, execution_id: str) -> subprocess.Popen[bytes]:
        """The worker process holding ``execution_id`` (its consumer name has its pid)."""
        stream = f"{self.prefix}:runs"
        pending: Any = self.redis.xpending_range(stream, "workers", "-", "+", 100)
        for entry in pending:
            [(_, fields)] = self.redis.xrange(stream, entry["message_id"], entry["message_id"])
            if msgspec.json.decode(fields[b"record"])["id"] == execution_id:
                pid = int(entry["consumer"].decode().split("-")[-2])
                return next(w for w in self.workers if w.pid == pid)
        raise AssertionError(f"no worker holds {execution_id}")

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL for whatever is still up after 10 s."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.redis.close()
