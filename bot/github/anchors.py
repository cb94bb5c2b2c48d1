"""Place review findings on diff lines GitHub accepts; move the rest into the review summary.

Pure: no I/O. GitHub answers `422` to a whole review if one inline comment names a line that is not
in the pull request's diff, so every comment is checked against the file's patch before posting, and
a finding that cannot be placed is kept in the summary instead of being lost or moved elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from unidiff import PatchSet
from unidiff.errors import UnidiffParseError

RIGHT = "RIGHT"
LEFT = "LEFT"


@dataclass(frozen=True)
class PrFile:
    """One entry of `GET /repos/{owner}/{repo}/pulls/{number}/files`."""

    path: str
    # Only the hunks, from the first `@@`; GitHub omits it for binary and very large files.
    patch: str | None
    status: str = "modified"
    previous_path: str | None = None


@dataclass(frozen=True)
class Finding:
    """One remark of a review, aimed at a line of a file (or at no line)."""

    path: str
    line: int | None
    body: str
    side: str = RIGHT
    blocking: bool = False


def commentable_lines(patch: str) -> dict[str, set[int]]:
    """The lines of a file's patch that a review comment may name, by side."""
    lines: dict[str, set[int]] = {RIGHT: set(), LEFT: set()}
    # GitHub's `patch` has no file headers, which unidiff needs before it reads any hunk.
    try:
        patch_set = PatchSet(f"--- a/x\n+++ b/x\n{patch}")
    except UnidiffParseError:
        # A patch we cannot read names no line we could vouch for: GitHub would refuse a guess.
        return lines
    for patched_file in patch_set:
        for hunk in patched_file:
            for line in hunk:
                # https://docs.github.com/rest/pulls/comments: RIGHT is additions and context
                # (new line numbers), LEFT is deletions (old line numbers).
                if line.is_added or line.is_context:
                    lines[RIGHT].add(line.target_line_no)
                elif line.is_removed:
                    lines[LEFT].add(line.source_line_no)
    return lines


def _by_path(files: Iterable[PrFile]) -> dict[str, PrFile]:
    """Each file of the PR under its path and, when renamed, its previous path."""
    found = {file.path: file for file in files}
    for file in list(found.values()):
        # A new file may take the old name of a renamed one; the path that exists now wins.
        if file.previous_path:
            found.setdefault(file.previous_path, file)
    return found


def _place(
    finding: Finding, by_path: dict[str, PrFile], lines_of: dict[str, dict[str, set[int]]]
) -> dict[str, object] | None:
    """The inline comment for a finding, or None when GitHub would refuse it."""
    file = by_path.get(finding.path)
    if file is None or file.patch is None or finding.line is None:
        return None
    if file.path not in lines_of:
        lines_of[file.path] = commentable_lines(file.patch)
    side = finding.side.upper()
    # Only the exact (line, side): a RIGHT line that is a removed LEFT line is another line of
    # code, and moving the comment there would say something false.
    if finding.line not in lines_of[file.path].get(side, set()):
        return None
    return {"path": file.path, "line": finding.line, "side": side, "body": finding.body}


def anchor(
    findings: Iterable[Finding], files: Iterable[PrFile]
) -> tuple[list[dict[str, object]], list[Finding]]:
    """Split findings into inline comments GitHub accepts and findings for the summary."""
    by_path = _by_path(files)
    lines_of: dict[str, dict[str, set[int]]] = {}
    comments: list[dict[str, object]] = []
    moved: list[Finding] = []
    seen: set[tuple[object, ...]] = set()
    for finding in findings:
        placed = _place(finding, by_path, lines_of)
        if placed:
            key: tuple[object, ...] = ("inline", *placed.values())
        else:
            key = ("moved", finding.path, finding.line, finding.side, finding.body)
        if key in seen:
            continue
        seen.add(key)
        if placed:
            comments.append(placed)
        else:
            moved.append(finding)
    return comments, moved


def _item(text: str) -> str:
    """A markdown list item; later lines are indented so they stay inside it."""
    return "- " + text.strip().replace("\n", "\n  ")


# Enough names for a person to see what was left out, and a review body far below GitHub's limit.
_NAMED = 30


def _not_reviewed_section(not_reviewed: list[tuple[str, str]]) -> str:
    """The files left out, grouped by why, each group naming at most `_NAMED` of them."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in not_reviewed:
        by_reason.setdefault(reason, []).append(path)
    groups = []
    for reason, paths in by_reason.items():
        count = f"{len(paths)} file{'s' if len(paths) != 1 else ''}"
        items = [_item(f"`{path.replace('`', '')}`") for path in paths[:_NAMED]]
        if len(paths) > _NAMED:
            items.append(_item(f"and {len(paths) - _NAMED} more"))
        groups.append(f"{reason[0].upper()}{reason[1:]} ({count}):\n" + "\n".join(items))
    return "### Not reviewed\n\n" + "\n\n".join(groups)


def summary_with(summary: str, moved: list[Finding], not_reviewed: list[tuple[str, str]]) -> str:
    """The review body: the summary, the findings that could not go inline, what was left out.

    `not_reviewed` holds (path, reason) pairs.
    """
    parts = [summary.strip()] if summary.strip() else []
    if moved:
        items = [
            _item(f"{f.path}:{f.line} — {f.body}" if f.line is not None else f"{f.path} — {f.body}")
            for f in moved
        ]
        parts.append("### Comments on lines outside the diff\n\n" + "\n".join(items))
    if not_reviewed:
        parts.append(_not_reviewed_section(not_reviewed))
    return "\n\n".join(parts)
