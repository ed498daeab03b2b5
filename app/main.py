"""The Starlette application and its lifespan, which owns every long-lived resource."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from app.backends import open_backends
from app.errors import GraphpushError
from app.executions.service import ExecutionService
from app.http.api import JSONResponse, api_routes
from app.http.runs_feed import RunsList
from app.http.web import web_routes
from app.push.hub import PushHub
from app.runtime import Runtime
from app.settings import Settings, load_settings
from app.workflows.examples import load_examples
from transports.routes import push_routes

log = logging.getLogger("graphpush")

#: Called with the service before it starts: register graphs and node types here.
Setup = Callable[[ExecutionService], None]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


async def _graphpush_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GraphpushError)
    headers = {"Retry-After": str(exc.retry_after_s)} if hasattr(exc, "retry_after_s") else None
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse(error_body("internal_error", "internal server error"), 500)


def create_app(settings: Settings | None = None, setup: Setup | None = None) -> Starlette:
    """The graphpush ASGI app. ``setup`` runs before the workers start (Python API)."""
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            backends = await open_backends(stack, settings, push=True)
            store, bus = backends.store, backends.bus
            service = await backends.service(settings)
            hub = PushHub(settings=settings, service=service, runs=RunsList(service))
            stack.callback(backends.subscribe_hub(hub))
            # Closed after the engine (callbacks run in reverse): connections get the final
            # messages of runs canceled by the shutdown before they close.
            stack.push_async_callback(hub.aclose)
            if setup is not None:
                setup(service)
            if settings.load_examples:
                await load_examples(service.workflows)
            app.state.runtime = Runtime(
                settings, store, service.workflows, bus, service, hub, backends.readiness
            )
            await service.start()
            stack.push_async_callback(service.shutdown)
            yield

    return Starlette(
        routes=[*api_routes(), *push_routes(), *web_routes()],
        lifespan=lifespan,
        exception_handlers={
            GraphpushError: _graphpush_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
