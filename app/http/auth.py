"""Credentials (SPEC §5.5, §11): optional API keys and scoped browser tokens, read in one
place for REST, both push transports and the execution stream.

A key's owner id is a short hash of the key, so records never hold the key itself. A scoped
token is a JWT (HS256, signed with ``token_secret``) that names the owner of the key that
minted it and a :class:`~app.model.access.Scope`; it is stateless, so it cannot be revoked
before it expires (hence at most an hour, :data:`MAX_TTL_S`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any, Final

import jwt
import msgspec
from starlette.requests import HTTPConnection

from app.errors import TokenRejected, Unauthorized
from app.model.access import Action, Caller, Scope
from app.model.ids import ID_PATTERN
from app.settings import Settings

#: The longest a token may live: long enough for a page, short enough to need no revocation.
MAX_TTL_S: Final = 3600
_ISSUER: Final = "graphpush"
_ALGORITHM: Final = "HS256"
_Id = Annotated[str, msgspec.Meta(pattern=f"^{ID_PATTERN}$")]


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /agents/tokens``."""

    scopes: Annotated[list[Action], msgspec.Meta(min_length=1)]
    execution_ids: Annotated[list[_Id], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    workflow_id: _Id | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_S)] = 900


def owner_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def mint(request: TokenRequest, owner: str | None, secret: str) -> tuple[str, int]:
    """A signed token for ``request`` on behalf of ``owner``, and when it expires (epoch s)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": _ISSUER,
        "sub": owner,
        "iat": now,
        "exp": now + request.ttl_s,
        "scopes": sorted(set(request.scopes)),
    }
    if request.execution_ids is not None:
        claims["execution_ids"] = sorted(set(request.execution_ids))
    if request.workflow_id is not None:
        claims["workflow_id"] = request.workflow_id
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), claims["exp"]


class _Claims(msgspec.Struct):
    sub: str | None
    scopes: list[str]
    execution_ids: list[str] | None = None
    workflow_id: str | None = None


def verify(token: str, secret: str) -> Caller:
    """The caller a token stands for. Raises :class:`TokenRejected` (401) when it is
    expired, not signed with ``secret`` or not one of ours."""
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "iss", "sub"]},
        )
        claims = msgspec.convert(raw, _Claims)
    except jwt.ExpiredSignatureError:
        raise TokenRejected("the token has expired") from None
    except (jwt.InvalidTokenError, msgspec.ValidationError):
        raise TokenRejected("the token is not valid") from None
    ids = claims.execution_ids
    scope = Scope(
        actions=frozenset(claims.scopes),
        execution_ids=None if ids is None else frozenset(ids),
        workflow_id=claims.workflow_id,
    )
    return Caller(claims.sub, scope)


def _looks_like_token(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def credential(conn: HTTPConnection) -> str:
    """``Authorization: Bearer <it>``, else ``?token=``, else the ``graphpush-token`` cookie."""
    header = conn.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    if given:
        return given
    # Parsed only when present: most requests carry neither a query string nor cookies.
    if conn.scope.get("query_string") and (token := conn.query_params.get("token")):
        return token
    return conn.cookies.get("graphpush-token", "") if "cookie" in conn.headers else ""


def authenticate(conn: HTTPConnection, settings: Settings) -> Caller:
    """The caller: an API key's owner, or a scoped token's :class:`Caller`.

    With no keys configured, everyone is ``Caller(None)`` unless they present a token, which
    is then checked like any other. Raises :class:`Unauthorized` when keys are set and the
    credential is neither a key nor a token, :class:`TokenRejected` for a bad token.
    """
    given = credential(conn)
    for candidate in settings.api_keys:
        if given and hmac.compare_digest(given.encode(), candidate.encode()):
            return Caller(owner_of(candidate))
    if _looks_like_token(given):
        assert settings.token_secret is not None, "the lifespan sets token_secret"
        caller = verify(given, settings.token_secret)
        if settings.api_keys and caller.owner is None:  # minted while keys were off
            raise TokenRejected("the token was minted without an API key")
        return caller
    if settings.api_keys:
        raise Unauthorized("a valid API key or token is required (Authorization: Bearer ...)")
    return Caller(None)
