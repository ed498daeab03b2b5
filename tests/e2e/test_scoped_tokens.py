"""Scoped browser tokens (SPEC §11) on every surface, against a real uvicorn: minting, REST,
push over WebSocket and SSE, and the execution stream. Expired or forged: 401 (WebSocket
1008); out of scope: 403 (WebSocket 1008)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.main import create_app
from app.settings import load_settings
from support.engine import chain, node
from support.push import decode, serving, sse_events

pytestmark = pytest.mark.timeout(60)

SECRET = "a-test-token-secret-of-32-bytes!"
QUICK = chain(node("Start"), node("Set", "set", values={"x": 1}), name="quick")
SLOW = chain(node("Start"), node("Sleep", "delay", ms=60_000), name="slow")
HOLD = chain(node("Start"), node("Hold", "wait"), name="hold")


class Site(msgspec.Struct):
    """A served app with two API keys, and helpers to call it as a key or a token."""

    host: str
    http: httpx.AsyncClient

    async def call(self, method: str, path: str, auth: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {auth}"}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def workflow(self, body: dict[str, Any], key: str = "k1") -> str:
        response = await self.call("POST", "/agents/workflows", key, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def run(self, workflow_id: str, key: str = "k1", **body: Any) -> str:
        response = await self.call("POST", f"/agents/workflows/{workflow_id}/run", key, json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["execution_id"])

    async def status(self, execution_id: str, *statuses: str, key: str = "k1") -> None:
        async with asyncio.timeout(10):
            while True:
                body = (await self.call("GET", f"/agents/executions/{execution_id}", key)).json()
                if body["status"] in statuses:
                    return
                await asyncio.sleep(0.02)

    async def token(self, key: str = "k1", **body: Any) -> str:
        response = await self.call("POST", "/agents/tokens", key, json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = load_settings(
        {
            "data_dir": tmp_path,
            "load_examples": False,
            "api_keys": ("k1", "k2"),
            "token_secret": SECRET,
            "workers": 2,
        },
        environ={},
    )
    async with (
        serving(create_app(settings), settings) as host,
        httpx.AsyncClient(base_url=f"http://{host}", timeout=10) as http,
    ):
        yield Site(host, http)


def expired_token(owner_key: str = "k1") -> str:
    from app.http.auth import owner_of

    now = int(time.time())
    claims = {"iss": "graphpush", "sub": owner_of(owner_key), "iat": now - 100, "exp": now - 10}
    return jwt.encode({**claims, "scopes": ["read"]}, SECRET, algorithm="HS256")


def forged_token(owner_key: str = "k1") -> str:
    from app.http.auth import owner_of

    now = int(time.time())
    claims = {"iss": "graphpush", "sub": owner_of(owner_key), "iat": now, "exp": now + 600}
    return jwt.encode({**claims, "scopes": ["read"]}, "not-the-secret" * 3, algorithm="HS256")


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# ---- minting --------------------------------------------------------------------------------


async def test_minting_needs_an_api_key_and_answers_a_token_with_its_expiry(site: Site) -> None:
    anonymous = await site.http.post("/agents/tokens", json={"scopes": ["read"]})
    assert anonymous.status_code == 401
    minted = await site.call("POST", "/agents/tokens", "k1", json={"scopes": ["read"], "ttl_s": 60})
    assert minted.status_code == 201, minted.text
    body = minted.json()
    assert set(body) == {"token", "expires_at"}
    assert body["expires_at"].endswith("Z")
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], issuer="graphpush")
    assert claims["exp"] - claims["iat"] == 60
    # a token cannot mint another (it would outlive and outreach itself)
    again = await site.call("POST", "/agents/tokens", body["token"], json={"scopes": ["read"]})
    assert again.status_code == 403


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"scopes": ["read"], "ttl_s": 3601}, "ttl_s"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["write"]}, "scopes[0]"),
        ({}, "scopes"),
        ({"scopes": ["read"], "execution_ids": ["a b"]}, "execution_ids[0]"),
        ({"scopes": ["read"], "workflow_id": 7}, "workflow_id"),
    ],
)
async def test_a_bad_token_request_is_422_naming_the_field(
    site: Site, body: dict[str, Any], path: str
) -> None:
    response = await site.call("POST", "/agents/tokens", "k1", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert path in [p["path"] for p in error["details"]]


# ---- REST ------------------------------------------------------------------------------------


async def test_a_token_reads_only_its_executions_and_does_only_its_actions(site: Site) -> None:
    workflow_id = await site.workflow(QUICK)
    mine, other = await site.run(workflow_id), await site.run(workflow_id)
    await site.status(mine, "success")
    token = await site.token(execution_ids=[mine], scopes=["read"])

    assert (await site.call("GET", f"/agents/executions/{mine}", token)).status_code == 200
    events = await site.call("GET", f"/agents/executions/{mine}/events", token)
    assert events.status_code == 200 and events.json()["items"]
    webhooks = await site.call("GET", f"/agents/executions/{mine}/webhooks", token)
    assert webhooks.json() == {"items": []}
    for method, path in [
        ("GET", f"/agents/executions/{other}"),
        ("GET", f"/agents/executions/{other}/webhooks"),
        ("GET", f"/agents/executions/{other}/events"),
        ("POST", f"/agents/executions/{mine}/cancel"),
        ("POST", f"/agents/executions/{mine}/resume"),
        ("POST", f"/agents/workflows/{workflow_id}/run"),
        ("POST", "/agents/workflows"),
        ("DELETE", f"/agents/workflows/{workflow_id}"),
        ("GET", "/agents/executions"),
    ]:
        response = await site.call(method, path, token, json={})
        assert (response.status_code, error_code(response)) == (403, "forbidden"), (method, path)


async def test_a_workflow_token_sees_that_workflows_runs_of_its_own_key_only(site: Site) -> None:
    workflow_id, elsewhere = await site.workflow(QUICK), await site.workflow(QUICK)
    mine, foreign = await site.run(workflow_id), await site.run(workflow_id, key="k2")
    outside = await site.run(elsewhere)
    token = await site.token(workflow_id=workflow_id, scopes=["read"])

    assert (await site.call("GET", f"/agents/executions/{mine}", token)).status_code == 200
    assert (await site.call("GET", f"/agents/executions/{outside}", token)).status_code == 403
    assert (await site.call("GET", f"/agents/executions/{foreign}", token)).status_code == 404
    listed = await site.call("GET", f"/agents/workflows/{workflow_id}/executions", token)
    assert [r["execution_id"] for r in listed.json()["items"]] == [mine]
    everywhere = await site.call("GET", "/agents/executions", token)
    assert [r["execution_id"] for r in everywhere.json()["items"]] == [mine]
    assert (await site.call("GET", f"/agents/workflows/{workflow_id}", token)).status_code == 200
    assert (await site.call("GET", f"/agents/workflows/{elsewhere}", token)).status_code == 403
    workflows = (await site.call("GET", "/agents/workflows", token)).json()["items"]
    assert [w["id"] for w in workflows] == [workflow_id]
    other_list = await site.call("GET", f"/agents/workflows/{elsewhere}/executions", token)
    assert other_list.status_code == 403


async def test_cancel_and_resume_scopes_allow_those_actions(site: Site) -> None:
    slow, hold = await site.workflow(SLOW), await site.workflow(HOLD)
    running, waiting = await site.run(slow), await site.run(hold)
    await site.status(running, "running")
    await site.status(waiting, "waiting")
    token = await site.token(execution_ids=[running, waiting], scopes=["read", "cancel", "resume"])
    cancel = await site.call("POST", f"/agents/executions/{running}/cancel", token)
    assert cancel.status_code == 202, cancel.text
    resume = await site.call("POST", f"/agents/executions/{waiting}/resume", token, json={})
    assert resume.status_code == 202, resume.text
    await site.status(running, "canceled")
    await site.status(waiting, "success")


@pytest.mark.parametrize("kind", ["expired", "forged", "garbled"])
async def test_an_expired_or_forged_token_is_401_on_rest(site: Site, kind: str) -> None:
    token = {"expired": expired_token(), "forged": forged_token(), "garbled": "eyJ.x.y"}[kind]
    response = await site.call("GET", "/agents/executions", token)
    assert (response.status_code, error_code(response)) == (401, "token_rejected")


# ---- push: WebSocket, SSE, and the execution stream ------------------------------------------


async def ws_refusal(site: Site, query: str) -> int:
    """The close code of a push WebSocket refused at its handshake."""
    async with connect(f"ws://{site.host}/agents/push?pushRef=tok1&{query}") as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code is not None
        return ws.close_code


async def test_a_push_websocket_with_a_token_gets_only_its_runs(site: Site) -> None:
    workflow_id = await site.workflow(QUICK)
    token = await site.token(workflow_id=workflow_id, scopes=["read"])
    elsewhere = await site.workflow(QUICK)
    async with connect(f"ws://{site.host}/agents/push?pushRef=tok1&token={token}") as ws:
        outside = await site.run(elsewhere, push_ref="tok1")
        await site.status(outside, "success")
        inside = await site.run(workflow_id, push_ref="tok1")
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(10):
            while not seen or seen[-1]["type"] != "executionFinished":
                seen.append(decode(await ws.recv()))
        assert {m["data"]["executionId"] for m in seen} == {inside}
        # subscribing to a run out of scope is refused; one in scope is acknowledged
        for execution_id, reply in [(outside, "error"), (inside, "ack")]:
            command = {"type": "subscribe_execution", "data": {"executionId": execution_id}}
            await ws.send(msgspec.json.encode(command).decode())
            answer = decode(await asyncio.wait_for(ws.recv(), 5))
            assert answer["type"] == reply, answer
        cancel = {"type": "cancel_execution", "data": {"executionId": inside}}
        await ws.send(msgspec.json.encode(cancel).decode())
        answer = decode(await asyncio.wait_for(ws.recv(), 5))
        assert (answer["type"], answer["data"]["code"]) == ("error", "forbidden")


async def test_a_push_websocket_refuses_bad_tokens_with_1008(site: Site) -> None:
    cancel_only = await site.token(scopes=["cancel"])
    assert await ws_refusal(site, f"token={expired_token()}") == 1008
    assert await ws_refusal(site, f"token={forged_token()}") == 1008
    assert await ws_refusal(site, f"token={cancel_only}") == 1008
    assert await ws_refusal(site, "token=not-a-key") == 4401  # an API key that is not one


async def test_push_sse_and_the_execution_stream_take_tokens(site: Site) -> None:
    workflow_id = await site.workflow(QUICK)
    mine, other = await site.run(workflow_id), await site.run(workflow_id)
    await site.status(mine, "success")
    await site.status(other, "success")
    token = await site.token(execution_ids=[mine], scopes=["read"])
    sse = {"Accept": "text/event-stream"}

    stream = await site.http.get(f"/agents/executions/{mine}/stream?token={token}")
    assert stream.status_code == 200
    assert '"executionFinished"' in stream.text
    for path, status in [
        (f"/agents/executions/{other}/stream?token={token}", 403),
        (f"/agents/executions/{mine}/stream?token={expired_token()}", 401),
        (f"/agents/executions/{mine}/stream?token={forged_token()}", 401),
        (f"/agents/push?pushRef=tok2&token={expired_token()}", 401),
        (f"/agents/push?pushRef=tok2&token={await site.token(scopes=['cancel'])}", 403),
    ]:
        assert (await site.http.get(path, headers=sse)).status_code == status, path

    push = f"/agents/push?pushRef=tok2&token={token}"
    async with site.http.stream("GET", push, headers=sse) as r:
        assert r.status_code == 200
        events = sse_events(r)
        assert (await anext(events)).comment == "ok"
