"""PostgreSQL and Redis for the scale-out tests.

A test that needs one calls :func:`require`: it is skipped when the service does not
answer, except on CI (``CI=true``), where that is a failure. Each test gets a fresh
PostgreSQL schema and a unique Redis key prefix, so runs never see each other's data.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import os
import secrets
import socket
from urllib.parse import quote, urlsplit

import psycopg
import pytest
import redis

from app.postgres_store import PostgresStore

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


_schemas: list[str] = []


def fresh_schema(name: str | None = None) -> str:
    """Create a schema (``name`` or a random one) and return a URL whose connections use it.
    Every schema made here is dropped when the test session ends."""
    require("postgres")
    schema = name or f"gp_test_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
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
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:12]
    return PostgresStore(fresh_schema(f"gp_test_{digest}"))


def fresh_prefix() -> str:
    """A Redis key prefix of its own; its keys are deleted when the test session ends."""
    require("redis")
    prefix = f"gp-test-{secrets.token_hex(4)}"
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
