"""The Starlette application and its lifespan, which owns every long-lived resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from starlette.applications import Starlette

from app.backends import open_backends
from app.bus.base import LocalEventBus
from app.collector import startup_frozen
from app.executions.retention import Pruner
from app.executions.service import ExecutionService
from app.http.api import OPERATIONS, api_routes
from app.http.errors import EXCEPTION_HANDLERS
from app.http.reference import reference_routes
from app.http.runs_feed import RunsList
from app.http.web import web_routes
from app.metrics import LoopLag, PushPasses
from app.push.hub import PushHub
from app.runtime import Runtime
from app.server_secrets import with_secrets
from app.settings import Settings, load_settings
from app.webhooks.outbox import Outbox
from app.webhooks.sender import WebhookSender
from app.workflows.examples import load_examples
from transports.http_protocol import SERVER_STOPPING
from transports.pump import Pumps
from transports.routes import push_routes
from transports.state import PushState

#: Called with the service before it starts: register graphs and node types here.
Setup = Callable[[ExecutionService], None]


def create_app(settings: Settings | None = None, setup: Setup | None = None) -> Starlette:
    """The graphpush ASGI app. ``setup`` runs before the workers start (Python API)."""
    configured = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        settings = with_secrets(configured)
        async with AsyncExitStack() as stack:
            backends = await open_backends(stack, settings, push=True)
            store, bus = backends.store, backends.bus
            outbox = Outbox()
            service = await backends.service(settings, outbox)
            # Entered after the store, so left before it closes; it runs through shutdown.
            sender = WebhookSender(store=store, outbox=outbox, settings=settings, busy=service.busy)
            await stack.enter_async_context(sender)
            hub = PushHub(settings=settings, service=service, runs=RunsList(service))
            stack.callback(backends.subscribe_hub(hub))
            # Closed after the engine (callbacks run in reverse): connections get the final
            # messages of runs canceled by the shutdown before they close.
            stack.push_async_callback(hub.aclose)
            if setup is not None:
                setup(service)
            if settings.load_examples:
                await load_examples(service.workflows)
            lag = await stack.enter_async_context(LoopLag())
            pruner = Pruner(store=store, checkpointer=backends.checkpointer, settings=settings)
            await stack.enter_async_context(pruner)
            passes = PushPasses()
            app.state.runtime = Runtime(
                settings,
                store,
                service.workflows,
                bus,
                service,
                hub,
                backends.readiness,
                backends.health,
                lag,
                pruner,
                passes,
            )
            pumps = Pumps(settings, passes.passed)
            app.state.push = push = PushState(settings, hub, service, pumps)
            if isinstance(bus, LocalEventBus):  # the engine shares the loop with the writers
                bus.pace = push.pumps.pacer.published
            await service.start()
            stack.push_async_callback(service.shutdown)
            stack.enter_context(startup_frozen())
            # The server calls it when it starts to stop, before it waits for open streams.
            yield {SERVER_STOPPING: push.pumps.shut_down}

    return Starlette(
        routes=[*api_routes(), *push_routes(), *reference_routes(OPERATIONS), *web_routes()],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
