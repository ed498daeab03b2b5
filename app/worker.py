"""``graphpush worker``: a process that only executes runs (n8n's queue-mode worker).

It serves no HTTP: it takes runs from the shared Redis queue, writes their logs to the
shared PostgreSQL store and publishes their push messages on the Redis bus, where the API
instances pick them up (docs/deploy.md). SIGTERM or SIGINT shut it down gracefully, in the
phases of :meth:`app.executions.workers.ExecutionManager.shutdown`: no new run is taken,
running ones get ``shutdown_timeout_s`` to finish, the rest end ``canceled``; queued runs
stay queued for the other workers.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack

from app.backends import open_backends
from app.collector import startup_frozen
from app.settings import Settings

log = logging.getLogger("graphpush.worker")


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Execute queued runs with ``settings.workers`` workers until ``stop`` is set."""
    async with AsyncExitStack() as stack:
        backends = await open_backends(stack, settings, push=False)
        service = await backends.service(settings)
        await service.start()
        stack.push_async_callback(service.shutdown)
        stack.enter_context(startup_frozen())
        log.info("worker ready: %d workers on %s", settings.workers, settings.redis_prefix)
        await stop.wait()
        log.info("worker stopping: running executions get %.0f s", settings.shutdown_timeout_s)


def serve_worker(settings: Settings) -> None:
    """Run a worker process until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await run_worker(settings, stop)

    asyncio.run(main())
