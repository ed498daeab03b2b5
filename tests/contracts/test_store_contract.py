"""The repository contract (``ExecutionStore`` + ``WorkflowStore``), one suite for every
backend; plus the status table and the ``flatted`` encoder, tested on their own.

To check a new backend (PostgreSQL, ...), add a :class:`Backend` to :data:`BACKENDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from app.errors import Conflict, IllegalTransition
from app.executions.flatted import stringify
from app.model.records import ExecutionQuery, ExecutionRecord, RetryPlan, StoredEvent
from app.model.status import TRANSITIONS, ExecutionStatus, check_transition
from app.model.webhooks import Attempt, WebhookDelivery
from app.storage.base import ExecutionStore, WorkflowStore
from app.storage.memory import MemoryStore
from app.storage.sqlite import SqliteStore
from app.storage.sqlite_schema import SCHEMA
from support.scaleout import postgres_store

pytestmark = pytest.mark.timeout(30)
S = ExecutionStatus


class Store(ExecutionStore, WorkflowStore, Protocol):
    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


@dataclass(frozen=True)
class Backend:
    name: str
    #: Build an unopened store whose data lives under the given directory.
    make: Callable[[Path], Store]
    #: Whether a new store on the same directory sees what a closed one wrote.
    persistent: bool


BACKENDS = [
    Backend("memory", lambda _: MemoryStore(), persistent=False),
    Backend("sqlite", lambda d: SqliteStore(d / "graphpush.sqlite"), persistent=True),
    # a schema per test directory; skipped when PostgreSQL does not answer (failed on CI)
    Backend("postgres", lambda d: postgres_store(str(d)), persistent=True),
]


@pytest.fixture(params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.param
    return chosen


@pytest.fixture
async def opener(backend: Backend, tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Opens stores of ``backend`` on one directory; all are closed at the end."""
    async with AsyncExitStack() as stack:

        async def open_store() -> Store:
            return await stack.enter_async_context(backend.make(tmp_path))

        yield open_store


@pytest.fixture
async def store(opener: Callable[[], Awaitable[Store]]) -> Store:
    return await opener()


_ids = itertools.count()


def record(**fields: Any) -> ExecutionRecord:
    n = next(_ids)
    values: dict[str, Any] = {
        "id": f"run-{n:04d}",
        "workflow_id": "wf",
        "workflow_name": "Workflow",
        "created_at": 1_700_000_000_000 + n,
    }
    return ExecutionRecord(**{**values, **fields})


def events(*seqs: int, prefix: str = "") -> list[StoredEvent]:
    return [
        StoredEvent(seq, "nodeExecuteBefore", f'{{"n":"{prefix}{seq}"}}'.encode()) for seq in seqs
    ]


# ---- records ---------------------------------------------------------------------------


async def test_a_saved_record_reads_back_equal(store: Store) -> None:
    saved = record(
        status=S.WAITING,
        push_ref="tab",
        owner="o1",
        started_at=1,
        error={"message": "m", "node": "B", "type": "T"},
        retry_of="run-x",
        retry=RetryPlan("B", ["A"], ["B"]),
        input={"q": [1, {"r": None}]},
        workflow={"name": "Workflow", "nodes": [{"name": "A", "type": "trigger"}]},
        workflow_version="v1",
        graph_state={"nodes": {"A": {"status": "success"}}, "completed_nodes": ["A"]},
        run_data={"A": [{"status": "success", "start_time": 1}]},
        outputs={"A": [{"main": [[{"json": {"x": 1}}]]}]},
        next_sequence_number=2,
        next_execution_index=1,
        resume_value={"approved": True},
        resume_pending=True,
    )

    await store.save(saved, events(1, 2))

    assert await store.get(saved.id) == saved
    assert await store.get("missing") is None


async def test_a_record_keeps_its_first_workflow_through_later_writes(store: Store) -> None:
    saved = record(workflow={"name": "first"})
    await store.save(saved)
    saved.status, saved.last_seq = S.RUNNING, 3

    await store.save(saved, events(1, 2, 3))

    got = await store.get(saved.id)
    assert got is not None
    assert got.workflow == {"name": "first"}
    assert (got.status, got.last_seq) == (S.RUNNING, 3)


async def test_a_record_staged_live_is_stored_as_its_last_stage_left_it(store: Store) -> None:
    running = record(workflow={"name": "first"})
    store.stage(running)  # its first write, with the workflow snapshot, not yet committed
    for seq in (1, 2):
        running.status, running.last_seq = S.RUNNING, seq
        running.graph_state = {"completed_nodes": [f"n{seq}"]}
        store.stage_live(running, events(seq))

    await store.commit()

    got = await store.get(running.id)
    assert got is not None
    assert (got.status, got.last_seq, got.graph_state) == (S.RUNNING, 2, running.graph_state)
    assert got.workflow == {"name": "first"}
    assert [e.seq for e in await store.read_events(running.id)] == [1, 2]


async def test_staging_copies_the_record_at_the_time_of_the_call(store: Store) -> None:
    staged = record()
    store.stage(staged)
    staged.status = S.RUNNING

    await store.commit()

    got = await store.get(staged.id)
    assert got is not None and got.status is S.NEW


async def test_reads_see_staged_writes_and_commit_makes_them_durable(
    store: Store, backend: Backend, opener: Callable[[], Awaitable[Store]]
) -> None:
    staged = record()
    store.stage(staged, events(1))
    store.stage_events(staged.id, events(2, 3))

    assert await store.get(staged.id) == staged
    assert [e.seq for e in await store.read_events(staged.id)] == [1, 2, 3]
    await store.commit()
    await store.commit()  # nothing staged: returns at once

    if backend.persistent:
        await store.close()
        reopened = await opener()
        assert await reopened.get(staged.id) == staged
        assert await reopened.read_events(staged.id) == events(1, 2, 3)


async def test_commit_returns_once_everything_staged_before_is_stored(
    store: Store, backend: Backend, opener: Callable[[], Awaitable[Store]]
) -> None:
    records = [record() for _ in range(5)]
    for i, r in enumerate(records):
        store.stage(r, events(1, 2, prefix=str(i)))

    await store.commit()

    reader = await opener() if backend.persistent else store
    for i, r in enumerate(records):
        assert await reader.get(r.id) == r
        assert await reader.read_events(r.id) == events(1, 2, prefix=str(i))


# ---- listing ---------------------------------------------------------------------------


async def history(store: Store) -> list[ExecutionRecord]:
    """Six runs, oldest first: two workflows, three statuses, two owners."""
    rows = [
        record(workflow_id="a", status=S.SUCCESS, owner="o1"),
        record(workflow_id="b", status=S.ERROR, owner="o1"),
        record(workflow_id="a", status=S.NEW, owner="o2"),
        record(workflow_id="a", status=S.SUCCESS, owner="o2"),
        record(workflow_id="b", status=S.SUCCESS, owner="o1"),
        record(workflow_id="a", status=S.ERROR),
    ]
    for row in rows:
        await store.save(row)
    return rows


def ids(records: list[ExecutionRecord]) -> list[str]:
    return [r.id for r in records]


async def test_list_is_newest_first_with_the_total_before_paging(store: Store) -> None:
    rows = await history(store)
    newest_first = ids(rows[::-1])

    page = await store.list(ExecutionQuery())
    assert ids(page.items) == newest_first and page.total == 6
    page = await store.list(ExecutionQuery(limit=2, offset=1))
    assert ids(page.items) == newest_first[1:3] and page.total == 6
    page = await store.list(ExecutionQuery(limit=5, offset=4))
    assert ids(page.items) == newest_first[4:] and page.total == 6
    page = await store.list(ExecutionQuery(offset=6))
    assert page.items == [] and page.total == 6


async def test_list_breaks_ties_of_creation_time_the_same_way_every_time(store: Store) -> None:
    same_time = [record(created_at=5) for _ in range(3)]
    for row in same_time:
        await store.save(row)

    first = ids((await store.list(ExecutionQuery())).items)
    paged = [ids((await store.list(ExecutionQuery(limit=1, offset=i))).items)[0] for i in range(3)]

    assert sorted(first) == sorted(ids(same_time))
    assert paged == first


@pytest.mark.parametrize(
    ("query", "expected", "total"),
    [
        (ExecutionQuery(workflow_id="a"), [5, 3, 2, 0], 4),
        (ExecutionQuery(status=S.SUCCESS), [4, 3, 0], 3),
        (ExecutionQuery(owner="o1"), [4, 1, 0], 3),
        (ExecutionQuery(workflow_id="a", status=S.SUCCESS, owner="o2"), [3], 1),
        (ExecutionQuery(workflow_id="b", status=S.NEW), [], 0),
        (ExecutionQuery(workflow_id="a", limit=1, offset=1), [3], 4),
    ],
)
async def test_list_filters_combine(
    store: Store, query: ExecutionQuery, expected: list[int], total: int
) -> None:
    rows = await history(store)

    page = await store.list(query)

    assert ids(page.items) == [rows[i].id for i in expected]
    assert page.total == total


async def test_list_finds_the_retries_of_a_run(store: Store) -> None:
    original, other = record(status=S.ERROR), record(status=S.ERROR)
    retries = [
        record(retry_of=original.id),
        record(retry_of=other.id),
        record(retry_of=original.id),
    ]
    for row in (original, other, *retries):
        await store.save(row)

    page = await store.list(ExecutionQuery(retry_of=original.id))

    assert ids(page.items) == [retries[2].id, retries[0].id] and page.total == 2
    assert (await store.list(ExecutionQuery(retry_of=original.id, workflow_id="x"))).total == 0


async def test_a_sqlite_file_from_before_retries_gains_their_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA.replace(", retry_of TEXT", ""))
    async with SqliteStore(path) as store:
        original = record(status=S.ERROR)
        retry = record(retry_of=original.id)
        await store.save(original)
        await store.save(retry)

        assert ids((await store.list(ExecutionQuery(retry_of=original.id))).items) == [retry.id]


async def test_list_sees_the_latest_status_of_a_record(store: Store) -> None:
    row = record()
    await store.save(row)
    row.status = S.RUNNING
    store.stage(row)

    assert ids((await store.list(ExecutionQuery(status=S.RUNNING))).items) == [row.id]
    assert (await store.list(ExecutionQuery(status=S.NEW))).total == 0


async def test_totals_follow_status_changes_and_deletes(store: Store) -> None:
    rows = [record(workflow_id="a", owner="o1"), record(workflow_id="a"), record()]
    for row in rows:
        await store.save(row)
    for status in (S.RUNNING, S.RUNNING, S.SUCCESS):  # an unchanged status counts once
        rows[0].status = status
        store.stage(rows[0])
    await store.save(rows[1])  # written again, as it was
    await store.delete([rows[0].id])  # finished: deleted
    await store.delete([rows[1].id])  # new: kept

    async def total(**filters: Any) -> int:
        return (await store.list(ExecutionQuery(**filters))).total

    assert await total() == 2
    assert await total(workflow_id="a") == 1
    assert await total(workflow_id="a", status=S.NEW) == 1
    assert await total(status=S.SUCCESS) == 0
    assert await total(owner="o1") == 0


async def test_a_sqlite_file_from_before_counts_counts_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    async with SqliteStore(path) as store:
        for row in (record(workflow_id="a"), record(workflow_id="a"), record(status=S.ERROR)):
            await store.save(row)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "DROP TABLE execution_counts; DROP TRIGGER executions_counted; "
            "DROP TRIGGER executions_uncounted; DROP TRIGGER executions_recounted;"
        )
    async with SqliteStore(path) as store:
        await store.save(record(workflow_id="a"))
        assert (await store.list(ExecutionQuery(workflow_id="a"))).total == 3
        assert (await store.list(ExecutionQuery(status=S.ERROR))).total == 1


#: How older versions counted (a row added by a select and an update).
_OLD_ADD = """INSERT INTO execution_counts SELECT NEW.workflow_id, NEW.status, NEW.owner, 0
    WHERE NOT EXISTS (SELECT 1 FROM execution_counts WHERE workflow_id = NEW.workflow_id
        AND status = NEW.status AND owner IS NEW.owner);
    UPDATE execution_counts SET n = n + 1
    WHERE workflow_id = NEW.workflow_id AND status = NEW.status AND owner IS NEW.owner;"""
_OLD_COUNTERS = f"""
DROP INDEX execution_counts_key; DROP TRIGGER executions_counted;
DROP TRIGGER executions_recounted;
CREATE INDEX execution_counts_by_workflow ON execution_counts (workflow_id, status);
CREATE TRIGGER executions_counted AFTER INSERT ON executions BEGIN {_OLD_ADD} END;
CREATE TRIGGER executions_recounted AFTER UPDATE OF status ON executions
WHEN OLD.status IS NOT NEW.status BEGIN
    UPDATE execution_counts SET n = n - 1
    WHERE workflow_id = OLD.workflow_id AND status = OLD.status AND owner IS OLD.owner;
    {_OLD_ADD}
END;"""


async def test_a_sqlite_file_with_older_counters_counts_on_with_this_versions(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    rows = [record(owner=None), record(owner=""), record(owner="o1"), record(status=S.ERROR)]
    async with SqliteStore(path) as store:
        for row in rows[:3]:
            await store.save(row)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(_OLD_COUNTERS)
    async with SqliteStore(path) as store:
        await store.save(rows[3])
        rows[0].status = S.SUCCESS
        await store.save(rows[0])
        await store.delete([rows[0].id])

        async def total(**filters: Any) -> int:
            return (await store.list(ExecutionQuery(**filters))).total

        assert await total() == 3
        assert await total(status=S.NEW) == 2
        assert await total(status=S.NEW, owner="") == 1
        assert await total(status=S.ERROR) == 1
        assert await total(status=S.SUCCESS) == 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "execution_counts_key" in names and "execution_counts_by_workflow" not in names


async def test_a_page_without_snapshots_leaves_the_workflow_out(store: Store) -> None:
    row = record(workflow={"id": "wf", "nodes": []})
    await store.save(row)

    [shown] = (await store.list(ExecutionQuery(snapshots=False))).items
    [full] = (await store.list(ExecutionQuery())).items

    assert shown.workflow == {} and shown.id == row.id
    assert full.workflow == {"id": "wf", "nodes": []}


# ---- status changes (as the workers make them: check, then write the whole record) ----


async def test_a_run_moved_along_a_legal_transition_reads_back_moved(store: Store) -> None:
    row = record()
    await store.save(row)

    check_transition(row.status, S.RUNNING)
    row.status = S.RUNNING
    await store.save(row)

    stored = await store.get(row.id)
    assert stored is not None and stored.status is S.RUNNING


async def test_a_refused_transition_leaves_the_stored_run_as_it_was(store: Store) -> None:
    row = record(status=S.SUCCESS)
    await store.save(row)

    with pytest.raises(IllegalTransition):
        check_transition(row.status, S.RUNNING)

    stored = await store.get(row.id)
    assert stored is not None and stored.status is S.SUCCESS


# ---- event logs ------------------------------------------------------------------------


async def test_read_events_returns_the_log_after_n_in_order(store: Store) -> None:
    row, other = record(), record()
    await store.save(row, events(1, 2))
    await store.save(other, events(1, 2, 3, prefix="other"))
    store.stage_events(row.id, events(3, 4, 5))

    assert await store.read_events(row.id) == events(1, 2, 3, 4, 5)
    assert await store.read_events(row.id, 2) == events(3, 4, 5)
    assert await store.read_events(row.id, 2, limit=2) == events(3, 4)
    assert await store.read_events(row.id, 5) == []
    assert await store.read_events("missing") == []


async def test_read_events_starts_inside_what_one_commit_logged(store: Store) -> None:
    row = record()
    await store.save(row, events(1, 2, 3))
    await store.save(row, events(4, 5))

    assert await store.read_events(row.id, 2) == events(3, 4, 5)
    assert await store.read_events(row.id, 1, limit=3) == events(2, 3, 4)


async def test_a_limited_read_spans_commits_and_takes_an_entry_logged_again(
    store: Store,
) -> None:
    row = record()
    for seqs in ((1, 2), (3, 4), (5, 6), (7, 8)):
        await store.save(row, events(*seqs))
    await store.save(row, events(3, prefix="again"))

    again = events(3, prefix="again")
    assert await store.read_events(row.id, 1, limit=4) == [*events(2), *again, *events(4, 5)]
    assert await store.read_events(row.id, 0, limit=2) == events(1, 2)
    assert await store.read_events(row.id, 4, limit=3) == events(5, 6, 7)


async def test_a_restaged_seq_replaces_its_log_entry(store: Store) -> None:
    row = record()
    await store.save(row, events(1, 2, 3))

    await store.save(row, events(3, prefix="again"))

    assert await store.read_events(row.id) == [*events(1, 2), *events(3, prefix="again")]


async def test_event_payloads_are_kept_byte_for_byte(store: Store) -> None:
    row = record()
    payload = '{"type":"x","data":{"s":"ü \\u0000 \\"q\\""}}'.encode()

    await store.save(row, [StoredEvent(1, "x", payload)])

    assert (await store.read_events(row.id))[0].payload == payload


# ---- workflows -------------------------------------------------------------------------


async def test_workflows_are_created_read_listed_replaced_and_deleted(store: Store) -> None:
    await store.create_workflow("one", {"id": "one", "name": "first"})
    await store.create_workflow("two", {"id": "two", "name": "second"})

    assert await store.get_workflow("one") == {"id": "one", "name": "first"}
    assert await store.get_workflow("missing") is None
    assert [w["id"] for w in await store.list_workflows()] == ["one", "two"]

    await store.put_workflow("one", {"id": "one", "name": "renamed"})
    assert await store.get_workflow("one") == {"id": "one", "name": "renamed"}

    assert await store.delete_workflow("one") is True
    assert await store.delete_workflow("one") is False
    assert await store.get_workflow("one") is None
    assert [w["id"] for w in await store.list_workflows()] == ["two"]


async def test_creating_a_taken_workflow_id_is_a_conflict(store: Store) -> None:
    await store.create_workflow("one", {"id": "one", "name": "first"})

    with pytest.raises(Conflict):
        await store.create_workflow("one", {"id": "one", "name": "other"})

    assert await store.get_workflow("one") == {"id": "one", "name": "first"}


async def test_putting_an_unknown_workflow_creates_nothing(store: Store) -> None:
    await store.put_workflow("ghost", {"id": "ghost"})

    assert await store.get_workflow("ghost") is None
    assert await store.list_workflows() == []


# ---- the status table ------------------------------------------------------------------

#: SPEC §3 statuses: queued runs start or are canceled; running ones end, pause or crash;
#: a waiting run is resumed (queued again) or canceled; finished runs never move.
EXPECTED: dict[ExecutionStatus, set[ExecutionStatus]] = {
    S.NEW: {S.RUNNING, S.CANCELED, S.CRASHED},
    S.RUNNING: {S.WAITING, S.SUCCESS, S.ERROR, S.CANCELED, S.CRASHED},
    S.WAITING: {S.NEW, S.CANCELED},
    S.SUCCESS: set(),
    S.ERROR: set(),
    S.CANCELED: set(),
    S.CRASHED: set(),
    S.UNKNOWN: set(),
}


@pytest.mark.parametrize("current", list(S))
def test_the_transition_table_row(current: ExecutionStatus) -> None:
    assert set(TRANSITIONS[current]) == EXPECTED[current]
    for target in S:
        if target in EXPECTED[current]:
            check_transition(current, target)
        else:
            with pytest.raises(IllegalTransition, match=f"{current.value}.*{target.value}"):
                check_transition(current, target)


def test_finished_statuses_are_those_with_no_way_out() -> None:
    assert {s for s in S if s.finished} == {s for s in S if not EXPECTED[s]}


# ---- flatted ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "[{}]"),
        ([], "[[]]"),
        ("x", '["x"]'),
        (1, "[1]"),
        (None, "[null]"),
        (
            {"a": "x", "b": ["x", 1, None, {"c": True}]},
            '[{"a":"1","b":"2"},"x",["1",1,null,"3"],{"c":true}]',
        ),
        (["x", "x", "y"], '[["1","1","2"],"x","y"]'),
        ({"n": {"m": {}}}, '[{"n":"1"},{"m":"2"},{}]'),
        ({"é": "ü"}, '[{"é":"1"},"ü"]'),
    ],
)
def test_flatted_stringify_matches_the_flatted_library(value: Any, expected: str) -> None:
    assert stringify(value) == expected


def test_flatted_stores_a_shared_object_once() -> None:
    shared: dict[str, Any] = {"k": 1}

    assert stringify([shared, shared]) == '[["1","1"],{"k":1}]'


# ---- the webhook outbox (SPEC §11) -------------------------------------------------------


def delivery(execution_id: str, n: int, due: int = 1_000) -> WebhookDelivery:
    return WebhookDelivery(
        id=f"msg_{execution_id}_{n}",
        execution_id=execution_id,
        event="execution.finished",
        url="https://example.com/hook",
        payload=b'{"type":"execution.finished"}',
        created_at=due,
        next_attempt_at=due,
    )


async def test_outbox_rows_commit_with_the_status_they_report(store: Store) -> None:
    run = record(status=S.SUCCESS)
    store.stage(run)
    store.stage_webhooks([delivery(run.id, 1)])
    await store.commit()
    assert [d.id for d in await store.list_webhooks(run.id)] == [f"msg_{run.id}_1"]
    assert await store.list_webhooks("another") == []


async def test_a_claimed_delivery_is_held_until_saved_or_its_lease_ends(store: Store) -> None:
    run = record(status=S.SUCCESS)
    store.stage(run)
    store.stage_webhooks([delivery(run.id, 1, due=1_000), delivery(run.id, 2, due=5_000)])
    await store.commit()
    claimed = await store.claim_webhooks(2_000, 60_000, 10)
    assert [d.id for d in claimed] == [f"msg_{run.id}_1"]  # the other is not due yet
    assert await store.claim_webhooks(3_000, 60_000, 10) == []  # held by the claim
    assert [d.id for d in await store.claim_webhooks(62_000, 60_000, 1)] == [claimed[0].id]

    first = claimed[0]
    first.after(Attempt(62_000, status_code=500), [10.0], final=False)
    await store.save_webhook(first)  # released, due again 10 s after that attempt
    assert [d.id for d in await store.claim_webhooks(70_000, 60_000, 10)] == [f"msg_{run.id}_2"]
    again = await store.claim_webhooks(72_000, 60_000, 10)
    assert [(d.id, d.attempts) for d in again] == [(first.id, [Attempt(62_000, 500)])]
    again[0].after(Attempt(72_000, status_code=204), [10.0], final=False)
    await store.save_webhook(again[0])
    await store.release_webhook_claims()
    assert [d.id for d in await store.claim_webhooks(99_000, 60_000, 10)] == [f"msg_{run.id}_2"]
    listed = {d.id: d.status for d in await store.list_webhooks(run.id)}
    assert listed == {first.id: "delivered", f"msg_{run.id}_2": "pending"}


#: The stores several processes open at once (a memory store belongs to one process).
SHARED = [b for b in BACKENDS if b.persistent]


@pytest.mark.parametrize("backend", SHARED, ids=lambda b: b.name, indirect=True)
async def test_concurrent_claims_never_share_a_delivery(
    opener: Callable[[], Awaitable[Store]],
) -> None:
    first, second = await opener(), await opener()
    run = record(status=S.SUCCESS)
    first.stage(run)
    first.stage_webhooks([delivery(run.id, n) for n in range(40)])
    await first.commit()
    claims = await asyncio.gather(
        *(s.claim_webhooks(2_000, 60_000, 7) for s in [first, second] * 4)
    )
    ids = [d.id for claim in claims for d in claim]
    assert len(ids) == len(set(ids)) == 40


async def test_pruning_a_run_deletes_its_webhook_deliveries(store: Store) -> None:
    done, kept = record(status=S.SUCCESS), record(status=S.SUCCESS)
    for run in (done, kept):
        store.stage(run)
        store.stage_webhooks([delivery(run.id, 1)])
    await store.commit()
    assert await store.delete([done.id]) == 1
    assert await store.list_webhooks(done.id) == []
    assert [d.id for d in await store.list_webhooks(kept.id)] == [f"msg_{kept.id}_1"]
    assert [d.id for d in await store.claim_webhooks(2_000, 60_000, 10)] == [f"msg_{kept.id}_1"]
