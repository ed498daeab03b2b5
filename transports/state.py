"""What the push transports reach of the running app: set by its lifespan as
``app.state.push``, read by handlers through :func:`push_state`. Nothing of the engine but
the calls the push core makes of it (:class:`~app.push.dispatcher.PushService`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from starlette.requests import HTTPConnection

from app.push.dispatcher import PushService
from app.push.hub import PushHub
from app.settings import Settings
from transports.pump import Pumps


@dataclass(frozen=True, slots=True)
class PushState:
    settings: Settings
    hub: PushHub
    service: PushService
    pumps: Pumps


def push_state(conn: HTTPConnection) -> PushState:
    """The running app's :class:`PushState` (set by the lifespan)."""
    return cast(PushState, conn.app.state.push)
