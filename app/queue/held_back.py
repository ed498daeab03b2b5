"""Stream entries of the shared queue whose runs a concurrency limit holds back (SPEC §10).

They stay pending for this process (heartbeated like held runs), in queue order, and are
tried again before newer entries: when a run ends here, and every :data:`RECHECK_S` (other
processes end runs too). In one pass, an entry is skipped when an older one of the same
workflow found it full, or of the same concurrency key found it taken, so a held-back run
never delays runs of other workflows or keys.
"""

from __future__ import annotations

from collections.abc import Iterator

from app.model.limits import Claim, KeyScope, key_scope, max_concurrency
from app.model.records import ExecutionRecord

#: Entry id, the queued record, and whether it was taken over from a stopped process.
Entry = tuple[str, ExecutionRecord, bool]
#: How often held-back runs are tried again when nothing ended here.
RECHECK_S = 0.2


def _order(entry: Entry) -> tuple[int, int]:
    milliseconds, _, sequence = entry[0].partition("-")
    return int(milliseconds), int(sequence or 0)


class HeldBack:
    def __init__(self) -> None:
        self._entries: list[Entry] = []
        #: Set when a run ended here: try the held-back runs at the next turn.
        self.recheck = False
        self._next_check = 0.0
        self._full: set[str] = set()
        self._taken: set[KeyScope] = set()

    def __bool__(self) -> bool:
        return bool(self._entries)

    def hold(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._entries.sort(key=_order)

    def release(self, entry: Entry) -> None:
        self._entries.remove(entry)

    def entry_ids(self) -> list[str]:
        return [entry[0] for entry in self._entries]

    def due(self, now: float) -> Iterator[Entry]:
        """The entries to try now, oldest first (none unless a check is due); call
        :meth:`still_held` or :meth:`release` for each."""
        if not self._entries or not (self.recheck or now >= self._next_check):
            return
        self.recheck, self._next_check = False, now + RECHECK_S
        self._full, self._taken = set(), set()
        for entry in list(self._entries):
            record = entry[1]
            if max_concurrency(record) is not None and record.workflow_id in self._full:
                continue
            if key_scope(record) in self._taken:
                continue
            yield entry

    def still_held(self, entry: Entry, claim: Claim) -> None:
        """``entry`` was tried and is held back again, for the reason ``claim``."""
        record = entry[1]
        scope = key_scope(record)
        if claim is Claim.KEY_TAKEN and scope is not None:
            self._taken.add(scope)
        else:
            self._full.add(record.workflow_id)
