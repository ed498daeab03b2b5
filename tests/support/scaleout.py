"""PostgreSQL and Redis for the scale-out tests.

A test that needs one calls :func:`require`: it is skipped when the service does not
answer, except on CI (``CI=true``), where that is a failure. Each test gets a fresh
PostgreSQL schema and a unique Redis key prefix, so runs never see each other's data. Both
are removed when the session ends; names carry their creation hour, so a session that was
killed leaves nothing for longer than the next session's sweep of what is over a day old.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import secrets
import socket
import time
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import redis

from app.storage.postgres import PostgresStore

POSTGRES_URL = os.environ.get("GRAPHPUSH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
REDIS_URL = os.environ.get("GRAPHPUSH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@functools.cache
def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require(service: str) -> None:
    """Skip the calling test unless ``service`` ("postgres" or "redis") answers; on CI, fail."""
    url, port = (POSTGRES_URL, 5432) if service == "postgres" else (REDIS_URL, 6379)
    if _answers(url, port):
        return
    message = f"{service} does not answer at {url}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: the scale-out tests must run)", pytrace=False)
    pytest.skip(message)


def needs_services() -> pytest.MarkDecorator:
    """A mark for a parameter that needs PostgreSQL and Redis: skipped where either does
    not answer, except on CI, where the test runs (and fails)."""
    missing = not (_answers(POSTGRES_URL, 5432) and _answers(REDIS_URL, 6379))
    return pytest.mark.skipif(
        missing and os.environ.get("CI") != "true", reason="PostgreSQL or Redis does not answer"
    )


_schemas: list[str] = []
STALE_HOURS = 24


def _tag() -> str:
    """``<hours since the epoch>_<random>``: unique, and datable by :func:`_stale`."""
    return f"{int(time.time() // 3600)}_{secrets.token_hex(4)}"


def _stale(name: str, prefix: str) -> bool:
    hour = name.removeprefix(prefix).split("_")[0]
    return hour.isdigit() and int(hour) < time.time() // 3600 - STALE_HOURS


def fresh_schema(name: str | None = None) -> str:
    """Create a schema (``name`` or a random one) and return a URL whose connections use it.
    Every schema made here is dropped when the test session ends."""
    require("postgres")
    schema = name or f"gp_test_{_tag()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        if not _schemas:  # the first of this session: sweep what killed sessions left
            rows = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'gp_test_%'")
            for (old,) in rows.fetchall():
                if _stale(old, "gp_test_"):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{old}" CASCADE')
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    if schema not in _schemas:
        _schemas.append(schema)
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@atexit.register
def _drop_schemas() -> None:
    if not _schemas:
        return
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        for schema in _schemas:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def postgres_store(key: str) -> PostgresStore:
    """An unopened store in the schema of ``key`` (stores made with one key share data)."""
    if key not in _by_key:
        # the pid keeps two test sessions running at once out of each other's schemas
        tagged = f"{os.getpid()}:{key}".encode()
        digest = hashlib.sha1(tagged, usedforsecurity=False).hexdigest()[:12]
        _by_key[key] = f"gp_test_{int(time.time() // 3600)}_{digest}"
    return PostgresStore(fresh_schema(_by_key[key]))


_by_key: dict[str, str] = {}


def fresh_prefix() -> str:
    """A Redis key prefix of its own; its keys are deleted when the test session ends."""
    require("redis")
    prefix = f"gp-test-{_tag()}"
    if not _prefixes:  # the first of this session: sweep what killed sessions left
        client = redis.Redis.from_url(REDIS_URL)
        stale = [k for k in client.scan_iter("gp-test-*") if _stale(k.decode(), "gp-test-")]
        if stale:
            client.delete(*stale)
        client.close()
    _prefixes.append(prefix)
    return prefix


_prefixes: list[str] = []


@atexit.register
def _delete_keys() -> None:
    if not _prefixes:
        return
    client = redis.Redis.from_url(REDIS_URL)
    for prefix in _prefixes:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    client.close()
