"""The app under test: in-process with its lifespan, on real uvicorn in a thread, or as a
``python -m app serve`` subprocess; and the REST calls every tier makes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from app.main import Setup, create_app
from app.settings import Settings
from support.wait import eventually, eventually_blocking
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
    return _created_id(await client.post("/agents/workflows", json=workflow))


async def run(client: httpx.AsyncClient, workflow_id: str, **body: Any) -> str:
    return _queued_id(await client.post(f"/agents/workflows/{workflow_id}/run", json=body))


async def wait_for_status(
    client: httpx.AsyncClient, execution_id: str, *statuses: str, within: float = 10
) -> dict[str, Any]:
    """Poll ``GET /agents/executions/{id}`` until its status is one of ``statuses``."""

    async def execution() -> dict[str, Any]:
        body: dict[str, Any] = (await client.get(f"/agents/executions/{execution_id}")).json()
        return body

    return await eventually(
        execution, until=_status_in(statuses), within=within, what=f"{execution_id} {statuses}"
    )


async def logged_messages(client: httpx.AsyncClient, execution_id: str) -> list[dict[str, Any]]:
    """The execution's stored event log, each message decoded, with its ``seq``."""
    response = await client.get(f"/agents/executions/{execution_id}/events")
    assert response.status_code == 200, response.text
    return log_messages(response.json())


def log_messages(page: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of a ``GET /agents/executions/{id}/events`` body, each with its ``seq``."""
    return [{**item["message"], "seq": item["seq"]} for item in page["items"]]


def _created_id(response: httpx.Response) -> str:
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _queued_id(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    return str(response.json()["execution_id"])


def _status_in(statuses: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    return lambda execution: execution["status"] in statuses


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
        eventually_blocking(self._started, within=10, what="uvicorn started")
        return self

    def _started(self) -> bool:
        assert self.thread.is_alive(), "uvicorn exited"
        return self.server.started

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def create_workflow(self, workflow: dict[str, Any]) -> str:
        """``POST /agents/workflows`` from this thread (no event loop needed); the new id."""
        return _created_id(httpx.post(f"{self.url}/agents/workflows", json=workflow, timeout=10))

    def run(self, workflow_id: str, **body: Any) -> str:
        """``POST /agents/workflows/{id}/run`` from this thread; the queued execution's id."""
        url = f"{self.url}/agents/workflows/{workflow_id}/run"
        return _queued_id(httpx.post(url, json=body, timeout=10))

    def wait_for_status(
        self, execution_id: str, *statuses: str, within: float = 10
    ) -> dict[str, Any]:
        """Block until the execution's status is one of ``statuses``; its body."""
        url = f"{self.url}/agents/executions/{execution_id}"
        return eventually_blocking(
            lambda: dict(httpx.get(url, timeout=10).json()),
            until=_status_in(statuses),
            within=within,
            what=f"{execution_id} {statuses}",
        )


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without its ``GRAPHPUSH_*`` settings, plus ``extra``: what
    a server or client started by a test sees."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHPUSH_")}
    return {**env, **extra}


def healthy(url: str) -> bool:
    """Whether a graphpush server answers ``GET {url}/healthz`` with 200."""
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_healthy(
    url: str, process: subprocess.Popen[Any], log: Path, within: float = 20
) -> None:
    """Block until the server ``process`` started answers at ``url``; fail, with the end of
    its ``log``, if it exits first or does not answer in time."""

    def tail() -> str:
        return f"the server at {url}, its log ending: {log.read_text()[-3000:]}"

    def up() -> bool:
        assert process.poll() is None, f"exited: {tail()}"
        return healthy(url)

    eventually_blocking(up, within=within, what=tail)
