"""The SQLite store on a real file: migrations, transactions, events and the task queue."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from bot.models import NewEvent, Repo, Task, new_id, now_us
from bot.store.migrations import MIGRATIONS
from bot.store.sqlite import SqliteStore
from phases.machine import WORKING, Gate, Outcome, Phase

WS = "ws-test"
_clock = itertools.count(1_700_000_000_000_000)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nimbus.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path)
    await store.open()
    await store.ensure_workspace(WS, "test")
    yield store
    await store.close()


@pytest.fixture
async def repo(store: SqliteStore) -> Repo:
    return await add_repo(store, "https://example.com/octo/calc.git")


async def add_repo(store: SqliteStore, url: str, workspace_id: str = WS) -> Repo:
    return await store.add_repo(Repo(new_id("repo"), workspace_id, url, None, now_us()))


def make_task(
    repo: Repo, phase: Phase = Phase.QUEUED, *, created_us: int | None = None, **fields
) -> Task:
    """A task whose creation times strictly increase from one call to the next."""
    created = next(_clock) if created_us is None else created_us
    return Task(
        id=fields.pop("id", None) or new_id("task"),
        workspace_id=repo.workspace_id,
        repo_id=repo.id,
        description="Add multiply",
        phase=phase,
        created_us=created,
        updated_us=created,
        **fields,
    )


def phase_event(phase: Phase) -> NewEvent:
    return NewEvent("phase", {"phase": str(phase)})


def raw(db_path: Path, sql: str) -> list[tuple]:
    """Read the file with a separate, plain sqlite3 connection."""
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_migrations_set_user_version(store, db_path):
    assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_reopening_a_migrated_file_changes_nothing(store, repo, db_path):
    task = await store.create_task(make_task(repo), [phase_event(Phase.QUEUED)])
    await store.close()
    again = SqliteStore(db_path)
    await again.open()
    try:
        assert raw(db_path, "PRAGMA user_version") == [(len(MIGRATIONS),)]
        assert await again.get_task(task.id) == task
        assert [w.id for w in await again.list_workspaces()] == [WS]
    finally:
        await again.close()


async def test_journal_mode_is_wal(store, db_path):
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]


async def test_created_task_reads_back_as_given(store, repo):
    given = make_task(repo, skill_name="docs", agent_name="aider", source={"issue": 7})
    stored = await store.create_task(given, [])
    assert stored == given
    assert stored.status == "queued"


async def test_events_are_numbered_from_one_without_gaps(store, repo):
    task = await store.create_task(
        make_task(repo), [phase_event(Phase.QUEUED), NewEvent("log", {"message": "queued"})]
    )
    assert task.last_seq == 2
    appended = await store.append_events(task.id, [NewEvent("log", {"message": "more"})])
    assert [e.seq for e in appended] == [3]
    updated = await store.update_task(
        task.id,
        expect={"phase": Phase.QUEUED},
        changes={"phase": Phase.CLONING},
        events=[phase_event(Phase.CLONING), NewEvent("log", {"message": "cloning"})],
    )
    assert updated is not None
    assert updated.last_seq == 5
    events = await store.events_after(task.id, 0)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.event_type for e in events] == ["phase", "log", "log", "phase", "log"]
    assert events[3].fields == {"phase": "CLONING"}
    assert [e.seq for e in await store.events_after(task.id, 3)] == [4, 5]
    assert [e.seq for e in await store.events_after(task.id, 0, limit=2)] == [1, 2]


async def test_events_of_an_unknown_task_are_not_stored(store):
    assert await store.append_events("task-missing", [NewEvent("log", {"message": "x"})]) == []


async def test_update_applies_changes_and_recomputes_the_status(store, repo):
    task = await store.create_task(make_task(repo, Phase.PLANNING), [])
    plan = [{"title": "Add multiply()", "files": ["calc.py"], "detail": ""}]
    updated = await store.update_task(
        task.id,
        expect={"phase": Phase.PLANNING, "approval": None},
        changes={"phase": Phase.AWAITING_APPROVAL, "approval": Gate.PLAN, "plan": plan},
    )
    assert updated is not None
    assert (updated.phase, updated.approval, updated.plan) == (
        Phase.AWAITING_APPROVAL,
        Gate.PLAN,
        plan,
    )
    assert updated.status == "awaiting_approval"
    assert updated.updated_us > task.updated_us
    stored_status = await store.list_tasks(
        WS, status="awaiting_approval", repo_id=None, limit=10, before=None
    )
    assert [t.id for t in stored_status] == [task.id]


async def test_decided_cancel_is_stored_as_cancelled_during_cleanup(store, repo):
    task = await store.create_task(make_task(repo, Phase.IMPLEMENTING), [])
    await store.update_task(
        task.id,
        expect={"phase": Phase.IMPLEMENTING},
        changes={"phase": Phase.CLEANUP, "outcome": Outcome.CANCELLED},
    )
    cancelled = await store.list_tasks(WS, status="cancelled", repo_id=None, limit=10, before=None)
    assert [t.id for t in cancelled] == [task.id]


async def test_update_whose_expectation_fails_changes_nothing(store, repo):
    task = await store.create_task(make_task(repo, Phase.PLANNING), [phase_event(Phase.PLANNING)])
    result = await store.update_task(
        task.id,
        expect={"phase": Phase.QUEUED},
        changes={"phase": Phase.CLONING, "error": "should not be stored"},
        events=[phase_event(Phase.CLONING)],
    )
    assert result is None
    assert await store.get_task(task.id) == task
    assert [e.seq for e in await store.events_after(task.id, 0)] == [1]


async def test_update_of_an_unknown_task_returns_none(store):
    assert await store.update_task("task-missing", expect={}, changes={"error": "x"}) is None


async def test_failing_write_rolls_back_the_whole_transaction(store, repo):
    """The UPDATE has run when the event fails to serialise; neither may be kept."""
    task = await store.create_task(make_task(repo), [phase_event(Phase.QUEUED)])
    with pytest.raises(TypeError):
        await store.update_task(
            task.id,
            expect={"phase": Phase.QUEUED},
            changes={"phase": Phase.CLONING},
            events=[phase_event(Phase.CLONING), NewEvent("log", {"bad": object()})],
        )
    assert await store.get_task(task.id) == task
    assert [e.seq for e in await store.events_after(task.id, 0)] == [1]
    # The shared writer connection is left outside any transaction, ready for the next write.
    moved = await store.update_task(
        task.id, expect={"phase": Phase.QUEUED}, changes={"phase": Phase.CLONING}
    )
    assert moved is not None
    assert moved.phase == Phase.CLONING


async def test_write_lock_keeps_one_coroutines_work_out_of_anothers_commit(store, db_path):
    half_done = asyncio.Event()
    fail_now = asyncio.Event()

    async def failing(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            "INSERT INTO workspaces (id, name, created_us) VALUES ('ws-half', 'half', 1)"
        )
        half_done.set()
        await fail_now.wait()
        raise RuntimeError("failed halfway")

    async def succeeding(conn: aiosqlite.Connection) -> str:
        await conn.execute(
            "INSERT INTO workspaces (id, name, created_us) VALUES ('ws-ok', 'ok', 2)"
        )
        return "committed"

    first = asyncio.create_task(store._write(failing))
    await half_done.wait()
    second = asyncio.create_task(store._write(succeeding))
    await asyncio.sleep(0.1)
    assert not second.done(), "a second write ran inside the first one's transaction"
    fail_now.set()
    with pytest.raises(RuntimeError, match="failed halfway"):
        await first
    assert await second == "committed"
    ids = {row[0] for row in raw(db_path, "SELECT id FROM workspaces")}
    assert "ws-ok" in ids
    assert "ws-half" not in ids


async def test_cancelled_caller_does_not_leave_a_transaction_open(store, repo):
    started = asyncio.Event()
    go_on = asyncio.Event()

    async def slow(conn: aiosqlite.Connection) -> None:
        started.set()
        await go_on.wait()
        await conn.execute("UPDATE repos SET default_branch = 'main' WHERE id = ?", (repo.id,))

    caller = asyncio.create_task(store._write(slow))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    go_on.set()
    # The next write waits for the shielded transaction to finish, then works.
    task = await asyncio.wait_for(store.create_task(make_task(repo), []), 5)
    assert task.phase == Phase.QUEUED
    assert (await store.get_repo(repo.id)).default_branch == "main"


async def test_four_stores_claiming_concurrently_claim_each_task_once(store, repo, db_path):
    tasks = [make_task(repo) for _ in range(100)]
    for task in tasks:
        await store.create_task(task, [])
    workers = [SqliteStore(db_path) for _ in range(4)]
    for worker in workers:
        await worker.open()

    async def claim_all(worker: SqliteStore, name: str) -> list[str]:
        claimed = []
        while task := await worker.claim_task(name, lease_until=2e9, now=1e9):
            assert task.lease_owner == name
            claimed.append(task.id)
            await asyncio.sleep(0)
        return claimed

    try:
        results = await asyncio.gather(
            *(claim_all(worker, f"worker-{i}") for i, worker in enumerate(workers))
        )
    finally:
        for worker in workers:
            await worker.close()
    claimed = [task_id for result in results for task_id in result]
    assert sorted(claimed) == sorted(t.id for t in tasks)
    owners = dict(raw(db_path, "SELECT id, lease_owner FROM tasks"))
    for i, result in enumerate(results):
        assert all(owners[task_id] == f"worker-{i}" for task_id in result)


async def test_oldest_runnable_task_is_claimed_first(store, repo):
    older = await store.create_task(make_task(repo), [])
    await store.create_task(make_task(repo), [])
    claimed = await store.claim_task("w1", lease_until=160.0, now=100.0)
    assert claimed is not None
    assert (claimed.id, claimed.lease_owner, claimed.lease_expires) == (older.id, "w1", 160.0)


async def test_task_with_unexpired_lease_is_not_claimable(store, repo):
    await store.create_task(make_task(repo), [])
    assert await store.claim_task("w1", lease_until=160.0, now=100.0) is not None
    assert await store.claim_task("w2", lease_until=219.0, now=159.0) is None


async def test_expired_lease_can_be_claimed(store, repo):
    task = await store.create_task(make_task(repo), [])
    await store.claim_task("w1", lease_until=160.0, now=100.0)
    claimed = await store.claim_task("w2", lease_until=221.0, now=161.0)
    assert claimed is not None
    assert (claimed.id, claimed.lease_owner, claimed.lease_expires) == (task.id, "w2", 221.0)


async def test_waiting_and_ended_tasks_are_never_claimed(store, repo):
    for phase in (Phase.AWAITING_APPROVAL, Phase.DONE, Phase.FAILED):
        await store.create_task(make_task(repo, phase), [])
    assert await store.claim_task("w1", lease_until=2e9, now=1e9) is None
    runnable = await store.create_task(make_task(repo, Phase.QUEUED), [])
    claimed = await store.claim_task("w1", lease_until=2e9, now=1e9)
    assert claimed is not None
    assert claimed.id == runnable.id
    assert await store.claim_task("w1", lease_until=2e9, now=1e9) is None


@pytest.mark.parametrize("phase", sorted(WORKING))
async def test_every_working_phase_is_claimable(store, repo, phase):
    task = await store.create_task(make_task(repo, phase), [])
    claimed = await store.claim_task("w1", lease_until=2e9, now=1e9)
    assert claimed is not None
    assert claimed.id == task.id


async def test_renew_lease_extends_the_owners_lease(store, repo):
    task = await store.create_task(make_task(repo), [])
    await store.claim_task("w1", lease_until=160.0, now=100.0)
    renewed = await store.renew_lease(task.id, "w1", 220.0)
    assert renewed is not None
    assert (renewed.lease_owner, renewed.lease_expires) == ("w1", 220.0)


async def test_renew_lease_returns_none_for_a_non_owner(store, repo):
    task = await store.create_task(make_task(repo), [])
    await store.claim_task("w1", lease_until=160.0, now=100.0)
    assert await store.renew_lease(task.id, "w2", 999.0) is None
    unchanged = await store.get_task(task.id)
    assert (unchanged.lease_owner, unchanged.lease_expires) == ("w1", 160.0)
    assert await store.renew_lease("task-missing", "w1", 999.0) is None


async def test_release_leases_frees_only_that_workers_tasks(store, repo):
    mine = [await store.create_task(make_task(repo), []) for _ in range(2)]
    theirs = await store.create_task(make_task(repo), [])
    for _ in mine:
        await store.claim_task("w1", lease_until=2e9, now=1e9)
    await store.claim_task("w2", lease_until=2e9, now=1e9)

    assert await store.release_leases("w1") == 2
    for task in mine:
        released = await store.get_task(task.id)
        assert (released.lease_owner, released.lease_expires) == (None, None)
    assert (await store.get_task(theirs.id)).lease_owner == "w2"
    reclaimed = await store.claim_task("w3", lease_until=2e9, now=1e9)
    assert reclaimed is not None
    assert reclaimed.id == mine[0].id
    assert await store.release_leases("nobody") == 0


async def test_list_tasks_newest_first(store, repo):
    tasks = [await store.create_task(make_task(repo), []) for _ in range(4)]
    listed = await store.list_tasks(WS, status=None, repo_id=None, limit=50, before=None)
    assert [t.id for t in listed] == [t.id for t in reversed(tasks)]
    limited = await store.list_tasks(WS, status=None, repo_id=None, limit=2, before=None)
    assert [t.id for t in limited] == [tasks[3].id, tasks[2].id]


async def test_list_tasks_filters_by_status_and_repo(store, repo):
    other_repo = await add_repo(store, "https://example.com/octo/other.git")
    queued = await store.create_task(make_task(repo), [])
    running = await store.create_task(make_task(repo, Phase.CLONING), [])
    elsewhere = await store.create_task(make_task(other_repo), [])

    async def ids(**filters) -> list[str]:
        found = await store.list_tasks(
            WS, **{"status": None, "repo_id": None, **filters}, limit=50, before=None
        )
        return [t.id for t in found]

    assert await ids(status="queued") == [elsewhere.id, queued.id]
    assert await ids(status="running") == [running.id]
    assert await ids(repo_id=repo.id) == [running.id, queued.id]
    assert await ids(status="queued", repo_id=other_repo.id) == [elsewhere.id]
    assert await ids(status="completed") == []


async def test_list_tasks_shows_only_the_workspace_asked_for(store, repo):
    await store.ensure_workspace("ws-other", "other")
    foreign_repo = await add_repo(store, repo.url, workspace_id="ws-other")
    mine = await store.create_task(make_task(repo), [])
    await store.create_task(make_task(foreign_repo), [])
    listed = await store.list_tasks(WS, status=None, repo_id=None, limit=50, before=None)
    assert [t.id for t in listed] == [mine.id]


async def test_list_tasks_before_cursor_pages_through_all(store, repo):
    tasks = [await store.create_task(make_task(repo), []) for _ in range(5)]
    seen, cursor = [], None
    while page := await store.list_tasks(WS, status=None, repo_id=None, limit=2, before=cursor):
        seen += [t.id for t in page]
        cursor = (page[-1].created_us, page[-1].id)
    assert seen == [t.id for t in reversed(tasks)]


async def test_before_cursor_breaks_ties_on_creation_time_by_id(store, repo):
    same = next(_clock)
    a = await store.create_task(make_task(repo, created_us=same, id="task-aaaa"), [])
    b = await store.create_task(make_task(repo, created_us=same, id="task-bbbb"), [])
    older = await store.create_task(make_task(repo, created_us=same - 1), [])
    page = await store.list_tasks(WS, status=None, repo_id=None, limit=1, before=None)
    assert [t.id for t in page] == [b.id]
    rest = await store.list_tasks(WS, status=None, repo_id=None, limit=50, before=(same, b.id))
    assert [t.id for t in rest] == [a.id, older.id]


async def test_adding_a_repo_twice_returns_the_first(store, repo):
    again = await add_repo(store, repo.url)
    assert again == repo
    assert [r.id for r in await store.list_repos(WS)] == [repo.id]


async def test_same_url_in_another_workspace_is_another_repo(store, repo):
    await store.ensure_workspace("ws-other", "other")
    other = await add_repo(store, repo.url, workspace_id="ws-other")
    assert other.id != repo.id
    assert await store.find_repo("ws-other", repo.url) == other


async def test_default_branch_is_set_once(store, repo):
    await store.set_default_branch(repo.id, "main")
    await store.set_default_branch(repo.id, "develop")
    assert (await store.get_repo(repo.id)).default_branch == "main"


async def test_recording_a_delivery_twice_is_false_the_second_time(store):
    assert await store.record_delivery("d-1", "issue_comment", b"{}") is True
    assert await store.record_delivery("d-1", "issue_comment", b"{}") is False
    assert await store.record_delivery("d-2", "issue_comment", b"{}") is True


async def test_deliveries_arriving_together_are_stored_once_each(store):
    ids = [f"d-{i % 40}" for i in range(100)]  # 40 deliveries, most of them sent again at once
    results = await asyncio.gather(
        *(store.record_delivery(d, "issue_comment", d.encode()) for d in ids)
    )
    assert sum(results) == 40
    assert {d for d, new in zip(ids, results, strict=True) if new} == set(ids)
    claimed, finished = [], []
    while found := await store.take_deliveries(
        "w", time.time() + 60, time.time(), finished=finished
    ):
        claimed += found
        finished = [(d, "boom" if d == "d-7" else None) for d, _, _ in found]
    await store.take_deliveries("w", 0, 0, finished=finished, limit=0)
    assert sorted(d for d, _, _ in claimed) == sorted(set(ids))
    assert all(payload == d.encode() for d, _, payload in claimed)
    # Redelivered: the one that failed is taken again, the ones that succeeded are not.
    again = await asyncio.gather(
        store.record_delivery("d-7", "issue_comment", b"x"),
        store.record_delivery("d-8", "issue_comment", b"x"),
    )
    assert again == [True, False]


async def test_ensure_workspace_is_idempotent(store):
    first = await store.ensure_workspace(WS, "renamed")
    assert first.name == "test"
    assert [w.id for w in await store.list_workspaces()] == [WS]


async def test_api_keys_map_to_their_workspace(store):
    await store.add_api_key(WS, "hash-1", "ci")
    assert await store.workspace_for_key("hash-1") == WS
    assert await store.workspace_for_key("hash-2") is None


async def test_deliveries_are_taken_in_batches_oldest_first(store):
    for n in range(5):
        await store.record_delivery(f"d-{n}", "issue_comment", f"payload {n}".encode())
    now = time.time()
    first = await store.take_deliveries("w", now + 60, now, limit=3)
    assert [(d, p) for d, _, p in first] == [(f"d-{n}", f"payload {n}".encode()) for n in range(3)]
    # Marking the batch processed and leasing the next happen in one call.
    rest = await store.take_deliveries(
        "w", now + 60, now, finished=[("d-0", None), ("d-1", "boom"), ("d-2", None)], limit=3
    )
    assert [d for d, _, _ in rest] == ["d-3", "d-4"]
    rows = await store._fetchall(
        "SELECT delivery_id, processed_us IS NOT NULL AS done, error, lease_owner"
        " FROM webhook_deliveries ORDER BY delivery_id"
    )
    assert [tuple(r) for r in rows] == [
        ("d-0", 1, None, None),
        ("d-1", 1, "boom", None),
        ("d-2", 1, None, None),
        ("d-3", 0, None, "w"),
        ("d-4", 0, None, "w"),
    ]


async def test_a_delivery_handed_back_is_taken_again_at_once(store):
    await store.record_delivery("d-1", "issue_comment", b"{}")
    now = time.time()
    assert [d for d, _, _ in await store.take_deliveries("w1", now + 600, now)] == ["d-1"]
    # Leased by w1: another worker gets nothing until w1 hands it back.
    assert await store.take_deliveries("w2", now + 600, now) == []
    await store.take_deliveries("w1", now + 600, now, released=["d-1"], limit=0)
    assert [d for d, _, _ in await store.take_deliveries("w2", now + 600, now)] == ["d-1"]
    # A worker cannot hand back what another holds.
    await store.take_deliveries("w1", now + 600, now, released=["d-1"], limit=0)
    assert await store.take_deliveries("w1", now + 600, now) == []
