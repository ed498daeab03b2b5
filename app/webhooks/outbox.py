"""The rows a run's terminal (or waiting) status writes into the outbox, and the signal that
wakes the sender once they are committed.

:class:`Outbox` is what :class:`~app.executions.workers.ExecutionManager` is given: it calls
:meth:`Outbox.deliveries` as it stages a run's final state and :meth:`Outbox.committed`
once that is durable. The body is built then, so every retry sends the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from app.clock import iso, now_ms
from app.http.bodies import execution_dto
from app.messages import encoder
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus
from app.model.webhooks import WebhookDelivery, WebhookEvent


def webhook_url(record: ExecutionRecord) -> str | None:
    """The run's own ``webhook``, else its workflow's ``settings.webhook_url``."""
    settings = record.workflow.get("settings")
    configured = settings.get("webhook_url") if isinstance(settings, dict) else None
    return record.webhook or (configured if isinstance(configured, str) else None)


class Outbox:
    def __init__(self) -> None:
        self._committed = asyncio.Event()

    def deliveries(self, record: ExecutionRecord) -> list[WebhookDelivery]:
        """The delivery of ``record``'s status (waiting, or one that ends it), if it has a
        webhook URL: ``{"type", "timestamp", "data": AgentExecutionDto without graph_state}``."""
        url = webhook_url(record)
        if url is None:
            return []
        waiting = record.status is ExecutionStatus.WAITING
        event: WebhookEvent = "execution.waiting" if waiting else "execution.finished"
        now = now_ms()
        data = execution_dto(record)
        data.pop("graph_state", None)
        body = {"type": event, "timestamp": iso(now), "data": data}
        delivery = WebhookDelivery(
            id=f"msg_{uuid.uuid4().hex}",
            execution_id=record.id,
            event=event,
            url=url,
            payload=encoder.encode(body),
            created_at=now,
            next_attempt_at=now,
        )
        return [delivery]

    def committed(self) -> None:
        """New rows are durable: wake the sender."""
        self._committed.set()

    async def wait(self, timeout_s: float) -> None:
        """Return after :meth:`committed` or ``timeout_s``, whichever comes first."""
        # asyncio.timeout, not wait_for: a wait_for whose timeout and the task's cancellation
        # coincide may swallow the cancellation (Python 3.11), and the sender would not stop.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._committed.wait()
        self._committed.clear()
