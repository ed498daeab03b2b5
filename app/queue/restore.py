"""Queue again what Redis lost: PostgreSQL is the source of truth, the stream a transport.

Every queued run's id is also in the Redis set ``<prefix>:queued`` (added with its stream
entry, removed when the entry is acknowledged). :meth:`Restorer.sweep` lists the runs the
store holds as ``new`` and queues again each one the set does not know:

- after a Redis restart without persistence (the stream, its group and the set are gone):
  the first process to meet the missing group (``NOGROUP``) recreates it and sweeps at once;
- a run stored while Redis was unreachable, or by an API instance that died between storing
  and queuing it: every ``claim_idle_s`` one process (a short Redis lock) sweeps the runs
  older than ``claim_idle_s``.

A run is marked queued and its entry appended in one step (a script): a connection lost in
the middle of a sweep leaves each run either queued or unmarked, and a later sweep queues
an unmarked one (a run marked but never appended would never be queued again). A sweep
made for a lost group that fails is made again, whole, at the process's next heartbeat.

A run queued twice is harmless: the worker that takes the second entry finds it no longer
``new`` (the claim is a compare-and-set in the store) and skips it.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from app.clock import now_ms
from app.messages import encoder
from app.model.records import ExecutionRecord
from app.model.status import ExecutionStatus

log = logging.getLogger(__name__)
GROUP = "workers"
#: Queue a run again unless it is marked queued: mark it and append its entry at once.
#: KEYS: the queued set, the stream; ARGV: the run's id, its encoded record. 1 if queued.
_REQUEUE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
    redis.call('XADD', KEYS[2], '*', 'record', ARGV[2])
    return 1
end
return 0
"""


class QueuedRuns(Protocol):
    """What the sweep reads from the shared store."""

    async def new_run_ids(self, created_before: int) -> list[str]:
        """Ids of the runs stored as ``new`` created before ``created_before`` (epoch ms),
        oldest first."""
        ...

    async def get(self, execution_id: str) -> ExecutionRecord | None: ...


class Restorer:
    def __init__(self, redis: Redis, *, store: QueuedRuns, prefix: str, every_s: float) -> None:
        self._redis = redis
        self._store = store
        self.stream = f"{prefix}:runs"
        self.queued = f"{prefix}:queued"
        self._lock = f"{prefix}:sweep"
        self._every_ms = int(every_s * 1000)
        self._requeue = redis.register_script(_REQUEUE)
        #: A sweep for a lost group failed: the next :meth:`sweep_if_due` makes it again.
        self._owed = False

    async def create_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: another process made it
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)

    async def recreate(self) -> None:
        """The group is gone (Redis restarted empty): make it again and queue every ``new``
        run again."""
        log.warning("the Redis queue was lost; queuing again the runs stored as new")
        self._owed = True
        await self.create_group()
        await self.sweep(grace_ms=0)
        self._owed = False

    async def sweep_if_due(self) -> None:
        """Make a failed sweep for a lost group again; else sweep runs older than
        ``every_s``, unless another process did in the last ``every_s``."""
        if self._owed:
            await self.sweep(grace_ms=0)
            self._owed = False
        elif await self._redis.set(self._lock, "1", nx=True, px=self._every_ms):
            await self.sweep(grace_ms=self._every_ms)

    async def sweep(self, grace_ms: int) -> None:
        """Queue again every run stored as ``new`` over ``grace_ms`` ago that is not queued."""
        ids = await self._store.new_run_ids(now_ms() - grace_ms)
        if not ids:
            return
        known = await self._redis.smismember(self.queued, ids)
        requeued = 0
        for execution_id, queued in zip(ids, known, strict=True):
            if queued:
                continue
            record = await self._store.get(execution_id)
            if record is None or record.status is not ExecutionStatus.NEW:
                continue  # taken or ended meanwhile
            # The mark answers 1 to one process only: two sweeping at once queue a run once.
            args: list[str | bytes] = [execution_id, encoder.encode(record)]
            requeued += int(await self._requeue(keys=[self.queued, self.stream], args=args))
        if requeued:
            log.warning("queued again %d runs stored as new that Redis had lost", requeued)
