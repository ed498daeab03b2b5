"""The webhook outbox on PostgreSQL (SPEC §11): table ``webhook_deliveries`` (migration 5 of
:mod:`app.storage.postgres_schema`), written with the group commit, claimed with row locks.

Claims use ``FOR UPDATE SKIP LOCKED``: of the processes claiming at once, each row goes to
one of them, which holds it for the lease (:class:`~app.storage.base.WebhookStore`).
"""

from __future__ import annotations

import builtins
from typing import Any

from app.model.webhooks import WebhookDelivery
from app.storage.sql_rows import webhook_from_body, webhook_row

INSERT_WEBHOOKS = """
INSERT INTO webhook_deliveries (id, execution_id, status, due, body)
SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bytea[])
ON CONFLICT (id) DO NOTHING"""
#: Of several processes claiming at once, each row goes to one (SKIP LOCKED), for the lease.
CLAIM_WEBHOOKS = """
UPDATE webhook_deliveries SET claimed_until = %s WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'pending' AND due <= %s AND claimed_until <= %s
    ORDER BY due LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING body"""


class PostgresOutbox:
    """The :class:`~app.storage.base.WebhookStore` half of
    :class:`~app.storage.postgres.PostgresStore`, on its ``_fetch`` and ``_run``."""

    async def _fetch(self, sql: str, *args: Any) -> builtins.list[Any]:
        raise NotImplementedError

    async def _run(self, sql: str, *args: Any) -> int:
        raise NotImplementedError

    async def list_webhooks(self, execution_id: str) -> builtins.list[WebhookDelivery]:
        rows = await self._fetch(
            "SELECT body FROM webhook_deliveries WHERE execution_id=%s ORDER BY position",
            execution_id,
        )
        return [webhook_from_body(r[0]) for r in rows]

    async def claim_webhooks(
        self, now: int, lease_ms: int, limit: int
    ) -> builtins.list[WebhookDelivery]:
        rows = await self._fetch(CLAIM_WEBHOOKS, now + lease_ms, now, now, limit)
        claimed = [webhook_from_body(r[0]) for r in rows]
        return sorted(claimed, key=lambda d: d.next_attempt_at or 0)

    async def save_webhook(self, delivery: WebhookDelivery) -> None:
        id_, _, status, due, body = webhook_row(delivery)
        await self._run(
            "UPDATE webhook_deliveries SET status=%s, due=%s, body=%s, claimed_until=0 WHERE id=%s",
            status,
            due,
            body,
            id_,
        )

    async def release_webhook_claims(self) -> None:
        await self._run("UPDATE webhook_deliveries SET claimed_until=0 WHERE claimed_until>0")
