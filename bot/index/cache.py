"""The index cache: symbols per blob SHA and file lists per commit SHA, in one SQLite file.

Used from the indexing thread only (never on the event loop). Entries carry the extractor's
version, so a change to what is extracted makes old entries misses instead of wrong answers.
"""

from __future__ import annotations

import logging
import marshal
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Raise when symbols.py or what a file entry holds changes.
VERSION = 7
# How long to keep asking while another task's index holds the database.
_LOCKED_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    blob TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob, version)
);
CREATE TABLE IF NOT EXISTS commits (
    sha TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (sha, version)
);
"""


def _pack(value: Any) -> bytes:
    # marshal: plain dicts, lists and strings only, and twice as fast to read back as JSON;
    # uncompressed, since reading an unchanged commit back is what must be quick.
    return marshal.dumps(value)


def _unpack(data: bytes) -> Any:
    return marshal.loads(data)


log = logging.getLogger("nimbus.index")


def open_cache(path: Path) -> IndexCache | None:
    """The cache at `path`; a file that is not a cache is set aside and a new one made."""
    try:
        return IndexCache(path)
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc):
            log.warning("index cache %s stays locked (%s): indexing without it", path, exc)
            return None
        log.warning("index cache %s is unreadable (%s): starting a new one", path, exc)
    try:
        path.replace(path.with_name(path.name + ".corrupt"))
        return IndexCache(path)
    except (OSError, sqlite3.Error) as exc:
        log.warning("index cache %s cannot be made (%s): indexing without it", path, exc)
        return None


class IndexCache:
    """Blob and commit entries of earlier indexes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Several tasks may index at once, each from its own thread and connection.
        self.db = sqlite3.connect(path, timeout=_LOCKED_SECONDS, check_same_thread=False)
        try:
            self._prepare()
        except sqlite3.Error:
            self.db.close()
            raise

    def _prepare(self) -> None:
        # Switching a new file to WAL does not wait on a lock as statements do: ask again.
        deadline = time.monotonic() + _LOCKED_SECONDS
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.db.close()

    def blobs(self, shas: Iterable[str]) -> dict[str, Any]:
        """The cached entries of those blobs that have one."""
        wanted = list(dict.fromkeys(shas))
        found: dict[str, Any] = {}
        # SQLite's default limit on variables in one statement is 32766; stay well below.
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self.db.execute(
                f"SELECT blob, data FROM blobs WHERE version = ? AND blob IN ({marks})",
                (VERSION, *part),
            )
            for blob, data in rows:
                try:
                    found[blob] = _unpack(data)
                except (ValueError, EOFError, TypeError):
                    continue  # a damaged entry is a miss: the file is read again
        return found

    def put_blobs(self, entries: dict[str, Any]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO blobs (blob, version, data) VALUES (?, ?, ?)",
                [(blob, VERSION, _pack(value)) for blob, value in entries.items()],
            )

    def commit(self, sha: str) -> Any | None:
        """The file list of a commit indexed before (a commit names its whole tree)."""
        row = self.db.execute(
            "SELECT data FROM commits WHERE sha = ? AND version = ?", (sha, VERSION)
        ).fetchone()
        if row is None:
            return None
        try:
            return _unpack(row[0])
        except (ValueError, EOFError, TypeError):
            return None

    def put_commit(self, sha: str, value: Any) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO commits (sha, version, data) VALUES (?, ?, ?)",
                (sha, VERSION, _pack(value)),
            )
