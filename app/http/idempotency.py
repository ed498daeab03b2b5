"""The ``Idempotency-Key`` header of the requests that start runs (SPEC §10): read, checked,
and bound to a fingerprint of the request; and the 202 that answers them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import msgspec
from starlette.requests import Request

from app.errors import InvalidIdempotencyKey, problem
from app.executions.admission import Idempotency
from app.http.bodies import run_accepted
from app.http.operation import Reply
from app.messages import encoder
from app.model.records import ExecutionRecord
from app.runtime import runtime

HEADER = "Idempotency-Key"
#: 1 to 255 visible ASCII characters.
KEY = re.compile(r"[\x21-\x7e]{1,255}")
_canonical = msgspec.json.Encoder(order="sorted")


def idempotency(request: Request, body: Any, push_ref: str | None) -> Idempotency | None:
    """The request's key with its fingerprint (the route, the decoded ``body`` with sorted
    keys, and the push ref), or None without the header. Raises
    :class:`InvalidIdempotencyKey` for a key that is not 1 to 255 visible ASCII characters."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not KEY.fullmatch(key):
        raise InvalidIdempotencyKey(
            f"bad {HEADER} header",
            [problem(HEADER, "expected 1 to 255 visible ASCII characters")],
        )
    digest = hashlib.sha256(f"{request.method} {request.url.path}\n".encode())
    digest.update(_canonical.encode(body))
    digest.update(f"\n{push_ref or ''}".encode())
    return Idempotency(key, digest.hexdigest())


def accepted_body(request: Request, owner: str | None) -> Callable[[ExecutionRecord], bytes]:
    """The 202 body of a run request for the run it queued; the run is expected by the push
    core from now on: its messages reach its pushRef, if any, and its workflow's runs feed
    even across a gap of the shared bus."""

    def answer(record: ExecutionRecord) -> bytes:
        shared = runtime(request).hub.shared
        shared.expect(record.id, record.push_ref, owner, record.workflow_id)
        return encoder.encode(run_accepted(record))

    return answer


def accepted_response(answer: bytes, replayed: bool) -> Reply:
    """The 202 of a run request: ``answer`` as it was first given, marked when replayed."""
    return Reply(answer, {"Idempotent-Replayed": "true"} if replayed else None)
