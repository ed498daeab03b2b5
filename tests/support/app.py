"""The app under test: in-process with its lifespan, or on real uvicorn; and the REST calls
every tier makes."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from app.main import Setup, create_app
from app.settings import Settings
from support.asyncapi import check_message
from transports.websocket import uvicorn_options


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings, setup: Setup | None = None
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The real app with its lifespan running, and an httpx client wired to it in-process."""
    app = create_app(settings, setup)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def create_workflow(client: httpx.AsyncClient, workflow: dict[str, Any]) -> str:
    response = await client.post("/agents/workflows", json=workflow)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def run(client: httpx.AsyncClient, workflow_id: str, **body: Any) -> str:
    response = await client.post(f"/agents/workflows/{workflow_id}/run", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


async def wait_for_status(
    client: httpx.AsyncClient, execution_id: str, *statuses: str, within: float = 10
) -> dict[str, Any]:
    """Poll ``GET /agents/executions/{id}`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + within
    while True:
        body: dict[str, Any] = (await client.get(f"/agents/executions/{execution_id}")).json()
        if body["status"] in statuses:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{execution_id} stayed {body['status']}, wanted {statuses}")
        await asyncio.sleep(0.01)


async def logged_messages(client: httpx.AsyncClient, execution_id: str) -> list[dict[str, Any]]:
    """The execution's stored event log, each message decoded, with its ``seq``."""
    response = await client.get(f"/agents/executions/{execution_id}/events")
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    return [{**check_message(item["message"]), "seq": item["seq"]} for item in items]


def linear(*names: str, **params: Any) -> dict[str, Any]:
    """A trigger followed by ``set`` nodes named ``names``, one after the other."""
    nodes = [{"name": "Start", "type": "trigger"}]
    nodes += [{"name": n, "type": "set", "parameters": {"values": {n: 1}}} for n in names]
    chain = [n["name"] for n in nodes]
    connections = {
        a: {"main": [[{"node": b, "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(chain)
    }
    return {"name": "linear", "nodes": nodes, "connections": connections, **params}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real uvicorn serving the app on a free loopback port, in a thread."""

    def __init__(self, app: Starlette, settings: Settings) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
            **uvicorn_options(settings),
        )
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def sse_messages(text: str) -> list[dict[str, Any]]:
    """Decode the ``data:`` payloads of an SSE body (comments and ids ignored)."""
    lines = text.splitlines()
    return [check_message(json.loads(line[5:])) for line in lines if line.startswith("data:")]
