"""WAL checkpoints on the checkpointer's thread: commits never run one; the WAL stays bounded."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from bot.store.checkpoint import BACKSTOP_PAGES, RESTART_FRAMES, Checkpointer
from bot.store.sqlite import SqliteStore

PAYLOAD = bytes(range(256)) * 60  # 15 KB, the size of GitHub's issue_comment example


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "nimbus.db")
    await store.open()
    yield store
    await store.close()


def wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames already copied), asked on a connection of the test's own."""
    with sqlite3.connect(path) as db:
        _busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied


async def record(store: SqliteStore, count: int, prefix: str = "d") -> None:
    for n in range(count):
        assert await store.record_delivery(f"{prefix}-{n}", "issue_comment", PAYLOAD)


async def test_commits_leave_checkpoints_to_the_checkpointer(store):
    await store._checkpointer.stop()
    await record(store, 400)  # ~2,000 pages: SQLite alone would have checkpointed at 1,000
    wal = store.path.with_name("nimbus.db-wal")
    pages = wal.stat().st_size // 4096
    assert 1_500 < pages < BACKSTOP_PAGES


async def test_a_checkpoint_starts_the_wal_again_while_writes_go_on(store):
    await store._checkpointer.stop()  # this test's own checkpointer runs instead, when told
    checkpointer = Checkpointer(store.path, busy_timeout_ms=10_000, write_lock=store._write_lock)
    await checkpointer.start()
    wal = store.path.with_name("nimbus.db-wal")
    while wal.stat().st_size // 4096 < RESTART_FRAMES:  # nothing checkpoints it meanwhile
        await record(store, 50, prefix=f"before-{time.monotonic_ns()}")
    writing = True
    checkpointed = asyncio.Event()
    after = asyncio.Event()  # a commit that began after the checkpoint was made

    async def writer() -> None:  # never a pause: a commit is always under way or next
        n = 0
        while writing:
            began_after = checkpointed.is_set()
            n += 1
            await store.record_delivery(f"during-{n}", "issue_comment", PAYLOAD)
            if began_after:
                after.set()

    task = asyncio.create_task(writer())
    try:
        await asyncio.sleep(0.1)
        await checkpointer.checkpoint()
        checkpointed.set()
        await asyncio.wait_for(after.wait(), 10)
        frames, _ = wal_frames(store.path)
    finally:
        writing = False
        await task
        await checkpointer.stop()
    # Started again from its beginning: only what was written since the checkpoint is in it.
    assert frames < RESTART_FRAMES // 4


async def test_a_checkpoint_after_writes_copies_the_whole_wal(store):
    await record(store, 100)
    busy, frames, copied = await store._checkpointer.checkpoint()
    assert busy == 0 and frames == copied > 0
