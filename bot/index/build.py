"""Building a clone's index: git's file list, symbols per file (cached by blob), off the loop."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter, OrderedDict
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot import paths
from bot.git import Git
from bot.index import files as selection
from bot.index.cache import open_cache
from bot.index.languages import language_of
from bot.index.symbols import FileSymbols, extract

log = logging.getLogger("nimbus.index")

# Below this many files to read, worker processes cost more than they save.
_POOL_FROM = 64
_BATCH = 32
_pool: ProcessPoolExecutor | None = None
# The last indexes built, by commit and cache file: a task on a commit indexed moments ago (a
# retry, a second task on the same repository) takes it as it is.
_RECENT_SIZE = 4
_recent: OrderedDict[tuple[str, str], RepoIndex] = OrderedDict()
_recent_lock = threading.Lock()


@dataclass
class IndexedFile:
    """One file of the index."""

    path: str
    language: str | None
    kind: int  # bot.paths: SOURCE, TEST, OTHER
    size: int
    symbols: FileSymbols


@dataclass
class RepoIndex:
    """What a clone holds at one commit: its files and their symbols."""

    commit: str
    # Left out of repr: asyncio formats a finished task's result (Python 3.11's asyncio.run does
    # so on exit), and the repr of thousands of files took longer than the index itself.
    files: dict[str, IndexedFile] = field(repr=False)
    skipped: Counter[str] = field(default_factory=Counter)
    read: int = 0  # files read and parsed this time
    reused: int = 0  # files whose symbols came from the cache
    seconds: float = 0.0
    # Each file's search terms, made by the ranking on first use and kept with the index
    # (tasks on a commit indexed moments ago rank the same index again).
    search_terms: dict[str, Counter[str]] | None = field(default=None, repr=False, compare=False)

    @property
    def languages(self) -> Counter[str]:
        return Counter(f.language for f in self.files.values() if f.language)

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
        return (
            f"{len(self.files)} files indexed ({self.read} read, {self.reused} from the cache)"
            f" in {self.seconds:.2f}s" + (f"; left out: {skipped}" if skipped else "")
        )


def workers() -> int:
    """Processes for parsing: the machine's cores, at most four."""
    return max(1, min(4, os.cpu_count() or 1))


def _executor() -> ProcessPoolExecutor:
    global _pool
    if _pool is None:
        # forkserver: forking the server itself (threads, sockets, SQLite) would be unsafe.
        context = multiprocessing.get_context("forkserver")
        _pool = ProcessPoolExecutor(max_workers=workers(), mp_context=context)
    return _pool


def close_pool() -> None:
    """Stop the parsing processes (at shutdown)."""
    global _pool
    if _pool is not None:
        _pool.shutdown(cancel_futures=True)
        _pool = None


def read_file(clone: Path, path: str, language: str | None) -> dict[str, Any]:
    """A file's cache entry: its symbols, or why it is not indexed."""
    full = clone / path
    # Tracked paths never leave the clone, but a tracked directory may be replaced by a link.
    if not full.resolve().is_relative_to(clone.resolve()):
        return {"skip": selection.LINK}
    try:
        with open(full, "rb") as handle:
            data = handle.read(selection.MAX_FILE_BYTES + 1)
    except OSError:
        # Tracked but not in the working tree (a sparse checkout), or not a regular file.
        return {"skip": selection.UNREADABLE}
    if len(data) > selection.MAX_FILE_BYTES:
        return {"skip": selection.TOO_LARGE}
    if selection.looks_binary(data):
        return {"skip": selection.BINARY}
    if paths.is_generated_text(data[:2000].decode("utf-8", errors="replace")):
        return {"skip": selection.GENERATED}
    return {"size": len(data), "symbols": extract(language, data).to_json()}


def _read_batch(clone: str, items: list[tuple[str, str | None]]) -> list[dict[str, Any]]:
    root = Path(clone)
    return [read_file(root, path, language) for path, language in items]


def _read_all(
    clone: Path, items: list[tuple[str, str | None]], pool: Executor | None
) -> list[dict[str, Any]]:
    if pool is None or len(items) < _POOL_FROM:
        return _read_batch(str(clone), items)
    batches = [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]
    try:
        futures = [pool.submit(_read_batch, str(clone), batch) for batch in batches]
        return [entry for future in futures for entry in future.result()]
    except BrokenProcessPool:
        # A worker died (killed, out of memory): start afresh next time, finish this one here.
        log.warning("an indexing process died; reading the files in this process")
        close_pool()
        return _read_batch(str(clone), items)


def index_tree(
    clone: Path,
    commit: str,
    tracked: list[selection.TrackedFile],
    ignored: set[str],
    cache_path: Path | None,
    *,
    parallel: bool = True,
) -> RepoIndex:
    """The index of `clone` at `commit` (blocking: run it in a thread)."""
    started = time.perf_counter()
    key = (commit, str(cache_path))
    with _recent_lock:
        # Only alongside the disk cache: without one, every index reads everything.
        recent = _recent.get(key) if cache_path else None
        if recent is not None:
            _recent.move_to_end(key)
    if recent is not None:
        # Nothing is read: the same commit's files, symbols and what was left out.
        return replace(
            recent,
            read=0,
            reused=recent.read + recent.reused,
            seconds=time.perf_counter() - started,
        )
    cache = open_cache(cache_path) if cache_path else None
    try:
        listing = cache.commit(commit) if cache else None
        if listing is None:
            listing = []
            skipped: Counter[str] = Counter()
            for file in tracked:
                reason = selection.skip_reason(file, ignored)
                if reason:
                    skipped[reason] += 1
                else:
                    # The same bytes read as another language are another entry.
                    listing.append([file.path, f"{file.blob}:{language_of(file.path) or ''}"])
            listing = {"files": listing, "skipped": dict(skipped)}
            fresh_listing = True
        else:
            fresh_listing = False
        entries = cache.blobs(blob for _, blob in listing["files"]) if cache else {}
        missing = [(path, blob) for path, blob in listing["files"] if blob not in entries]
        pool = _executor() if parallel and len(missing) >= _POOL_FROM else None
        read = _read_all(clone, [(path, language_of(path)) for path, _ in missing], pool)
        new = {blob: entry for (_, blob), entry in zip(missing, read, strict=True)}
        if cache:
            cache.put_blobs(new)
            if fresh_listing:
                cache.put_commit(commit, listing)
        entries.update(new)
    finally:
        if cache:
            cache.close()
    index = RepoIndex(commit, {}, Counter(listing["skipped"]))
    index.read, index.reused = len(missing), len(listing["files"]) - len(missing)
    for path, blob in listing["files"]:
        entry = entries[blob]
        if "skip" in entry:
            index.skipped[entry["skip"]] += 1
            continue
        index.files[path] = IndexedFile(
            path,
            language_of(path),
            paths.kind_of(path),
            entry["size"],
            FileSymbols.from_json(entry["symbols"]),
        )
    index.seconds = time.perf_counter() - started
    if cache_path:
        with _recent_lock:
            _recent[key] = index
            while len(_recent) > _RECENT_SIZE:
                _recent.popitem(last=False)
    return index


def forget_recent() -> None:
    """Drop the indexes kept in memory; the next index of any commit asks the disk cache."""
    with _recent_lock:
        _recent.clear()


async def build_index(
    clone: Path, git: Git, cache_path: Path | None, *, parallel: bool = True
) -> RepoIndex:
    """Index the clone at its HEAD; the parsing happens in other processes, off the loop."""
    commit = await git.head(clone)
    # The commit's own tree (not the staging area): what the commit cache is keyed by.
    listed = await git.run(["ls-tree", "-r", "-z", "--full-tree", commit], cwd=clone)
    tracked = selection.parse_ls_tree(listed.stdout)
    ignored: set[str] = set()
    if any(Path(f.path).name == ".nimbusignore" for f in tracked):
        # git applies .nimbusignore files with .gitignore's rules, each to its own folder.
        found = await git.run(
            ["ls-files", "-z", "--cached", "--ignored", "--exclude-per-directory=.nimbusignore"],
            cwd=clone,
        )
        ignored = {path for path in found.stdout.split("\0") if path}
    return await asyncio.to_thread(
        index_tree, clone, commit, tracked, ignored, cache_path, parallel=parallel
    )
