"""The webhook outbox on SQLite (SPEC §11): table ``webhooks`` (in
:data:`app.storage.sqlite_schema.SCHEMA`), written with the group commit. One process uses the
file, so a claim needs no lock: it only keeps a row from being sent twice at once.
"""

from __future__ import annotations

import builtins
import sqlite3
from typing import Any

from app.model.webhooks import WebhookDelivery
from app.storage.sql_rows import webhook_from_body, webhook_row

INSERT_WEBHOOK = """INSERT INTO webhooks (id, execution_id, status, due, body)
    VALUES (?,?,?,?,?) ON CONFLICT (id) DO NOTHING"""


class SqliteOutbox:
    """The :class:`~app.storage.base.WebhookStore` half of
    :class:`~app.storage.sqlite.SqliteStore`, on its connection and reads."""

    def _flush(self) -> None:
        raise NotImplementedError

    async def _connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _query_all(self, sql: str, *args: Any) -> builtins.list[Any]:
        raise NotImplementedError

    async def list_webhooks(self, execution_id: str) -> builtins.list[WebhookDelivery]:
        rows = await self._query_all(
            "SELECT body FROM webhooks WHERE execution_id=? ORDER BY rowid", execution_id
        )
        return [webhook_from_body(r[0]) for r in rows]

    async def claim_webhooks(
        self, now: int, lease_ms: int, limit: int
    ) -> builtins.list[WebhookDelivery]:
        # Committed rows only, so no flush: a claim must not cut the runs' group commit short
        # (rows are announced once committed, and staged ones are not due to anyone yet).
        db = await self._connection()
        rows = db.execute(
            "SELECT id, body FROM webhooks WHERE status='pending' AND due<=? AND claimed_until<=? "
            "ORDER BY due LIMIT ?",
            (now, now, limit),
        ).fetchall()
        db.executemany(
            "UPDATE webhooks SET claimed_until=? WHERE id=?", [(now + lease_ms, r[0]) for r in rows]
        )
        return [webhook_from_body(r[1]) for r in rows]

    async def save_webhook(self, delivery: WebhookDelivery) -> None:
        id_, _, status, due, body = webhook_row(delivery)
        (await self._connection()).execute(
            "UPDATE webhooks SET status=?, due=?, body=?, claimed_until=0 WHERE id=?",
            (status, due, body, id_),
        )

    async def release_webhook_claims(self) -> None:
        db = await self._connection()
        self._flush()
        db.execute("UPDATE webhooks SET claimed_until=0 WHERE claimed_until>0")
