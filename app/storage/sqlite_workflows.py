"""The workflows on SQLite: table ``workflows`` (in :data:`app.storage.sqlite_schema.SCHEMA`),
each write its own statement outside the group commit."""

from __future__ import annotations

import builtins
import sqlite3
from typing import Any

import msgspec

from app.errors import Conflict
from app.model.records import JsonObject
from app.storage.health import refusing
from app.storage.sql_rows import json_object


class SqliteWorkflows:
    """The :class:`~app.storage.base.WorkflowStore` half of
    :class:`~app.storage.sqlite.SqliteStore`, on its connection and reads."""

    async def _connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    async def _query_one(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _query_all(self, sql: str, *args: Any) -> builtins.list[Any]:
        raise NotImplementedError

    async def _execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        """A write of its own (workflows); one that fails for now is refused (503)."""
        db = await self._connection()
        with refusing():
            return db.execute(sql, args)

    async def create_workflow(self, workflow_id: str, body: JsonObject) -> None:
        try:
            await self._execute(
                "INSERT INTO workflows VALUES (?,?,strftime('%s','now'))",
                workflow_id,
                msgspec.json.encode(body),
            )
        except sqlite3.IntegrityError:
            raise Conflict(f"workflow {workflow_id!r} already exists") from None

    async def put_workflow(self, workflow_id: str, body: JsonObject) -> None:
        await self._execute(
            "UPDATE workflows SET body=? WHERE id=?", msgspec.json.encode(body), workflow_id
        )

    async def get_workflow(self, workflow_id: str) -> JsonObject | None:
        row = await self._query_one("SELECT body FROM workflows WHERE id=?", workflow_id)
        return None if row is None else json_object(row[0])

    async def list_workflows(self) -> builtins.list[JsonObject]:
        rows = await self._query_all("SELECT body FROM workflows ORDER BY created_at, rowid")
        return [json_object(r[0]) for r in rows]

    async def delete_workflow(self, workflow_id: str) -> bool:
        return (await self._execute("DELETE FROM workflows WHERE id=?", workflow_id)).rowcount > 0
