"""The webhook sender: a lifespan-owned task that delivers the outbox (SPEC §11).

It claims due deliveries from the store (a claim holds a row for :data:`LEASE_MS`, so of
several processes one sends it), sends up to ``webhook_concurrency`` at once, each signed
per Standard Webhooks with ``webhook_secret``, and records every attempt: a 2xx delivers;
anything else (another status, a redirect, a timeout after :data:`TIMEOUT_S`, no
connection) is retried after the next delay of ``webhook_retry_schedule_s``, and once
those are spent the delivery has ``failed``; a destination the guard refuses fails at once.
Nothing here runs on a run's path: the engine only stages rows and signals the commit,
and while this process is ``busy`` running runs the sender waits (up to :data:`DEFER_S`)
before it starts more deliveries, so their requests do not take the runs' CPU.

    async with WebhookSender(store=store, outbox=outbox, settings=settings):
        ...  # the app serves; leaving stops the sender (claims in flight expire)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import httpx
from standardwebhooks import Webhook

from app.background import Background
from app.clock import now_ms
from app.model.webhooks import Attempt, WebhookDelivery
from app.settings import Settings
from app.storage.base import WebhookStore
from app.webhooks.guard import Refused, resolve
from app.webhooks.outbox import Outbox

log = logging.getLogger("graphpush.webhooks")

#: A delivery's whole request, connect to last byte of the status line.
TIMEOUT_S: Final = 10.0
#: How long a claim holds a row: well over one attempt, so no two processes send it at once.
LEASE_MS: Final = 60_000
#: How often the store is asked for due deliveries when nothing wakes the sender sooner.
POLL_S: Final = 1.0
#: The longest new deliveries wait for the runs of this process to pause.
DEFER_S: Final = 1.0
#: How often a deferring sender looks again.
DEFER_STEP_S: Final = 0.01


class WebhookSender:
    def __init__(
        self,
        *,
        store: WebhookStore,
        outbox: Outbox,
        settings: Settings,
        busy: Callable[[], bool] = lambda: False,
    ) -> None:
        assert settings.webhook_secret is not None, "the lifespan sets webhook_secret"
        self._store = store
        self._outbox = outbox
        self._settings = settings
        self._busy = busy
        self._signer = Webhook(settings.webhook_secret)
        # No redirects, no proxies from the environment (one would defeat the address pin).
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False, trust_env=False)
        self._loop = Background(log)
        #: The deliveries being sent.
        self._sending = Background(log)

    async def __aenter__(self) -> Self:
        if self._settings.redis_url is None:  # the only sender of this store
            await self._store.release_webhook_claims()
        self._loop.start(self._run(), name="webhook-sender")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._loop.aclose()  # first: it starts no delivery after this
        await self._sending.aclose()
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            free = self._settings.webhook_concurrency - len(self._sending)
            claimed: list[WebhookDelivery] = []
            if free > 0:
                await self._defer()
                try:
                    claimed = await self._store.claim_webhooks(now_ms(), LEASE_MS, free)
                except Exception:
                    log.exception("claiming webhook deliveries failed")
            for delivery in claimed:
                self._sending.start(self._deliver(delivery)).add_done_callback(self._sent)
            if len(claimed) < free or free <= 0:  # nothing more is due now
                await self._outbox.wait(POLL_S)

    async def _defer(self) -> None:
        """Wait while runs execute here, :data:`DEFER_S` at most."""
        for _ in range(round(DEFER_S / DEFER_STEP_S)):  # polled: a run's end has no hook here
            if not self._busy():
                return
            await asyncio.sleep(DEFER_STEP_S)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._outbox.committed()  # a slot is free: look for more at once

    async def _deliver(self, delivery: WebhookDelivery) -> None:
        try:
            attempt, final = await self._attempt(delivery)
            delivery.after(attempt, self._settings.webhook_retry_schedule_s, final=final)
            await self._store.save_webhook(delivery)
        except Exception:  # its claim expires and it is tried again
            log.exception("webhook delivery %s failed inside the sender", delivery.id)

    async def _attempt(self, delivery: WebhookDelivery) -> tuple[Attempt, bool]:
        """One POST of ``delivery``: the attempt, and whether its failure is final."""
        at = now_ms()
        try:
            target = await resolve(delivery.url, allow_private=self._settings.webhook_allow_private)
        except Refused as exc:
            return Attempt(at, error=f"refused: {exc}"), True
        except OSError as exc:
            return Attempt(at, error=f"cannot resolve: {exc}"), False
        headers = {**self._signed(delivery), **target.headers}
        error = "no address"
        for url in target.urls:  # the next checked address only when one does not connect
            try:
                status = await self._post(url, delivery.payload, headers, target.extensions)
            except httpx.ConnectError as exc:
                error = f"ConnectError: {exc}".rstrip(": ")
                continue
            except httpx.HTTPError as exc:
                return Attempt(at, error=f"{type(exc).__name__}: {exc}".rstrip(": ")), False
            return Attempt(at, status_code=status), False
        return Attempt(at, error=error), False

    async def _post(
        self, url: httpx.URL, payload: bytes, headers: dict[str, str], extensions: dict[str, str]
    ) -> int:
        """POST ``payload``; the answer's status (its body is not read)."""
        request = self._client.build_request(
            "POST", url, content=payload, headers=headers, extensions=extensions
        )
        response = await self._client.send(request, stream=True)
        await response.aclose()
        return response.status_code

    def _signed(self, delivery: WebhookDelivery) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt (signed with the time of sending)."""
        timestamp = datetime.now(UTC)
        return {
            "content-type": "application/json",
            "user-agent": "graphpush-webhooks",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": self._signer.sign(delivery.id, timestamp, delivery.payload),
        }
