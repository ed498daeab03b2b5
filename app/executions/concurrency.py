"""Which queued runs may start now (SPEC §10): a workflow's ``settings.max_concurrency``
bounds its running runs, and a ``concurrency_key`` lets one run at a time hold it, from
start until it finishes (also while it waits), first come first served.

The :class:`Gate` is one process's view: the embedded queue hands a worker the oldest run
the gate admits, so a run held back keeps its place and never blocks runs of other
workflows or keys. On a shared queue (``keys=False``) other processes start and end runs
too: the gate then only bounds this process's own running runs (a quick first check), and
the store's claim decides (:mod:`app.queue.redis`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from app.model.limits import KeyScope, key_scope, max_concurrency
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus


class Gate:
    """Running runs per workflow, and the unfinished runs of each concurrency key in order.

    Call order per run: :meth:`queued` when it is accepted (or found ``new``/``waiting`` at
    start), :meth:`started` when a worker takes it, :meth:`stopped` when it pauses or ends.
    """

    def __init__(self, *, keys: bool = True) -> None:
        #: Whether this process sees every run of a key (the embedded queue).
        self._track_keys = keys
        self._running: Counter[str] = Counter()
        #: Runs started here and not stopped since: execution id -> workflow id.
        self._started: dict[str, str] = {}
        #: key -> its unfinished runs, oldest first; the first holds the key.
        self._keys: dict[KeyScope, list[str]] = {}

    def queued(self, record: ExecutionRecord) -> None:
        scope = key_scope(record)
        if scope is not None and self._track_keys:
            holders = self._keys.setdefault(scope, [])
            if record.id not in holders:
                holders.append(record.id)

    def admits(self, record: ExecutionRecord) -> bool:
        """Whether ``record`` may start now."""
        scope = key_scope(record)
        if scope is not None and self._keys.get(scope, [record.id])[0] != record.id:
            return False
        limit = max_concurrency(record)
        return limit is None or self._running[record.workflow_id] < limit

    def started(self, record: ExecutionRecord) -> None:
        self._started[record.id] = record.workflow_id
        self._running[record.workflow_id] += 1

    def stopped(self, record: ExecutionRecord, status: ExecutionStatus) -> None:
        """``record`` paused (``waiting``) or ended with ``status``."""
        workflow_id = self._started.pop(record.id, None)
        if workflow_id is not None:
            self._running[workflow_id] -= 1
            if not self._running[workflow_id]:
                del self._running[workflow_id]
        if status.finished:
            self.forget([record])

    def forget(self, records: Iterable[ExecutionRecord]) -> None:
        """These runs hold or wait for their keys no longer."""
        for record in records:
            scope = key_scope(record)
            if scope is None:
                continue
            holders = self._keys.get(scope, [])
            if record.id in holders:
                holders.remove(record.id)
                if not holders:
                    del self._keys[scope]
