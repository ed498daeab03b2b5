"""Shared fixtures: settings on a temp dir, the real app in-process, and a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.main import Setup, create_app
from app.settings import Settings, load_settings
from support.app import Server, running_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"data_dir": tmp_path, "load_examples": False}, environ={})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as (_, client):
        yield client


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[..., Server]]:
    """Start real uvicorn servers of the app; all are stopped at the end of the test."""
    servers: list[Server] = []

    def start(app_settings: Settings | None = None, setup: Setup | None = None) -> Server:
        app_settings = app_settings or settings
        server = Server(create_app(app_settings, setup), app_settings).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__()
