"""Who is calling, and what they may do (SPEC §5.5, §11): the one authorization rule that
REST, both push transports and the execution stream apply.

An API key (or no key, when keys are off) may do everything with its own runs. A scoped
browser token carries a :class:`Scope`: a few actions, on some runs of the key that minted
it (those execution ids, or that workflow's runs, or all of them when neither is given).
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from app.errors import Forbidden

Action = Literal["read", "cancel", "resume"]
#: The actions a token may carry; every other call (runs, workflow writes, minting) needs a key.
ACTIONS: Final[tuple[Action, ...]] = ("read", "cancel", "resume")


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """What a scoped token allows. A run is covered when its id is one of ``execution_ids``
    or its workflow is ``workflow_id``; with neither, every run of the token's owner is."""

    actions: frozenset[str]
    execution_ids: frozenset[str] | None = None
    workflow_id: str | None = None

    @property
    def unlimited(self) -> bool:
        return self.execution_ids is None and self.workflow_id is None

    def covers(self, execution_id: str, workflow_id: str | None) -> bool:
        if self.unlimited:
            return True
        if self.execution_ids is not None and execution_id in self.execution_ids:
            return True
        return self.workflow_id is not None and workflow_id == self.workflow_id

    def covers_workflow(self, workflow_id: str) -> bool:
        """May the token see workflow ``workflow_id`` itself (its definition, its run list)?"""
        return self.unlimited or workflow_id == self.workflow_id


class Caller(msgspec.Struct, frozen=True):
    """An authenticated caller: ``owner`` (None when API keys are off) and, for a scoped
    token, its ``scope`` (None: an API key, limited to its owner's runs only)."""

    owner: str | None = None
    scope: Scope | None = None

    def require_action(self, action: Action) -> None:
        """Raise :class:`Forbidden` unless the caller may do ``action`` on some run."""
        if self.scope is not None and action not in self.scope.actions:
            raise Forbidden(f"this token does not allow {action!r}")

    def require(self, action: Action, execution_id: str, workflow_id: str | None) -> None:
        """Raise :class:`Forbidden` unless the caller may do ``action`` on that run (its owner
        is checked where the run is read: another owner's run is not found)."""
        self.require_action(action)
        if self.scope is not None and not self.scope.covers(execution_id, workflow_id):
            raise Forbidden(f"this token does not cover execution {execution_id!r}")

    def require_workflow(self, workflow_id: str) -> None:
        """Raise :class:`Forbidden` unless the caller may read workflow ``workflow_id``."""
        self.require_action("read")
        if self.scope is not None and not self.scope.covers_workflow(workflow_id):
            raise Forbidden(f"this token does not cover workflow {workflow_id!r}")

    def require_key(self) -> None:
        """Raise :class:`Forbidden` for a scoped token: the call needs an API key."""
        if self.scope is not None:
            raise Forbidden("this call needs an API key; a scoped token cannot make it")


def sees(
    owner: str | None,
    scope: Scope | None,
    execution_id: str,
    workflow_id: str | None,
    run_owner: str | None,
) -> bool:
    """May a caller of ``owner`` holding ``scope`` (None: a key) receive a push message of
    that run (of ``run_owner``)? Called for every message and receiver: no allocation."""
    if owner is not None and run_owner != owner:
        return False
    return scope is None or ("read" in scope.actions and scope.covers(execution_id, workflow_id))
