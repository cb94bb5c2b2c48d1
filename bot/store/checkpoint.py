"""WAL checkpoints on a thread of their own, so that no commit waits for one.

By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: that
commit copies the pages into the database file and syncs it. With webhook payloads of ~15 KB
that was one delivery in ninety answered ~20 ms late, and a 20 ms pause for every delivery
waiting on the same group commit (bench/webhook_ingest.py). Here the connections that commit
leave checkpoints to a `Checkpointer`, which runs them on its own connection and thread shortly
after writes. A PASSIVE checkpoint never blocks writers, but the WAL starts again from its
beginning only once a checkpoint has copied all of it before the next write: while writes go
on, that takes a last short pass under the store's write lock, made once the WAL has grown
past RESTART_FRAMES. Under a flood faster than the copying, that pass is what slows writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("nimbus.store")

# Pages the WAL may hold before a committing connection checkpoints it itself: a backstop for
# when the checkpointer is not running (or falls behind), well above what it lets gather.
BACKSTOP_PAGES = 20_000
# Seconds between checkpoints while writes keep coming: short enough that the WAL stays a few
# MB at a thousand deliveries a second, long enough that a burst is copied in one pass.
INTERVAL = 0.2
# A pass that copies fewer frames than this was short: another would copy little more.
FINISH_FRAMES = 200
# Passes while writes go on, at most, in one checkpoint.
MAX_PASSES = 2
# Frames (pages) the WAL may grow to before a checkpoint holds writers off, briefly, to start
# it again from its beginning: 16 MB with 4 KB pages, every few seconds under a flood.
RESTART_FRAMES = 4096
# The checkpointer thread's nice value (0 is the process's default, 19 the lowest priority).
NICE = 10


# Every connection to the store's file: checkpoints left to the checkpointer, but for the backstop.
PRAGMAS = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
    f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}",
)


def connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection to the store's file, for the one thread that will use and close it."""
    db = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    for pragma in PRAGMAS:
        db.execute(pragma)
    return db


class Checkpointer:
    """Checkpoints the WAL of one database after writes, off the committing connections."""

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int,
        write_lock: asyncio.Lock,
        interval: float = INTERVAL,
    ) -> None:
        self.path = path
        # The store's writers take this lock for every write transaction.
        self._write_lock = write_lock
        self.busy_timeout_ms = busy_timeout_ms
        self.interval = interval
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._written = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="nimbus-checkpoint")
        await self._call(self._connect)
        self._loop = asyncio.create_task(self._run(), name="nimbus-checkpoint")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        if self._thread is not None:
            if self._db is not None:
                await self._call(self._db.close)
            self._thread.shutdown(wait=True)
        self._db = self._thread = None

    def written(self) -> None:
        """Called after a commit: a checkpoint runs within the interval."""
        self._written.set()

    async def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database: (busy, frames in the WAL, frames copied).

        While writes go on, the WAL is copied but not started again, unless it has grown past
        RESTART_FRAMES.
        """
        before = 0
        for _ in range(MAX_PASSES):
            busy, frames, copied = await self._call(self._passive)
            if busy or copied - before <= FINISH_FRAMES:
                break
            before = copied
        if busy or frames < RESTART_FRAMES:
            # When writes pause, a pass copies it all and the next write starts it again.
            return busy, frames, copied
        # The pass that completes the WAL syncs the database file: what the passes above
        # copied is synced now, so that the pass under the lock only syncs its own few pages.
        await self._call(self._sync_database)
        # What was written meanwhile is copied with writers held off, so that the next write
        # starts the WAL from its beginning instead of growing it.
        async with self._write_lock:
            return await self._call(self._passive)

    async def _call(self, work: Callable[[], T]) -> T:
        assert self._thread is not None, "checkpointer is not started"
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    def _connect(self) -> None:
        _lower_priority()
        self._db = connect(self.path, self.busy_timeout_ms)

    def _passive(self) -> tuple[int, int, int]:
        assert self._db is not None, "checkpointer is not started"
        busy, frames, copied = self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return busy, frames, copied

    def _sync_database(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # the file's dirty pages, whichever descriptor wrote them
        finally:
            os.close(fd)

    async def _run(self) -> None:
        while True:
            await self._written.wait()
            self._written.clear()
            try:
                # Cancelled by stop(): the pass under way finishes on the thread, which then
                # closes the connection.
                await self.checkpoint()
            except (sqlite3.Error, OSError) as exc:
                # The next commit's nudge tries again; the backstop keeps the WAL bounded.
                log.warning("checkpointing %s failed: %s", self.path.name, exc)
            await asyncio.sleep(self.interval)


def _lower_priority() -> None:
    """Run the calling thread at a lower priority than the ones that answer requests."""
    # Copying pages is work that can wait a few milliseconds; on a busy machine it otherwise
    # takes the core the database thread needed to answer a request (Linux: per-thread nice).
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
