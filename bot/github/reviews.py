"""Reviewing a pull request: its files from GitHub, the agent's review, anchored and posted once."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gidgethub import BadRequest

from bot.agents.base import AgentRequest, UsageMeter
from bot.errors import NotFound
from bot.github.anchors import Finding, PrFile, anchor, summary_with
from bot.github.commands import clean_text
from bot.models import Repo
from bot.repo_config import path_matches
from phases.context import Services


def _as_diff(files: list[PrFile]) -> str:
    """The files' patches as one unified diff, for the agent to read."""
    parts = []
    for f in files:
        if f.patch is None:
            continue
        old = f.previous_path or f.path
        parts.append(f"diff --git a/{old} b/{f.path}\n--- a/{old}\n+++ b/{f.path}\n{f.patch}\n")
    return "".join(parts)


async def _changes_since(
    gh: Any, full_name: str, base: str, head: str, paths_ignore: tuple[str, ...]
) -> list[PrFile] | None:
    """The files changed from `base` to `head`, as GitHub's compare gives them."""
    # https://docs.github.com/rest/commits/commits#compare-two-commits
    try:
        compared = await gh.getitem(f"/repos/{full_name}/compare/{base}...{head}")
    except BadRequest:
        return None  # the old head is gone (a force-push): the whole PR is reviewed instead
    return [
        PrFile(
            f["filename"], f.get("patch"), f.get("status", "modified"), f.get("previous_filename")
        )
        for f in compared.get("files") or []
        if not any(path_matches(f["filename"], pattern) for pattern in paths_ignore)
    ]


async def _not_posted_yet(
    gh: Any, full_name: str, number: int, comments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The comments the PR does not already carry (same place, same words)."""
    posted = {
        (c.get("path"), c.get("line"), c.get("body"))
        async for c in gh.getiter(f"/repos/{full_name}/pulls/{number}/comments")
    }
    return [c for c in comments if (c["path"], c["line"], c["body"]) not in posted]


async def review_pull_request(
    services: Services,
    repo: Repo,
    number: int,
    *,
    post: bool,
    pr_url: str,
    paths_ignore: tuple[str, ...] = (),
    since: str | None = None,
) -> dict[str, Any]:
    """Review PR `number` of `repo` with the default agent; post it as one review if asked.

    With `since` (a head already reviewed), only the changes after it are shown to the agent;
    comments are still anchored to the pull request's whole diff.
    """
    assert services.github is not None and repo.github is not None
    installation, full_name = int(repo.github["installation_id"]), repo.github["full_name"]
    gh = await services.github.api(installation)
    try:
        pr = await gh.getitem(f"/repos/{full_name}/pulls/{number}")
    except BadRequest as exc:
        if exc.status_code == 404:
            raise NotFound(f"{full_name} has no pull request #{number}") from None
        raise
    # https://docs.github.com/rest/pulls/pulls#list-pull-requests-files (paginated, 3000 at most)
    files = [
        PrFile(
            f["filename"], f.get("patch"), f.get("status", "modified"), f.get("previous_filename")
        )
        async for f in gh.getiter(f"/repos/{full_name}/pulls/{number}/files")
        if not any(path_matches(f["filename"], pattern) for pattern in paths_ignore)
    ]
    reviewed = files
    if since and since != pr["head"]["sha"]:
        changed = await _changes_since(gh, full_name, since, pr["head"]["sha"], paths_ignore)
        reviewed = files if changed is None else changed
    description = clean_text(f"{pr.get('title') or ''}\n\n{pr.get('body') or ''}").strip()
    with tempfile.TemporaryDirectory(prefix="nimbus-review-") as scratch:
        workdir = Path(scratch) / "repo"
        workdir.mkdir()
        request = AgentRequest(
            phase="review",
            task_id=f"review-{full_name.replace('/', '-')}-{number}",
            description=description or f"Pull request #{number}",
            workdir=workdir,
            task_dir=Path(scratch),
            diff=_as_diff(reviewed),
            meter=UsageMeter(budget=services.settings.max_tokens_per_task),
        )
        output = await services.agents.get(None).run(request)
    review = output.review or {"summary": "", "comments": []}
    findings = [
        Finding(c["path"], c.get("line"), c["body"], blocking=bool(c.get("blocking")))
        for c in review["comments"]
    ]
    inline, moved = anchor(findings, files)
    if post:
        inline = await _not_posted_yet(gh, full_name, number, inline)
    not_reviewed = [f.path for f in files if f.patch is None]
    summary = summary_with(review.get("summary") or "", moved, not_reviewed)
    result: dict[str, Any] = {
        "pr_url": pr_url,
        "summary": summary,
        "comments": inline,
        "posted": False,
        "review_url": None,
    }
    if post:
        # https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request
        posted = await gh.post(
            f"/repos/{full_name}/pulls/{number}/reviews",
            data={
                "commit_id": pr["head"]["sha"],
                "body": summary or "Reviewed by Nimbus.",
                "event": "COMMENT",
                "comments": inline,
            },
        )
        result.update(posted=True, review_url=posted.get("html_url"))
    return result
