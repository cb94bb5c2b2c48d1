"""Webhook deliveries in SQLite: their own connection on their own thread, one hand-over a call.

Deliveries are the hot path of the GitHub layer: every webhook is stored before it is answered
202, and the worker leases and finishes each one. Through aiosqlite every statement is a hand-over
between the event loop and the database thread (BEGIN, read, write, write, COMMIT: five for one
stored batch); here a whole transaction runs on the database thread in one call. The connection
shares the store's file (WAL: one writer at a time, the other waits up to the busy timeout).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from bot.models import now_us
from bot.store.checkpoint import connect

T = TypeVar("T")

Claimed = tuple[str, str, bytes]
# SQLite allows 32766 variables in one statement; a batch is split well below that.
_IDS_PER_QUERY = 500


class DeliveryLog:
    """Stores, leases and finishes deliveries; writes arriving together share one commit."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int,
        write_lock: asyncio.Lock,
        committed: Callable[[], None],
    ) -> None:
        self.path = path
        # Told after every commit (the store's checkpointer), on the event loop.
        self._committed = committed
        self.busy_timeout_ms = busy_timeout_ms
        # The store's own writer takes turns with this one through this lock: SQLite's busy
        # handler only polls, and left to it a delivery lost the race to back-to-back task
        # writes for over a second (bench/load.py); the lock queues them fairly instead.
        self._write_lock = write_lock
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        # Payloads are read on a connection and thread of their own, after the lease is
        # committed: reading them does not hold up the deliveries being stored.
        self._reader: sqlite3.Connection | None = None
        self._reader_thread: ThreadPoolExecutor | None = None
        self._waiting: list[tuple[str, str, bytes, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nimbus-deliveries")
        self._reader_thread = ThreadPoolExecutor(1, thread_name_prefix="nimbus-payloads")
        self._db = await self._call(self._connect)
        self._reader = await self._read(self._connect, True)

    async def close(self) -> None:
        if self._writer is not None:
            # Deliveries already answered 202 are committed before the connection goes.
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._reader_thread is not None:
            if self._reader is not None:
                await self._read(self._reader.close)
            self._reader_thread.shutdown(wait=True)
        if self._thread is not None:
            if self._db is not None:
                await self._call(self._db.close)
            self._thread.shutdown(wait=True)
        self._db = self._thread = self._reader = self._reader_thread = None

    async def _call(self, work: Callable[..., T], *args: object) -> T:
        assert self._thread is not None, "store is not open"
        # The thread finishes what it started even if the caller is cancelled: a transaction
        # is never left half-done.
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def _read(self, work: Callable[..., T], *args: object) -> T:
        assert self._reader_thread is not None, "store is not open"
        return await asyncio.get_running_loop().run_in_executor(self._reader_thread, work, *args)

    async def _write(self, work: Callable[[sqlite3.Connection], T], *, shield: bool = True) -> T:
        async with self._write_lock:
            done = self._call(self._transaction, work)
            # Shielded: the lock is held until the transaction is over, cancelled or not. A
            # caller that is never cancelled spares the task it takes (a turn of the loop).
            result = await (asyncio.shield(done) if shield else done)
        self._committed()
        return result

    def _connect(self, query_only: bool = False) -> sqlite3.Connection:
        db = connect(self.path, self.busy_timeout_ms)
        if query_only:
            db.execute("PRAGMA query_only = ON")
        return db

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        assert db is not None, "store is not open"
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    # Storing (the webhook endpoint)

    async def record(self, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a delivery; False when it is already stored and not failed."""
        # Group commit: deliveries arriving while a batch is written go into the next one, and
        # each caller answers only once its own delivery is committed.
        # A caller cancelled while it waits cancels only its wait: the writer goes on.
        stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery_id, event, payload, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_waiting())
        return await stored

    async def _write_waiting(self) -> None:
        # Never cancelled (close() waits for it), hence no shield around its writes.
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._write(
                    lambda db, b=batch: _insert(db, [i[:3] for i in b]), shield=False
                )
            except Exception as exc:
                for *_, stored in batch:
                    if not stored.done():
                        stored.set_exception(exc)
                continue
            for (*_, stored), result in zip(batch, results, strict=True):
                if not stored.done():
                    stored.set_result(result)

    # Processing (the delivery worker)

    async def take(
        self,
        worker: str,
        lease_until: float,
        now: float,
        *,
        finished: Sequence[tuple[str, str | None]] = (),
        released: Sequence[str] = (),
        limit: int = 1,
    ) -> list[Claimed]:
        """Mark `finished` processed and hand back `released`, then lease up to `limit` more.

        One transaction: a worker going through a backlog pays one write per batch; the
        payloads are read after it, on the reading connection.
        """

        def work(db: sqlite3.Connection) -> list[tuple[str, str]]:
            done = now_us()
            db.executemany(
                "UPDATE webhook_deliveries SET processed_us = ?, error = ?, lease_owner = NULL,"
                " lease_expires = NULL WHERE delivery_id = ?",
                [(done, error, delivery_id) for delivery_id, error in finished],
            )
            db.executemany(
                "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires = NULL"
                " WHERE delivery_id = ? AND lease_owner = ?",
                [(delivery_id, worker) for delivery_id in released],
            )
            return _claim(db, worker, lease_until, now, limit) if limit > 0 else []

        leased = await self._write(work)
        if not leased:
            return []
        payloads = await self._read(_payloads, self._reader, [d for d, _ in leased])
        return [(delivery_id, event, payloads[delivery_id]) for delivery_id, event in leased]

    async def release(self, worker: str) -> int:
        """Hand back the deliveries `worker` held before a restart."""
        return await self._write(
            lambda db: (
                db.execute(
                    "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires = NULL"
                    " WHERE lease_owner = ? AND processed_us IS NULL",
                    (worker,),
                ).rowcount
            ),
        )


def _insert(db: sqlite3.Connection, batch: list[tuple[str, str, bytes]]) -> list[bool]:
    """Store a batch; True for each delivery taken.

    A delivery whose processing failed is taken again when GitHub redelivers it; one that is
    pending or succeeded is left alone.
    """
    ids = list(dict.fromkeys(delivery_id for delivery_id, _, _ in batch))
    known: dict[str, str | None] = {}
    for start in range(0, len(ids), _IDS_PER_QUERY):
        part = ids[start : start + _IDS_PER_QUERY]
        known.update(
            db.execute(
                "SELECT delivery_id, error FROM webhook_deliveries"
                f" WHERE delivery_id IN ({','.join('?' * len(part))})",
                part,
            )
        )
    taken: dict[str, tuple[str, bytes]] = {}
    results = []
    for delivery_id, event, payload in batch:
        again = delivery_id in known and known[delivery_id] is None
        if delivery_id in taken or again:
            results.append(False)
            continue
        taken[delivery_id] = (event, payload)
        results.append(True)
    if taken:
        received = now_us()
        db.executemany(
            "INSERT INTO webhook_deliveries (delivery_id, event, received_us)"
            " VALUES (?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET"
            " received_us = excluded.received_us, processed_us = NULL, error = NULL"
            " WHERE webhook_deliveries.error IS NOT NULL",
            [(delivery_id, event, received) for delivery_id, (event, _) in taken.items()],
        )
        db.executemany(
            "INSERT OR REPLACE INTO webhook_payloads (delivery_id, payload) VALUES (?, ?)",
            [(delivery_id, payload) for delivery_id, (_, payload) in taken.items()],
        )
    return results


def _claim(
    db: sqlite3.Connection, worker: str, lease_until: float, now: float, limit: int
) -> list[tuple[str, str]]:
    """Lease up to `limit` pending deliveries, oldest first: (delivery id, event) each."""
    leased = db.execute(
        "UPDATE webhook_deliveries SET lease_owner = ?, lease_expires = ?,"
        " attempts = attempts + 1 WHERE delivery_id IN ("
        " SELECT delivery_id FROM webhook_deliveries WHERE processed_us IS NULL"
        " AND (lease_owner IS NULL OR lease_expires < ?) ORDER BY received_us LIMIT ?)"
        " RETURNING delivery_id, event, received_us",
        (worker, lease_until, now, limit),
    ).fetchall()  # all of it: a RETURNING statement left unfinished would hold up the COMMIT
    # RETURNING gives no order: oldest first, as they arrived.
    leased.sort(key=lambda row: row[2])
    return [(delivery_id, event) for delivery_id, event, _ in leased]


def _payloads(db: sqlite3.Connection | None, ids: list[str]) -> dict[str, bytes]:
    assert db is not None, "store is not open"
    found: dict[str, bytes] = dict.fromkeys(ids, b"")
    for start in range(0, len(ids), _IDS_PER_QUERY):
        part = ids[start : start + _IDS_PER_QUERY]
        rows = db.execute(
            "SELECT delivery_id, payload FROM webhook_payloads"
            f" WHERE delivery_id IN ({','.join('?' * len(part))})",
            part,
        )
        found.update((delivery_id, bytes(payload)) for delivery_id, payload in rows)
    return found
