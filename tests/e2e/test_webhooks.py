"""Completion webhooks (SPEC §11) delivered to a real HTTP receiver: signed per Standard
Webhooks (checked with the package's own verifier), retried on the schedule, listed with
their attempts, guarded against server-side request forgery, and not lost to a SIGKILL
between the run's final commit and the delivery."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from standardwebhooks import Webhook

from app.settings import Settings
from app.storage.sqlite import SqliteStore
from app.webhooks.guard import Refused, resolve
from support.app import (
    clean_env,
    create_workflow,
    free_port,
    run,
    running_app,
    wait_for_status,
    wait_until_healthy,
)
from support.engine import chain, node
from support.wait import eventually, eventually_blocking
from support.webhooks import SECRET, Receiver

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
QUICK = chain(node("Start"), node("Set", "set", values={"x": 1}), name="quick")
HOLD = chain(node("Start"), node("Hold", "wait"), node("Done", "set", values={}), name="hold")
FAILING = chain(node("Start"), node("Boom", "fail", message="no"), name="failing")


def hooked(workflow: dict[str, Any], url: str) -> dict[str, Any]:
    return {**workflow, "settings": {"webhook_url": url}}


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings,
        webhook_secret=SECRET,
        webhook_allow_private=True,  # the receiver is on loopback
        webhook_retry_schedule_s=(0.1, 0.1, 0.1),
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([200]).running() as started:
        yield started


async def webhooks_of(client: httpx.AsyncClient, execution_id: str, *statuses: str) -> Any:
    """The run's deliveries once every one has one of ``statuses``."""

    async def listed() -> Any:
        response = await client.get(f"/agents/executions/{execution_id}/webhooks")
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def settled(items: Any) -> bool:
        return bool(items) and all(item["status"] in statuses for item in items)

    return await eventually(listed, until=settled, within=15, what=f"{execution_id} webhooks")


async def test_a_finished_run_posts_a_signed_webhook(
    hook_settings: Settings, receiver: Receiver
) -> None:
    async with running_app(hook_settings) as (_, client):
        workflow_id = await create_workflow(client, hooked(QUICK, receiver.url))
        execution_id = await run(client, workflow_id)
        (item,) = await webhooks_of(client, execution_id, "delivered")

    (received,) = receiver.received
    body = Webhook(SECRET).verify(received.body, received.headers)
    assert received.headers["webhook-id"] == item["id"]
    assert body["type"] == "execution.finished"
    assert body["timestamp"].endswith("Z")
    assert body["data"]["execution_id"] == execution_id
    assert body["data"]["status"] == "success"
    assert "graph_state" not in body["data"]
    assert item["event"] == "execution.finished" and item["url"] == receiver.url
    assert [set(a) for a in item["attempts"]] == [{"at", "status_code"}]
    assert item["attempts"][0]["status_code"] == 200
    assert "next_attempt_at" not in item
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").verify(
            received.body, received.headers
        )


async def test_a_waiting_run_and_its_end_each_post_and_the_runs_url_wins(
    hook_settings: Settings, receiver: Receiver
) -> None:
    async with running_app(hook_settings) as (_, client):
        workflow_id = await create_workflow(client, hooked(HOLD, "http://127.0.0.1:9/unused"))
        execution_id = await run(client, workflow_id, webhook=receiver.url)
        await wait_for_status(client, execution_id, "waiting")
        await webhooks_of(client, execution_id, "delivered")
        await client.post(f"/agents/executions/{execution_id}/resume", json={"value": 1})
        items = await eventually(
            lambda: webhooks_of(client, execution_id, "delivered"), until=lambda i: len(i) == 2
        )
    assert [i["event"] for i in items] == ["execution.waiting", "execution.finished"]
    bodies = [r.json() for r in receiver.received]
    assert [(b["type"], b["data"]["status"]) for b in bodies] == [
        ("execution.waiting", "waiting"),
        ("execution.finished", "success"),
    ]


async def test_a_receiver_failing_twice_gets_it_on_the_third_try(
    hook_settings: Settings,
) -> None:
    with Receiver([500, 503, 200]).running() as receiver:
        async with running_app(hook_settings) as (_, client):
            workflow_id = await create_workflow(client, hooked(FAILING, receiver.url))
            execution_id = await run(client, workflow_id)
            (item,) = await webhooks_of(client, execution_id, "delivered")
    assert [a["status_code"] for a in item["attempts"]] == [500, 503, 200]
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert [r.json()["data"]["status"] for r in receiver.received] == ["error"] * 3


async def test_a_delivery_fails_once_the_schedule_is_spent(hook_settings: Settings) -> None:
    with Receiver([500]).running() as receiver:
        async with running_app(hook_settings) as (_, client):
            workflow_id = await create_workflow(client, hooked(QUICK, receiver.url))
            execution_id = await run(client, workflow_id)
            (item,) = await webhooks_of(client, execution_id, "failed")
    assert [a["status_code"] for a in item["attempts"]] == [500] * 4  # 1 + 3 retries


async def test_a_final_write_retried_on_a_full_store_keeps_its_webhook(
    hook_settings: Settings, receiver: Receiver
) -> None:
    """The outbox row is retried with the status it reports: once space returns, both are
    stored and the webhook goes out, once."""
    napping = chain(node("Start"), node("Nap", "delay", ms=400), name="napping")
    async with running_app(hook_settings) as (app, client):
        store = app.state.runtime.store
        assert isinstance(store, SqliteStore)
        workflow_id = await create_workflow(client, hooked(napping, receiver.url))
        execution_id = await run(client, workflow_id, input={"pad": "x" * 10_000})
        await wait_for_status(client, execution_id, "running")
        pages = store.db.execute("PRAGMA page_count").fetchone()[0]
        store.db.execute(f"PRAGMA max_page_count={pages}")  # full: the final write fails
        await eventually(
            lambda: app.state.runtime.service.manager.holds(execution_id), until=lambda h: not h
        )
        assert receiver.received == []
        store.db.execute("PRAGMA max_page_count=1073741823")
        (item,) = await webhooks_of(client, execution_id, "delivered")
    (received,) = receiver.received
    assert received.json()["data"]["status"] == "success"
    assert received.headers["webhook-id"] == item["id"]


# ---- the SSRF guard ---------------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.1/hook",
    "http://[::1]:8080/hook",
    "http://[fd00:ec2::254]/",
    "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/",
    "ftp://example.com/hook",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED)
async def test_a_refused_url_is_422_at_save_and_at_run_time(settings: Settings, url: str) -> None:
    async with running_app(settings) as (_, client):
        saved = await client.post("/agents/workflows", json=hooked(QUICK, url))
        assert saved.status_code == 422, saved.text
        assert saved.json()["error"]["code"] == "webhook_url_refused"
        assert saved.json()["error"]["details"][0]["path"] == "settings.webhook_url"
        workflow_id = await create_workflow(client, QUICK)
        ran = await client.post(f"/agents/workflows/{workflow_id}/run", json={"webhook": url})
        assert ran.status_code == 422, ran.text
        assert ran.json()["error"]["details"][0]["path"] == "webhook"


async def test_a_name_resolving_to_loopback_is_not_delivered(
    hook_settings: Settings, receiver: Receiver
) -> None:
    guarded = msgspec.structs.replace(hook_settings, webhook_allow_private=False)
    url = receiver.url.replace("127.0.0.1", "localhost")
    async with running_app(guarded) as (_, client):
        workflow_id = await create_workflow(client, hooked(QUICK, url))  # a name: not checked yet
        execution_id = await run(client, workflow_id)
        (item,) = await webhooks_of(client, execution_id, "failed")
    (attempt,) = item["attempts"]
    assert "refused" in attempt["error"] and "loopback" in attempt["error"]
    assert receiver.received == []


async def test_a_name_is_resolved_once_and_the_checked_address_gets_the_request(
    hook_settings: Settings, receiver: Receiver
) -> None:
    """The request goes to the address that was checked, with the name as ``Host``: a
    second resolution (DNS rebinding) has no say."""
    port = receiver.url.split(":")[2].split("/")[0]
    async with running_app(hook_settings) as (_, client):
        workflow_id = await create_workflow(client, QUICK)
        execution_id = await run(client, workflow_id, webhook=f"http://localhost:{port}/hook")
        await webhooks_of(client, execution_id, "delivered")
    (received,) = receiver.received
    assert received.headers["host"] == f"localhost:{port}"


async def test_the_guard_pins_the_checked_address() -> None:
    target = await resolve("https://localhost:8443/x?y=1", allow_private=True)
    assert {url.host for url in target.urls} <= {"127.0.0.1", "::1"}
    assert {(u.port, u.path, u.query) for u in target.urls} == {(8443, "/x", b"y=1")}
    assert target.headers == {"host": "localhost:8443"}
    assert target.extensions == {"sni_hostname": "localhost"}  # TLS checks the name
    with pytest.raises(Refused, match="loopback"):
        await resolve("https://localhost:8443/x", allow_private=False)


# ---- a process killed between the final commit and the delivery -------------------------------


class Process:
    """``python -m app serve`` on a free port, delivering webhooks to loopback."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        env = clean_env(
            GRAPHPUSH_LOAD_EXAMPLES="false",
            GRAPHPUSH_WEBHOOK_SECRET=SECRET,
            GRAPHPUSH_WEBHOOK_ALLOW_PRIVATE="true",
        )
        command = [sys.executable, "-m", "app", "serve", "--port", self.url.rsplit(":", 1)[1]]
        command += ["--data-dir", str(data_dir), "--log-level", "warning"]
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        wait_until_healthy(self.url, self.popen, log)
        self.client = httpx.Client(base_url=self.url, timeout=5)

    def stop(self, sig: int) -> None:
        self.popen.send_signal(sig)
        self.popen.wait(timeout=15)
        self.client.close()
        self._log.close()


def test_a_delivery_survives_a_sigkill_after_the_runs_final_commit(tmp_path: Path) -> None:
    with Receiver([200]).running() as receiver:
        receiver.hold.set()  # the first attempt hangs: the run is committed, not delivered
        first = Process(tmp_path / "data", tmp_path / "server.log")
        try:
            created = first.client.post("/agents/workflows", json=hooked(QUICK, receiver.url))
            workflow_id = created.json()["id"]
            execution_id = first.client.post(f"/agents/workflows/{workflow_id}/run").json()[
                "execution_id"
            ]
            eventually_blocking(receiver.held.is_set, within=15, what="the first attempt")
        finally:
            first.stop(signal.SIGKILL)
        receiver.release()

        second = Process(tmp_path / "data", tmp_path / "server.log")
        try:
            items = eventually_blocking(
                lambda: second.client.get(f"/agents/executions/{execution_id}/webhooks").json(),
                until=lambda body: body["items"][0]["status"] == "delivered",
                within=15,
                what="delivery after the restart",
            )["items"]
            status = second.client.get(f"/agents/executions/{execution_id}").json()["status"]
        finally:
            second.stop(signal.SIGTERM)
    assert status == "success"
    (received,) = receiver.received
    assert Webhook(SECRET).verify(received.body, received.headers)["data"]["status"] == "success"
    assert received.headers["webhook-id"] == items[0]["id"]
    assert [a["status_code"] for a in items[0]["attempts"]] == [200]
