"""Optional API keys (SPEC §5.5): one check shared by REST and both push transports.

A key's owner id is a short hash of the key, so records never hold the key itself.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import HTTPConnection

from app.errors import Unauthorized
from app.settings import Settings


def owner_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def authenticate(conn: HTTPConnection, settings: Settings) -> str | None:
    """The caller's owner id, or ``None`` when no keys are configured.

    The key comes from ``Authorization: Bearer <key>``, else ``?token=``, else the
    ``graphpush-token`` cookie. Raises :class:`Unauthorized` when keys are set and none matches.
    """
    if not settings.api_keys:
        return None
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    key = value.strip() if scheme.lower() == "bearer" else ""
    key = key or conn.query_params.get("token", "") or conn.cookies.get("graphpush-token", "")
    for candidate in settings.api_keys:
        if key and hmac.compare_digest(key.encode(), candidate.encode()):
            return owner_of(candidate)
    raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")
