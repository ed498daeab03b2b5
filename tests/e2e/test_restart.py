"""Runs survive the process (SPEC §6): queued runs run after a restart, waiting runs resume
from their SQLite checkpoint, and a run whose process died is marked ``crashed`` and can be
retried from the node it died in (SPEC §9)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from app.settings import Settings
from support.app import (
    clean_env,
    create_workflow,
    free_port,
    log_messages,
    logged_messages,
    run,
    running_app,
    wait_for_status,
    wait_until_healthy,
)
from support.engine import chain, kinds, node, node_triples
from support.wait import eventually_blocking

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SIMPLE = chain(node("Start"), node("Set", "set", values={"x": 1}), name="simple")
WAITING = chain(node("Start"), node("Hold", "wait"), node("Done", "set", values={"done": 1}))
SLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), node("After", "set", values={}))


async def test_queued_runs_run_after_a_restart(settings: Settings) -> None:
    async with running_app(msgspec.structs.replace(settings, workers=0)) as (_, client):
        workflow_id = await create_workflow(client, SIMPLE)
        queued = [await run(client, workflow_id, input={"n": n}) for n in range(3)]
        for execution_id in queued:
            assert (await client.get(f"/agents/executions/{execution_id}")).json()[
                "status"
            ] == "new"

    async with running_app(settings) as (_, client):
        for n, execution_id in enumerate(queued):
            body = await wait_for_status(client, execution_id, "success", "error")
            assert body["status"] == "success"
            assert body["input"] == {"n": n}
            messages = await logged_messages(client, execution_id)
            assert kinds(messages) == [
                ("executionStarted", None),
                *node_triples("Start", "Set"),
                ("executionFinished", None),
            ]
        # oldest first: each queued run started before the next one
        started = [
            (await client.get(f"/agents/executions/{i}")).json()["started_at"] for i in queued
        ]
        assert started == sorted(started)


async def test_a_waiting_run_resumes_after_a_restart(settings: Settings) -> None:
    async with running_app(settings) as (_, client):
        execution_id = await run(client, await create_workflow(client, WAITING))
        await wait_for_status(client, execution_id, "waiting")

    async with running_app(settings) as (_, client):
        assert (await client.get(f"/agents/executions/{execution_id}")).json()["status"] == (
            "waiting"
        )
        response = await client.post(
            f"/agents/executions/{execution_id}/resume", json={"value": {"ok": True}}
        )
        assert response.status_code == 202, response.text
        body = await wait_for_status(client, execution_id, "success", "error")
        messages = await logged_messages(client, execution_id)

    assert body["status"] == "success", body["error"]
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start", "Hold"),
        ("executionWaiting", None),
        *node_triples("Done"),
        ("executionFinished", None),
    ]
    assert messages[-2]["data"]["data"]["data"]["main"][0][0]["json"] == {"ok": True, "done": 1}
    assert [m["data"]["sequenceNumber"] for m in messages if "sequenceNumber" in m["data"]] == (
        list(range(6))
    )


# ---- a process that really dies ----------------------------------------------------------


class Process:
    """``python -m app serve`` on a free port, its output in a file."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = clean_env(GRAPHPUSH_LOAD_EXAMPLES="false")
        command = [sys.executable, "-m", "app", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(data_dir), "--log-level", "warning"]
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=self.url, timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.client.close()
        self._log.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop(signal.SIGKILL)


def start(processes: list[Process], data_dir: Path, log: Path) -> Process:
    process = Process(data_dir, log)
    processes.append(process)
    wait_until_healthy(process.url, process.popen, log)
    return process


def test_a_run_whose_process_was_killed_is_crashed_at_the_next_start(
    tmp_path: Path, processes: list[Process]
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    first = start(processes, data_dir, log)
    workflow_id = first.client.post("/agents/workflows", json=SLOW).json()["id"]
    execution_id = first.client.post(f"/agents/workflows/{workflow_id}/run", json={}).json()[
        "execution_id"
    ]
    events = f"/agents/executions/{execution_id}/events"
    eventually_blocking(
        lambda: kinds(log_messages(first.client.get(events).json())),
        until=lambda logged: ("nodeExecuteBefore", "Sleep") in logged,
        within=10,
        what=lambda: f"Sleep started; the server log: {log.read_text()}",
    )
    assert first.client.get(f"/agents/executions/{execution_id}").json()["status"] == "running"

    first.stop(signal.SIGKILL)
    second = start(processes, data_dir, log)

    body = second.client.get(f"/agents/executions/{execution_id}").json()
    messages = log_messages(second.client.get(events).json())
    assert body["status"] == "crashed", body
    assert body["stopped_at"] is not None
    assert body["error"] is not None and body["error"]["node"] is None
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Start"),
        ("nodeExecuteBefore", "Sleep"),
        ("executionFinished", None),
    ]
    assert messages[-1]["type"] == "executionFinished"
    assert messages[-1]["data"]["status"] == "crashed"
    final = messages[-1]["data"]["graph_state"]
    assert final["completed_nodes"] == ["Start"] and final["running_nodes"] == []
    assert final["nodes"]["Sleep"]["status"] == "canceled"
    assert body["graph_state"] == final
    assert [m["type"] for m in messages].count("executionFinished") == 1
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    # the restarted server still runs new work
    again = second.client.post(f"/agents/workflows/{workflow_id}/run", json={}).json()
    assert second.client.post(f"/agents/executions/{again['execution_id']}/cancel").status_code == (
        202
    )
    second.stop()
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully
    assert second.popen.returncode in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_crashed_run_is_retried_after_a_restart_from_the_node_it_died_in(
    tmp_path: Path, processes: list[Process]
) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    first = start(processes, data_dir, log)
    workflow_id = first.client.post("/agents/workflows", json=SLOW).json()["id"]
    execution_id = first.client.post(
        f"/agents/workflows/{workflow_id}/run", json={"input": {"n": 1}}
    ).json()["execution_id"]
    eventually_blocking(
        lambda: kinds(
            log_messages(first.client.get(f"/agents/executions/{execution_id}/events").json())
        ),
        until=lambda logged: ("nodeExecuteBefore", "Sleep") in logged,
        within=10,
        what=lambda: f"Sleep started; the server log: {log.read_text()}",
    )
    first.stop(signal.SIGKILL)
    second = start(processes, data_dir, log)
    shorter = chain(node("Start"), node("Sleep", "delay", ms=5), node("After", "set", values={}))
    assert second.client.put(f"/agents/workflows/{workflow_id}", json=shorter).status_code == 200

    answer = second.client.post(
        f"/agents/executions/{execution_id}/retry", json={"workflow": "saved"}
    )

    assert answer.status_code == 202, answer.text
    retry_id = answer.json()["execution_id"]
    body = eventually_blocking(
        lambda: second.client.get(f"/agents/executions/{retry_id}").json(),
        until=lambda dto: dto["status"] not in ("new", "running"),
        within=10,
        what="the retry finished",
    )
    messages = log_messages(second.client.get(f"/agents/executions/{retry_id}/events").json())
    assert body["status"] == "success" and body["retry_of"] == execution_id
    assert body["input"] == {"n": 1}
    assert kinds(messages) == [
        ("executionStarted", None),
        *node_triples("Sleep", "After"),
        ("executionFinished", None),
    ]
    assert messages[0]["data"]["retryOf"] == execution_id
    assert messages[0]["data"]["graph_state"]["completed_nodes"] == ["Start"]
    assert messages[-2]["data"]["data"]["data"]["main"][0][0]["json"] == {"n": 1}
    listed = second.client.get(f"/agents/executions?retry_of={execution_id}").json()
    assert [item["execution_id"] for item in listed["items"]] == [retry_id]
