"""Execution statuses (n8n's) and the one table of legal transitions."""

from __future__ import annotations

import enum
from typing import Final

from app.errors import IllegalTransition


class ExecutionStatus(enum.StrEnum):
    NEW = "new"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCESS = "success"
    ERROR = "error"
    CANCELED = "canceled"
    CRASHED = "crashed"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in FINISHED


S = ExecutionStatus
#: The statuses a run never leaves. A ``StrEnum``: ``"success" in FINISHED`` holds too.
FINISHED: Final = frozenset({S.SUCCESS, S.ERROR, S.CANCELED, S.CRASHED, S.UNKNOWN})

#: status -> statuses it may move to. A resumed waiting run goes back to ``new`` (queued).
TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.NEW: frozenset({S.RUNNING, S.CANCELED, S.CRASHED}),
    S.RUNNING: frozenset({S.WAITING, S.SUCCESS, S.ERROR, S.CANCELED, S.CRASHED}),
    S.WAITING: frozenset({S.NEW, S.CANCELED}),
    S.SUCCESS: frozenset(),
    S.ERROR: frozenset(),
    S.CANCELED: frozenset(),
    S.CRASHED: frozenset(),
    S.UNKNOWN: frozenset(),
}


def check_transition(current: ExecutionStatus, target: ExecutionStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> target`` is in :data:`TRANSITIONS`."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(f"execution is {current.value}; it cannot become {target.value}")
