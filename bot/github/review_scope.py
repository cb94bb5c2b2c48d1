"""What of a pull request fits a review's token budget, in which order, and in which chunks.

Pure: no I/O. Source is read before tests, tests before the rest, and lock files, generated and
vendored files last, so that a budget that runs out leaves out what matters least. Hunks that only
delete lines are not sent (there is no new code in them to comment on); every file left out is
named with its reason, for the review's summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot import paths
from bot.github.anchors import PrFile

# Reasons a file was not reviewed, as the summary says them.
NO_PATCH = "GitHub sent no diff for it (binary or very large)"
RENAMED_ONLY = "renamed, content unchanged"
DELETIONS_ONLY = "only lines removed"
OVER_BUDGET = "over the review's token budget"


def estimate_tokens(text: str) -> int:
    """Tokens a text takes, estimated as one per four characters (no tokenizer is installed)."""
    return (len(text) + 3) // 4


def kind_of(file: PrFile) -> int:
    """The file's review priority: SOURCE first … LOCK last."""
    return paths.kind_of(file.path, file.patch or "")


_HUNK_START = re.compile(r"^@@ ", re.MULTILINE)


def hunks(patch: str) -> list[str]:
    """The patch's hunks, each from its `@@` line."""
    starts = [m.start() for m in _HUNK_START.finditer(patch)]
    if not starts:
        return [patch] if patch.strip() else []
    return [patch[a:b] for a, b in zip(starts, [*starts[1:], len(patch)], strict=True)]


def _adds(hunk: str) -> bool:
    return any(line.startswith("+") for line in hunk.splitlines()[1:])


def without_deletion_only(patch: str) -> str:
    """The patch without its hunks that only remove lines."""
    return "".join(h if h.endswith("\n") else h + "\n" for h in hunks(patch) if _adds(h))


def file_diff(file: PrFile, patch: str) -> str:
    """One file's part of a unified diff, headers included, for the agent to read."""
    old = file.previous_path or file.path
    body = patch if patch.endswith("\n") else patch + "\n"
    return f"diff --git a/{old} b/{file.path}\n--- a/{old}\n+++ b/{file.path}\n{body}"


@dataclass
class Chunk:
    """Files (or, for a file larger than a chunk, some of its hunks) reviewed in one request."""

    parts: list[tuple[PrFile, str]] = field(default_factory=list)
    tokens: int = 0

    @property
    def paths(self) -> list[str]:
        return list(dict.fromkeys(file.path for file, _ in self.parts))

    def diff(self) -> str:
        return "".join(file_diff(file, patch) for file, patch in self.parts)


@dataclass
class Scope:
    """The chunks to review and the files left out, with why."""

    chunks: list[Chunk]
    not_reviewed: list[tuple[str, str]]

    @property
    def tokens(self) -> int:
        return sum(chunk.tokens for chunk in self.chunks)

    @property
    def reviewed_paths(self) -> list[str]:
        return list(dict.fromkeys(p for chunk in self.chunks for p in chunk.paths))


def _pieces(file: PrFile, patch: str, chunk_tokens: int) -> list[tuple[str, int]]:
    """The file's patch cut at hunk boundaries into pieces of at most a chunk (when it can be)."""
    pieces: list[tuple[str, int]] = []
    current, size = "", 0
    for hunk in hunks(patch):
        cost = estimate_tokens(file_diff(file, hunk))
        if current and size + cost > chunk_tokens:
            pieces.append((current, size))
            current, size = "", 0
        current += hunk if hunk.endswith("\n") else hunk + "\n"
        size += cost
    if current:
        pieces.append((current, size))
    return pieces


def plan_review(files: list[PrFile], *, budget_tokens: int, chunk_tokens: int) -> Scope:
    """Order the files by priority and pack what fits the budget into chunks."""
    not_reviewed: list[tuple[str, str]] = []
    candidates: list[tuple[int, int, PrFile, str]] = []
    for index, file in enumerate(files):
        if file.patch is None:
            # GitHub sends no patch for a rename that changes nothing: there is nothing to read.
            unchanged = file.status == "renamed"
            not_reviewed.append((file.path, RENAMED_ONLY if unchanged else NO_PATCH))
            continue
        patch = without_deletion_only(file.patch)
        if not patch:
            not_reviewed.append((file.path, DELETIONS_ONLY))
            continue
        candidates.append((kind_of(file), index, file, patch))
    candidates.sort(key=lambda c: (c[0], c[1]))

    chunks: list[Chunk] = []
    current = Chunk()
    left = budget_tokens
    # Once a file of one priority does not fit, no file of a lower priority takes the room.
    overflowed: int | None = None
    for kind, _, file, patch in candidates:
        pieces = _pieces(file, patch, chunk_tokens)
        cost = sum(size for _, size in pieces)
        if (overflowed is not None and kind > overflowed) or cost > left:
            not_reviewed.append((file.path, OVER_BUDGET))
            overflowed = kind if overflowed is None else overflowed
            continue
        left -= cost
        for piece, size in pieces:
            if current.parts and current.tokens + size > chunk_tokens:
                chunks.append(current)
                current = Chunk()
            current.parts.append((file, piece))
            current.tokens += size
    if current.parts:
        chunks.append(current)
    return Scope(chunks, not_reviewed)
