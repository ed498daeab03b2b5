"""One frozen settings object, read from ``GRAPHPUSH_*`` environment variables and CLI flags."""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every tunable of the service. Environment variable: ``GRAPHPUSH_`` + upper-case name."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./var")
    #: ``sqlite`` (default, a file under ``data_dir``) or ``memory`` (nothing kept).
    database: str = "sqlite"
    workers: int = 1
    #: Runs waiting in the queue before ``POST .../run`` answers 503.
    queue_bound: int = 10_000
    # scale-out (docs/deploy.md): PostgreSQL store, Redis queue and bus
    #: ``postgresql://...``: executions, logs, workflows and checkpoints on PostgreSQL.
    database_url: str | None = None
    #: ``redis://...``: runs queued on a Redis stream, push relayed by Redis pub/sub; needs
    #: ``database_url`` (every process must see the same runs).
    redis_url: str | None = None
    #: Prefix of every Redis key and channel: deployments (or test runs) sharing a Redis.
    redis_prefix: str = "graphpush"
    #: A queued run held this long by a process that stopped heartbeating is taken over.
    claim_idle_s: float = 30.0
    max_body_bytes: int = 16 * 1024 * 1024
    #: Seconds running executions get to finish on shutdown before they are cancelled.
    shutdown_timeout_s: float = 10.0
    # run control (SPEC §10)
    #: Longest a run may execute (0: no limit); a workflow's ``settings.timeout_s`` may
    #: shorten it. A run that exceeds it ends ``canceled`` with a ``timeout`` error.
    execution_timeout_s: float = 3600.0
    #: How long an ``Idempotency-Key`` answers with its first run.
    idempotency_ttl_s: float = 86_400.0
    #: Finished runs older than this are pruned (0: no age limit); 14 days, as n8n.
    history_max_age_s: float = 14 * 86_400.0
    #: Finished runs kept at most, the newest (0: no count limit).
    history_max_count: int = 10_000
    #: How often the history is pruned.
    prune_interval_s: float = 3600.0
    #: Python modules whose functions ``python`` nodes may call.
    python_modules: tuple[str, ...] = ("app.workflows.example_functions",)
    default_recursion_limit: int = 100
    load_examples: bool = True
    # push
    ping_interval_s: float = 25.0
    #: A running node's streamed chunks (SPEC §8) are sent at most this often, merged.
    stream_flush_ms: int = 25
    max_message_bytes: int = 5 * 1024 * 1024
    #: Messages kept per pushRef for resume, and how long.
    resume_buffer_count: int = 10_000
    resume_buffer_age_s: float = 300.0
    #: Bytes queued for one connection before it is cut off as a slow consumer.
    connection_buffer_bytes: int = 8 * 1024 * 1024
    max_inbound_frame_bytes: int = 64 * 1024
    ws_per_message_deflate: bool = False
    allowed_origins: tuple[str, ...] = ()
    #: API keys; when empty, REST and push are open (and the server binds to loopback).
    api_keys: tuple[str, ...] = ()
    #: Signs scoped browser tokens (SPEC §11). Unset: generated once and kept in
    #: ``data_dir/token_secret``; every API process of a scale-out deployment needs the same.
    token_secret: str | None = None
    # completion webhooks (SPEC §11)
    #: ``whsec_`` + base64 key that signs deliveries. Unset: generated once and kept in
    #: ``data_dir/webhook_secret``, where receivers' owners read it.
    webhook_secret: str | None = None
    #: Deliver to loopback, private, link-local and other internal addresses too.
    webhook_allow_private: bool = False
    #: Seconds before each retry of a failed delivery; after the last, it is marked failed.
    webhook_retry_schedule_s: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000)
    #: Deliveries sent at once by one process.
    webhook_concurrency: int = 8

    def __post_init__(self) -> None:
        if self.redis_url and not self.database_url:
            raise ValueError("redis_url needs database_url: every process must share one store")
        problem = _out_of_range(self)
        if problem is not None:
            raise ValueError(problem)
        self._check_webhooks()

    def _check_webhooks(self) -> None:
        if self.webhook_secret is not None and not _is_webhook_secret(self.webhook_secret):
            raise ValueError("webhook_secret must be whsec_ followed by a base64 key")
        if any(delay < 0 for delay in self.webhook_retry_schedule_s):
            raise ValueError("webhook_retry_schedule_s cannot hold a negative delay")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "graphpush.sqlite"

    @property
    def checkpoint_path(self) -> Path:
        return self.data_dir / "checkpoints.sqlite"


#: Settings in seconds that only mean something above 0.
_POSITIVE = frozenset({"claim_idle_s", "idempotency_ttl_s", "prune_interval_s", "ping_interval_s"})

#: The least value of each other numeric setting; ``0`` is allowed only where it means
#: something (no limit, none, at once).
_AT_LEAST: dict[str, int] = {
    "workers": 0,  # an API instance that runs nothing
    "queue_bound": 1,
    "max_body_bytes": 1,
    "shutdown_timeout_s": 0,  # cancel running executions at once
    "execution_timeout_s": 0,  # no limit
    "history_max_age_s": 0,  # no age limit
    "history_max_count": 0,  # no count limit
    "default_recursion_limit": 1,
    "stream_flush_ms": 0,  # every chunk at once
    "max_message_bytes": 1,
    "resume_buffer_count": 0,  # nothing kept for resume
    "resume_buffer_age_s": 0,
    "connection_buffer_bytes": 1,
    "max_inbound_frame_bytes": 1,
    "webhook_concurrency": 1,
}


def _out_of_range(settings: Settings) -> str | None:
    """Why a numeric setting of ``settings`` is meaningless, naming it; None if none is."""
    if not 1 <= settings.port <= 65535:
        return f"port must be from 1 to 65535, not {settings.port}"
    for name in sorted(_POSITIVE):
        if getattr(settings, name) <= 0:
            return f"{name} must be positive, not {getattr(settings, name)}"
    for name, low in _AT_LEAST.items():
        if getattr(settings, name) < low:
            return f"{name} must be {low} or more, not {getattr(settings, name)}"
    return None


def _is_webhook_secret(value: str) -> bool:
    prefix, _, key = value.partition("whsec_")
    try:
        return prefix == "" and len(base64.b64decode(key, validate=True)) >= 16
    except ValueError:
        return False


_FIELDS = {f.name: f for f in msgspec.structs.fields(Settings)}
_LISTS = {"python_modules", "allowed_origins", "api_keys", "webhook_retry_schedule_s"}


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Build settings from defaults, then ``GRAPHPUSH_*`` variables, then ``overrides``.

    Raises ``msgspec.ValidationError`` naming the offending setting.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for name in _FIELDS:
        value = env.get(f"GRAPHPUSH_{name.upper()}")
        if value is None:
            continue
        raw[name] = _split(value) if name in _LISTS else value
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return msgspec.convert(raw, Settings, strict=False, dec_hook=_path_hook)


def _path_hook(type_: type, obj: Any) -> Any:
    if type_ is Path:
        return Path(obj)
    raise NotImplementedError
