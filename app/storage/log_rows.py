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

A row's entries are in ``seq`` order, so its first ``seq`` is its least: a read of at most
``limit`` entries decodes no row whose entries all come after the ones it holds
(:func:`read_log`), which is every row after the page but one that logs an entry anew.
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
    """The row of a run's entries (by ``seq``) written by one commit, in ``seq`` order;
    ``entries`` as a ``bytearray`` (see :mod:`app.storage.sql_rows`)."""
    seqs = sorted(entries)
    column = bytearray()
    _encode_into([entries[seq] for seq in seqs], column)
    return execution_id, seqs[-1], column


def row_entries(entries: bytes | bytearray) -> list[LogEntry]:
    """The entries of a row, as it holds them."""
    return _decode(entries)


def first_seq(entries: bytes) -> int:
    """The ``seq`` of a row's first entry, read without decoding the row: every row starts
    ``[[seq,`` (written compact, by :func:`log_row` or by the schema's migrations)."""
    return int(entries[2 : entries.index(b",", 2)])


def read_log(rows: Iterable[bytes], after: int, limit: int | None) -> list[StoredEvent]:
    """The entries with ``seq > after`` of a run's rows (each row's ``entries``, in the
    order they were written), in ``seq`` order, at most ``limit`` of them.

    With a ``limit``, once the entries held fill it, a row whose first ``seq`` comes after
    all of them is passed over undecoded: it cannot change the page."""
    latest: dict[int, LogEntry] = {}
    last: int | None = None  # the greatest seq of a full page held
    for entries in rows:
        if last is not None and first_seq(entries) > last:
            continue
        for entry in _decode(entries):
            if entry.seq > after:
                latest[entry.seq] = entry  # a row written later holds the entry logged last
        if limit is not None and 0 < limit <= len(latest):
            seqs = sorted(latest)
            last = seqs[limit - 1]
            for seq in seqs[limit:]:
                del latest[seq]
    seqs = sorted(latest)[:limit]
    return [StoredEvent(seq, latest[seq].type, bytes(latest[seq].payload)) for seq in seqs]
