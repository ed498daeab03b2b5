"""How a run's event log maps to SQL rows, shared by the SQLite and PostgreSQL stores.

A log row holds the entries of one run that one group commit wrote: ``(execution_id,
last_seq, entries)``, ``entries`` being the JSON array ``[[seq, type, message], ...]`` with
each push message as it was logged, byte for byte (every entry of the log is a push
message, a JSON object). ``last_seq`` is the greatest ``seq`` of the row, so the rows that
hold the entries after ``n`` are those with ``last_seq > n``.

A run's messages thus take a row per commit the run spans instead of a row each (a 3-node
run logs 11), and each row costs the database a b-tree insert, an index entry and the
binding of its parameters. An entry staged again after its row was written (a ``seq``
logged anew) is written in a later row, and readers take the entry of the row written last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from app.model.records import StoredEvent

#: A log row: ``(execution_id, last_seq, entries)``.
LogRow = tuple[str, int, bytearray]


class LogEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One entry of a log row: ``[seq, type, message]``."""

    seq: int
    type: str
    payload: msgspec.Raw


_encode_into: Final = msgspec.json.Encoder().encode_into
_decode: Final = msgspec.json.Decoder(list[LogEntry]).decode


def log_row(execution_id: str, entries: dict[int, LogEntry]) -> LogRow:
    """The row of a run's entries (by ``seq``, in staging order) written by one commit;
    ``entries`` as a ``bytearray`` (see :mod:`app.storage.sql_rows`)."""
    column = bytearray()
    _encode_into(list(entries.values()), column)
    return execution_id, max(entries), column


def row_entries(entries: bytes | bytearray) -> list[LogEntry]:
    """The entries of a row, as it holds them."""
    return _decode(entries)


def read_log(rows: Iterable[bytes], after: int, limit: int | None) -> list[StoredEvent]:
    """The entries with ``seq > after`` of a run's rows (each row's ``entries``, in the
    order they were written), in ``seq`` order, at most ``limit`` of them."""
    latest: dict[int, LogEntry] = {}
    for entries in rows:
        for entry in _decode(entries):
            latest[entry.seq] = entry  # a row written later holds the entry logged last
    seqs = sorted(seq for seq in latest if seq > after)
    if limit is not None:
        seqs = seqs[:limit]
    return [StoredEvent(seq, latest[seq].type, bytes(latest[seq].payload)) for seq in seqs]
