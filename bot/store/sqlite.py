"""The embedded store: SQLite in WAL mode, one writer, single-statement claims."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.models import Event, NewEvent, Repo, Task, Workspace, new_id, now_us
from bot.store import TASK_COLUMNS
from bot.store.checkpoint import PRAGMAS, Checkpointer
from bot.store.deliveries import DeliveryLog
from bot.store.migrations import MIGRATIONS
from phases.machine import WORKING, Gate, Outcome, Phase, status_for

T = TypeVar("T")

_JSON_COLUMNS = frozenset({"source", "plan", "verification", "review", "usage", "state"})
_BOOL_COLUMNS = frozenset({"auto_approve", "cancel_requested"})
# Every column but the diff, which can be large and is read on its own.
_TASK_SELECT = (
    "id, workspace_id, repo_id, description, phase, status, approval, outcome, auto_approve,"
    " skill_name, agent_name, branch, source, plan, verification, review, usage, pr_url, error,"
    " feedback, fix_attempts, review_fixes, cancel_requested, state, diff IS NOT NULL AS has_diff,"
    " source_key,"
    " lease_owner, lease_expires, last_seq, created_us, updated_us"
)
_RUNNABLE = ", ".join(f"'{p}'" for p in sorted(WORKING))


def _encode(column: str, value: Any) -> Any:
    if column in _JSON_COLUMNS:
        return None if value is None else json.dumps(value)
    if column in _BOOL_COLUMNS:
        return int(bool(value))
    return str(value) if isinstance(value, Phase | Gate | Outcome) else value


def _task(row: aiosqlite.Row) -> Task:
    return Task(
        id=row["id"],
        workspace_id=row["workspace_id"],
        repo_id=row["repo_id"],
        description=row["description"],
        phase=Phase(row["phase"]),
        approval=Gate(row["approval"]) if row["approval"] else None,
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        auto_approve=bool(row["auto_approve"]),
        skill_name=row["skill_name"],
        agent_name=row["agent_name"],
        branch=row["branch"],
        source=json.loads(row["source"]) if row["source"] else None,
        plan=json.loads(row["plan"]) if row["plan"] else None,
        verification=json.loads(row["verification"]) if row["verification"] else None,
        review=json.loads(row["review"]) if row["review"] else None,
        usage=json.loads(row["usage"]),
        pr_url=row["pr_url"],
        error=row["error"],
        feedback=row["feedback"],
        fix_attempts=row["fix_attempts"],
        review_fixes=row["review_fixes"],
        cancel_requested=bool(row["cancel_requested"]),
        state=json.loads(row["state"]),
        has_diff=bool(row["has_diff"]),
        source_key=row["source_key"],
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        last_seq=row["last_seq"],
        created_us=row["created_us"],
        updated_us=row["updated_us"],
    )


def _event(task_id: str, row: aiosqlite.Row) -> Event:
    return Event(
        task_id=task_id,
        seq=row["seq"],
        event_type=row["event_type"],
        ts_us=row["ts_us"],
        fields=json.loads(row["fields"]),
    )


class SqliteStore:
    """`Store` on one SQLite file: a writer connection behind a lock, and a reader connection."""

    def __init__(self, path: Path, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        # Writes share one connection, so one coroutine's commit must never include another's
        # half-done statements: every write transaction holds this lock from BEGIN to COMMIT.
        self._write_lock = asyncio.Lock()
        # Webhook deliveries, on a connection and thread of their own (bot/store/deliveries.py).
        self._deliveries: DeliveryLog | None = None
        self._checkpointer: Checkpointer | None = None

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        for pragma in PRAGMAS:  # checkpoints among them: left to the checkpointer's thread
            await conn.execute(pragma)
        return conn

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._writer.execute("PRAGMA journal_mode = WAL")
        await self._migrate()
        self._reader = await self._connect()
        self._checkpointer = Checkpointer(
            self.path, busy_timeout_ms=self.busy_timeout_ms, write_lock=self._write_lock
        )
        await self._checkpointer.start()
        self._deliveries = DeliveryLog(
            self.path,
            busy_timeout_ms=self.busy_timeout_ms,
            write_lock=self._write_lock,
            committed=self._checkpointer.written,
        )
        await self._deliveries.open()

    async def close(self) -> None:
        if self._deliveries is not None:
            await self._deliveries.close()
            self._deliveries = None
        if self._checkpointer is not None:
            await self._checkpointer.stop()
            self._checkpointer = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _migrate(self) -> None:
        async def apply(conn: aiosqlite.Connection) -> None:
            async with conn.execute("PRAGMA user_version") as cur:
                (version,) = await cur.fetchone()
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    await conn.execute(statement)
                await conn.execute(f"PRAGMA user_version = {number}")

        await self._write(apply)

    async def _write(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        # Shielded: a cancelled caller must not leave a transaction open on the shared connection.
        return await asyncio.shield(self._transaction(work))

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        assert self._writer is not None, "store is not open"
        async with self._write_lock:
            conn = self._writer
            # IMMEDIATE takes the write lock up front, so another process cannot slip a commit
            # in between this transaction's read and its write.
            await conn.execute("BEGIN IMMEDIATE")
            try:
                result = await work(conn)
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        if self._checkpointer is not None:
            self._checkpointer.written()
        return result

    async def _fetchall(
        self, sql: str, params: Sequence[Any] = (), conn: aiosqlite.Connection | None = None
    ) -> list[aiosqlite.Row]:
        """Run a query to completion in one call. A cursor left open across awaits would keep
        the shared reader's snapshot alive, and later reads would miss newer commits."""
        conn = conn or self._reader
        assert conn is not None, "store is not open"
        return list(await conn.execute_fetchall(sql, params))

    async def _fetchone(
        self, sql: str, params: Sequence[Any] = (), conn: aiosqlite.Connection | None = None
    ) -> aiosqlite.Row | None:
        rows = await self._fetchall(sql, params, conn)
        return rows[0] if rows else None

    async def _task_in(self, conn: aiosqlite.Connection, task_id: str) -> Task | None:
        row = await self._fetchone(
            f"SELECT {_TASK_SELECT} FROM tasks WHERE id = ?", (task_id,), conn
        )
        return _task(row) if row else None

    # Workspaces and keys

    async def ensure_workspace(self, workspace_id: str, name: str) -> Workspace:
        created = now_us()

        async def work(conn: aiosqlite.Connection) -> Workspace:
            await conn.execute(
                "INSERT OR IGNORE INTO workspaces (id, name, created_us) VALUES (?, ?, ?)",
                (workspace_id, name, created),
            )
            row = await self._fetchone(
                "SELECT * FROM workspaces WHERE id = ?", (workspace_id,), conn
            )
            assert row is not None
            return Workspace(row["id"], row["name"], row["created_us"])

        return await self._write(work)

    async def create_workspace(self, name: str) -> Workspace:
        return await self.ensure_workspace(new_id("ws"), name)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        row = await self._fetchone("SELECT * FROM workspaces WHERE id = ?", (workspace_id,))
        return Workspace(row["id"], row["name"], row["created_us"]) if row else None

    async def list_workspaces(self) -> list[Workspace]:
        rows = await self._fetchall("SELECT * FROM workspaces ORDER BY created_us")
        return [Workspace(r["id"], r["name"], r["created_us"]) for r in rows]

    async def add_api_key(self, workspace_id: str, key_hash: str, label: str) -> None:
        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO api_keys (key_hash, workspace_id, label, created_us)"
                " VALUES (?, ?, ?, ?)",
                (key_hash, workspace_id, label, now_us()),
            )

        await self._write(work)

    async def workspace_for_key(self, key_hash: str) -> str | None:
        row = await self._fetchone(
            "SELECT workspace_id FROM api_keys WHERE key_hash = ?", (key_hash,)
        )
        return row["workspace_id"] if row else None

    # Repositories

    async def add_repo(self, repo: Repo) -> Repo:
        """Register `repo`, or return the one already registered with its URL."""

        async def work(conn: aiosqlite.Connection) -> Repo:
            await conn.execute(
                "INSERT INTO repos (id, workspace_id, url, default_branch, created_us, github)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, url) DO UPDATE SET"
                " github = excluded.github WHERE excluded.github IS NOT NULL",
                (
                    repo.id,
                    repo.workspace_id,
                    repo.url,
                    repo.default_branch,
                    repo.created_us,
                    json.dumps(repo.github) if repo.github else None,
                ),
            )
            row = await self._fetchone(
                "SELECT * FROM repos WHERE workspace_id = ? AND url = ?",
                (repo.workspace_id, repo.url),
                conn,
            )
            assert row is not None
            return self._repo(row)

        return await self._write(work)

    @staticmethod
    def _repo(row: aiosqlite.Row) -> Repo:
        github = json.loads(row["github"]) if row["github"] else None
        return Repo(
            row["id"],
            row["workspace_id"],
            row["url"],
            row["default_branch"],
            row["created_us"],
            github,
        )

    async def get_repo(self, repo_id: str) -> Repo | None:
        row = await self._fetchone("SELECT * FROM repos WHERE id = ?", (repo_id,))
        return self._repo(row) if row else None

    async def find_repo(self, workspace_id: str, url: str) -> Repo | None:
        row = await self._fetchone(
            "SELECT * FROM repos WHERE workspace_id = ? AND url = ?", (workspace_id, url)
        )
        return self._repo(row) if row else None

    async def list_repos(self, workspace_id: str) -> list[Repo]:
        rows = await self._fetchall(
            "SELECT * FROM repos WHERE workspace_id = ? ORDER BY created_us", (workspace_id,)
        )
        return [self._repo(r) for r in rows]

    async def set_default_branch(self, repo_id: str, branch: str) -> None:
        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "UPDATE repos SET default_branch = ? WHERE id = ? AND default_branch IS NULL",
                (branch, repo_id),
            )

        await self._write(work)

    # Tasks and their events

    async def create_task(self, task: Task, events: Sequence[NewEvent]) -> Task:
        async def work(conn: aiosqlite.Connection) -> Task | None:
            await conn.execute(
                "INSERT INTO tasks (id, workspace_id, repo_id, description, phase, status,"
                " auto_approve, skill_name, agent_name, source, usage, state, last_seq,"
                " created_us, updated_us, source_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    task.workspace_id,
                    task.repo_id,
                    task.description,
                    str(task.phase),
                    task.status,
                    int(task.auto_approve),
                    task.skill_name,
                    task.agent_name,
                    _encode("source", task.source),
                    _encode("usage", task.usage),
                    _encode("state", task.state),
                    len(events),
                    task.created_us,
                    task.updated_us,
                    task.source_key,
                ),
            )
            await self._insert_events(conn, task.id, 0, events)
            return await self._task_in(conn, task.id)

        created = await self._write(work)
        assert created is not None
        return created

    async def get_task(self, task_id: str) -> Task | None:
        row = await self._fetchone(f"SELECT {_TASK_SELECT} FROM tasks WHERE id = ?", (task_id,))
        return _task(row) if row else None

    async def get_diff(self, task_id: str) -> str | None:
        row = await self._fetchone("SELECT diff FROM tasks WHERE id = ?", (task_id,))
        return row["diff"] if row else None

    async def list_tasks(
        self,
        workspace_id: str,
        *,
        status: str | None,
        repo_id: str | None,
        limit: int,
        before: tuple[int, str] | None,
    ) -> list[Task]:
        where, params = ["workspace_id = ?"], [workspace_id]
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if repo_id is not None:
            where.append("repo_id = ?")
            params.append(repo_id)
        if before is not None:
            where.append("(created_us < ? OR (created_us = ? AND id < ?))")
            params.extend([before[0], before[0], before[1]])
        rows = await self._fetchall(
            f"SELECT {_TASK_SELECT} FROM tasks WHERE {' AND '.join(where)}"
            " ORDER BY created_us DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return [_task(r) for r in rows]

    async def update_task(
        self,
        task_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
    ) -> Task | None:
        unknown = (set(expect) | set(changes)) - TASK_COLUMNS
        assert not unknown, f"not task columns: {unknown}"

        async def work(conn: aiosqlite.Connection) -> Task | None:
            row = await self._fetchone(
                f"SELECT {_TASK_SELECT} FROM tasks WHERE id = ?", (task_id,), conn
            )
            if row is None:
                return None
            for column, value in expect.items():
                if row[column] != _encode(column, value):
                    return None
            phase = Phase(changes.get("phase", row["phase"]))
            outcome = changes.get("outcome", row["outcome"])
            status = status_for(phase, Outcome(outcome) if outcome else None)
            columns = {k: _encode(k, v) for k, v in changes.items()}
            columns.update(
                status=status, updated_us=now_us(), last_seq=row["last_seq"] + len(events)
            )
            assignments = ", ".join(f"{c} = ?" for c in columns)
            await conn.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ?", [*columns.values(), task_id]
            )
            await self._insert_events(conn, task_id, row["last_seq"], events)
            return await self._task_in(conn, task_id)

        return await self._write(work)

    @staticmethod
    async def _insert_events(
        conn: aiosqlite.Connection, task_id: str, last_seq: int, events: Sequence[NewEvent]
    ) -> None:
        ts = now_us()
        await conn.executemany(
            "INSERT INTO task_events (task_id, seq, event_type, ts_us, fields)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (task_id, last_seq + i, e.event_type, ts, json.dumps(e.fields))
                for i, e in enumerate(events, start=1)
            ],
        )

    async def append_events(self, task_id: str, events: Sequence[NewEvent]) -> list[Event]:
        async def work(conn: aiosqlite.Connection) -> list[Event]:
            row = await self._fetchone(
                "UPDATE tasks SET last_seq = last_seq + ? WHERE id = ? RETURNING last_seq",
                (len(events), task_id),
                conn,
            )
            if row is None:
                return []
            start = row["last_seq"] - len(events)
            await self._insert_events(conn, task_id, start, events)
            rows = await self._fetchall(
                "SELECT seq, event_type, ts_us, fields FROM task_events"
                " WHERE task_id = ? AND seq > ? ORDER BY seq",
                (task_id, start),
                conn,
            )
            return [_event(task_id, r) for r in rows]

        return await self._write(work)

    async def events_after(self, task_id: str, seq: int, limit: int = 500) -> list[Event]:
        rows = await self._fetchall(
            "SELECT seq, event_type, ts_us, fields FROM task_events"
            " WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (task_id, seq, limit),
        )
        return [_event(task_id, r) for r in rows]

    # The queue

    async def claim_task(self, worker: str, lease_until: float, now: float) -> Task | None:
        async def work(conn: aiosqlite.Connection) -> Task | None:
            row = await self._fetchone(
                "UPDATE tasks SET lease_owner = ?, lease_expires = ? WHERE id = ("
                f" SELECT id FROM tasks WHERE phase IN ({_RUNNABLE})"
                " AND (lease_owner IS NULL OR lease_expires < ?)"
                " ORDER BY created_us LIMIT 1) RETURNING id",
                (worker, lease_until, now),
                conn,
            )
            return await self._task_in(conn, row["id"]) if row else None

        return await self._write(work)

    async def renew_lease(self, task_id: str, worker: str, lease_until: float) -> Task | None:
        async def work(conn: aiosqlite.Connection) -> Task | None:
            cur = await conn.execute(
                "UPDATE tasks SET lease_expires = ? WHERE id = ? AND lease_owner = ?",
                (lease_until, task_id, worker),
            )
            return await self._task_in(conn, task_id) if cur.rowcount == 1 else None

        return await self._write(work)

    async def release_leases(self, worker: str) -> int:
        async def work(conn: aiosqlite.Connection) -> int:
            cur = await conn.execute(
                "UPDATE tasks SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ?",
                (worker,),
            )
            return cur.rowcount

        return await self._write(work)

    async def active_tasks(
        self, *, repo_id: str | None = None, source_key: str | None = None
    ) -> list[Task]:
        """Tasks not yet DONE or FAILED, of a repository or of one origin (a GitHub issue)."""
        where, params = ["phase NOT IN ('DONE', 'FAILED')"], []
        if repo_id is not None:
            where.append("repo_id = ?")
            params.append(repo_id)
        if source_key is not None:
            where.append("source_key = ?")
            params.append(source_key)
        rows = await self._fetchall(
            f"SELECT {_TASK_SELECT} FROM tasks WHERE {' AND '.join(where)} ORDER BY created_us",
            params,
        )
        return [_task(r) for r in rows]

    async def latest_task(self, source_key: str) -> Task | None:
        row = await self._fetchone(
            f"SELECT {_TASK_SELECT} FROM tasks WHERE source_key = ?"
            " ORDER BY created_us DESC LIMIT 1",
            (source_key,),
        )
        return _task(row) if row else None

    # Webhook deliveries (processed by the GitHub layer)

    async def take_deliveries(
        self,
        worker: str,
        lease_until: float,
        now: float,
        *,
        finished: Sequence[tuple[str, str | None]] = (),
        released: Sequence[str] = (),
        limit: int = 1,
    ) -> list[tuple[str, str, bytes]]:
        """Mark `finished` processed, hand back `released`, lease up to `limit` more, at once."""
        return await self._log().take(
            worker, lease_until, now, finished=finished, released=released, limit=limit
        )

    async def claim_review(self, repository: str, number: int, head_sha: str) -> bool:
        """Take the review of one head SHA of a PR; False when it was already taken."""

        async def work(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "INSERT OR IGNORE INTO pr_reviews (repository, number, head_sha, created_us)"
                " VALUES (?, ?, ?, ?)",
                (repository, number, head_sha, now_us()),
            )
            return cur.rowcount == 1

        return await self._write(work)

    async def last_review(self, repository: str, number: int) -> str | None:
        """The head SHA of the PR's latest review, if any."""
        row = await self._fetchone(
            "SELECT head_sha FROM pr_reviews WHERE repository = ? AND number = ?"
            " ORDER BY created_us DESC LIMIT 1",
            (repository, number),
        )
        return row["head_sha"] if row else None

    async def release_review(self, repository: str, number: int, head_sha: str) -> None:
        """Give a review back after it failed, so that a later trigger can make it."""

        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "DELETE FROM pr_reviews WHERE repository = ? AND number = ? AND head_sha = ?",
                (repository, number, head_sha),
            )

        await self._write(work)

    async def pause_reviews(self, repository: str, number: int, by: str) -> None:
        """Stop automatic reviews of a PR (the first pause is the one remembered)."""

        async def work(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT OR IGNORE INTO pr_review_pauses (repository, number, paused_by,"
                " created_us) VALUES (?, ?, ?, ?)",
                (repository, number, by, now_us()),
            )

        await self._write(work)

    async def resume_reviews(self, repository: str, number: int) -> bool:
        """Let automatic reviews of a PR run again; False when they were not paused."""

        async def work(conn: aiosqlite.Connection) -> bool:
            cur = await conn.execute(
                "DELETE FROM pr_review_pauses WHERE repository = ? AND number = ?",
                (repository, number),
            )
            return cur.rowcount == 1

        return await self._write(work)

    async def reviews_paused_by(self, repository: str, number: int) -> str | None:
        """Who paused the PR's automatic reviews, or None when they are not paused."""
        row = await self._fetchone(
            "SELECT paused_by FROM pr_review_pauses WHERE repository = ? AND number = ?",
            (repository, number),
        )
        return row["paused_by"] if row else None

    async def release_deliveries(self, worker: str) -> int:
        """Hand back the deliveries `worker` held before a restart."""
        return await self._log().release(worker)

    async def record_delivery(self, delivery_id: str, event: str, payload: bytes) -> bool:
        return await self._log().record(delivery_id, event, payload)

    def _log(self) -> DeliveryLog:
        assert self._deliveries is not None, "store is not open"
        return self._deliveries
