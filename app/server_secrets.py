"""The server's own secrets (SPEC §11): ``token_secret`` signs scoped browser tokens and
``webhook_secret`` signs webhook deliveries.

An operator sets them (``GRAPHPUSH_TOKEN_SECRET``, ``GRAPHPUSH_WEBHOOK_SECRET``). One left
unset is generated once and kept in a file of its name under ``data_dir`` (mode 0600), so
tokens and receivers' keys stay valid across restarts; with ``database=memory`` nothing is
kept, so it lives as long as the process (as do its runs).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import msgspec

from app.settings import Settings


def _token_secret() -> str:
    return secrets.token_urlsafe(32)


def _webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def with_secrets(settings: Settings) -> Settings:
    """``settings`` with ``token_secret`` and ``webhook_secret`` set (see the module)."""
    keep = settings.database != "memory" or settings.database_url is not None
    found = {}
    for name, generate in (("token_secret", _token_secret), ("webhook_secret", _webhook_secret)):
        if getattr(settings, name) is None:
            found[name] = _kept(settings.data_dir / name, generate) if keep else generate()
    return msgspec.structs.replace(settings, **found) if found else settings


def _kept(path: Path, generate: Callable[[], str]) -> str:
    """The secret in ``path``, written there first if there is none (the first process of
    several starting together wins: the file is created exclusively)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(generate())
    return path.read_text().strip()
