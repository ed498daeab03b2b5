"""The resources the lifespan owns, and the one typed accessor handlers use to reach them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from starlette.requests import HTTPConnection

from app.bus.base import EventBus
from app.metrics import LoopLag, PushPasses
from app.settings import Settings
from app.storage.base import ExecutionStore
from app.storage.health import StoreHealth

if TYPE_CHECKING:
    from app.executions.retention import Pruner
    from app.executions.service import ExecutionService
    from app.push.hub import PushHub
    from app.workflows.service import WorkflowService


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    store: ExecutionStore
    workflows: WorkflowService
    bus: EventBus
    service: ExecutionService
    hub: PushHub
    #: Each backend's state, ``"ok"`` or why not (``/readyz``).
    readiness: Callable[[], Awaitable[dict[str, str]]]
    #: The embedded store's writes and checkpoints (``/healthz``, ``/metrics``).
    health: StoreHealth = field(default_factory=StoreHealth)
    loop_lag: LoopLag | None = None
    pruner: Pruner | None = None
    #: The push passes' lengths (``/metrics``).
    push_passes: PushPasses | None = None


def runtime(conn: HTTPConnection) -> Runtime:
    """The running app's :class:`Runtime` (set by the lifespan)."""
    return cast(Runtime, conn.app.state.runtime)
