"""Whether the store can write and checkpoint: what ``/healthz`` and ``/metrics`` say about
it (docs/deploy.md, *When a backend fails*).

A store reports every write and checkpoint attempt here. A write that failed is kept by the
store and retried after the delay :meth:`StoreHealth.write_failed` returns, doubling from
:data:`RETRY_FIRST_S` up to :data:`RETRY_MAX_S`: a full disk costs one failed transaction a
second, and a run waits at most that long after space returns. The first failure of a
streak and the recovery are logged, not every attempt.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from app.clock import iso, now_ms
from app.errors import BackendUnavailable
from app.metrics import prometheus
from app.model.records import JsonObject

log = logging.getLogger("graphpush.store")

RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0

#: SQLite primary result codes of a write that can succeed later: a full disk (or the
#: database at its ``max_page_count``), an I/O error, a lock, a file read-only or not
#: openable for now. Other errors are bugs: retrying them would block every write after.
_TRANSIENT = {
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_CANTOPEN,
}


def transient(error: Exception) -> bool:
    """Whether a failed SQLite write is worth retrying (see :data:`_TRANSIENT`)."""
    return isinstance(error, sqlite3.OperationalError) and (
        error.sqlite_errorcode & 0xFF in _TRANSIENT
    )


def unavailable(error: Exception) -> BackendUnavailable:
    """What refuses a request whose write failed with ``error`` (503, ``Retry-After``)."""
    return BackendUnavailable(f"the store cannot write ({error})")


@contextlib.contextmanager
def refusing() -> Iterator[None]:
    """Around a write nobody retries: a transient failure becomes :func:`unavailable`."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not transient(exc):
            raise
        raise unavailable(exc) from exc


@dataclass(slots=True)
class StoreHealth:
    """The store's write and checkpoint state, as its last attempt of each left it."""

    writable: bool = True
    checkpointing: bool = True
    write_failures: int = 0
    checkpoint_failures: int = 0
    last_error: str | None = None
    #: Epoch ms of the first failed write of the current streak.
    unwritable_since: int | None = None
    _streak: int = 0
    _streak_started: float = 0.0

    def write_failed(self, error: Exception, staged: int) -> float:
        """Count a failed write of ``staged`` rows (kept for a retry); returns the seconds to
        wait before that retry."""
        self.write_failures += 1
        self.last_error = str(error)
        if self.writable:
            self.writable = False
            self.unwritable_since = now_ms()
            self._streak_started = time.monotonic()
            log.error("the store cannot write (%s): a write of %d rows failed", error, staged)
        self._streak += 1
        return min(RETRY_MAX_S, RETRY_FIRST_S * 2.0 ** min(self._streak - 1, 16))

    def wrote(self) -> None:
        if not self.writable:
            log.warning(
                "the store writes again, after %d failed attempts over %.1f s",
                self._streak,
                time.monotonic() - self._streak_started,
            )
        self.writable, self.unwritable_since, self._streak = True, None, 0

    def abandoned(self, staged: int) -> None:
        """The store closes with ``staged`` rows it could not write: they die with the
        process. Runs they left ``running`` are marked ``crashed`` at the next start, and no
        run was accepted that was not written."""
        log.error("closing with %d rows the store could not write (%s)", staged, self.last_error)

    def checkpoint_failed(self, error: Exception) -> None:
        self.checkpoint_failures += 1
        self.last_error = str(error)
        if self.checkpointing:
            self.checkpointing = False
            log.error("the WAL checkpoint failed (%s); retrying", error, exc_info=error)

    def checkpointed(self) -> None:
        if not self.checkpointing:
            log.warning("the WAL checkpoint works again")
        self.checkpointing = True

    def report(self) -> JsonObject:
        """The ``store`` object of ``GET /healthz``."""
        since = self.unwritable_since
        return {
            "writable": self.writable,
            "checkpointing": self.checkpointing,
            "unwritable_since": None if since is None else iso(since),
            "write_failures": self.write_failures,
            "checkpoint_failures": self.checkpoint_failures,
            "last_error": self.last_error,
        }

    def metrics_text(self) -> str:
        gauges = {
            "store_writable": int(self.writable),
            "store_checkpointing": int(self.checkpointing),
        }
        counters = {
            "store_write_failures_total": self.write_failures,
            "store_checkpoint_failures_total": self.checkpoint_failures,
        }
        return prometheus(gauges, counters)
