"""Reviewing a pull request: its files from GitHub, the agent's review in chunks, posted once."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from gidgethub import BadRequest

from bot.agents.base import AgentRequest, UsageMeter
from bot.errors import AgentError, BudgetExceeded, NimbusError, NotFound, RateLimited
from bot.github.anchors import Finding, PrFile, anchor, summary_with
from bot.github.commands import clean_text
from bot.github.review_scope import Chunk, Scope, plan_review
from bot.models import Repo
from bot.repo_config import path_matches
from phases.context import Services

# https://docs.github.com/rest/commits/commits#compare-two-commits lists up to 300 files.
_COMPARE_MAX_FILES = 300
# Chunks reviewed at once: enough to keep a large review's wall time down, few enough that one
# review does not take all of a provider's rate limit.
CONCURRENCY = 3


def _scratch_folder(parent: Path) -> Path:
    """A new folder for one review, in the data folder like tasks' clones."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="review-", dir=parent))


class ReviewSkipped(NimbusError):
    """A review that was not made, and why (said in a neutral check run, or as the API's error)."""

    def __init__(self, reason: str, *, retry_later: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # True when the same head may be reviewed on a later ask (a rate limit passes).
        self.retry_later = retry_later


def _pr_file(entry: dict[str, Any]) -> PrFile:
    return PrFile(
        entry["filename"],
        entry.get("patch"),
        entry.get("status", "modified"),
        entry.get("previous_filename"),
    )


def _ignored(path: str, paths_ignore: tuple[str, ...]) -> bool:
    return any(path_matches(path, pattern) for pattern in paths_ignore)


async def _changes_since(
    gh: Any, full_name: str, base: str, head: str, paths_ignore: tuple[str, ...]
) -> list[PrFile] | None:
    """The files changed from `base` to `head`, as GitHub's compare gives them."""
    # https://docs.github.com/rest/commits/commits#compare-two-commits
    try:
        compared = await gh.getitem(f"/repos/{full_name}/compare/{base}...{head}")
    except BadRequest:
        return None  # the old head is gone (a force-push): the whole PR is reviewed instead
    listed = compared.get("files") or []
    if len(listed) >= _COMPARE_MAX_FILES:
        return None  # compare lists 300 files at most: the rest would be silently missed
    return [_pr_file(f) for f in listed if not _ignored(f["filename"], paths_ignore)]


async def _not_posted_yet(
    gh: Any, full_name: str, number: int, comments: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The comments the PR does not already carry (same place, same words)."""
    posted = {
        (c.get("path"), c.get("line"), c.get("body"))
        async for c in gh.getiter(f"/repos/{full_name}/pulls/{number}/comments")
    }
    return [c for c in comments if (c["path"], c["line"], c["body"]) not in posted]


def _why_failed(error: AgentError) -> str:
    if isinstance(error, BudgetExceeded):
        return "the review's token budget (NIMBUS_MAX_TOKENS_PER_TASK) ran out"
    if isinstance(error, RateLimited):
        return "the model provider's rate limit"
    return f"the agent failed on its part: {str(error)[:200]}"


class _Review:
    """One run of the agent over a pull request's chunks."""

    def __init__(self, services: Services, pr: dict[str, Any], task_id: str) -> None:
        self.agent = services.agents.get(None)
        self.meter = UsageMeter(budget=services.settings.max_tokens_per_task)
        self.task_id = task_id
        title = clean_text(f"{pr.get('title') or ''}\n\n{pr.get('body') or ''}").strip()
        self.description = title or f"Pull request #{pr['number']}"

    async def chunks(
        self, chunks: list[Chunk], workdir: Path, task_dir: Path
    ) -> list[dict[str, Any] | AgentError]:
        """Each chunk's review, or the error that stopped it, in the chunks' order."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(index: int, chunk: Chunk) -> dict[str, Any] | AgentError:
            description = self.description
            if len(chunks) > 1:
                description += (
                    f"\n\n(This is part {index + 1} of {len(chunks)} of the pull request's diff;"
                    " the other files are reviewed separately.)"
                )
            request = AgentRequest(
                phase="review",
                task_id=self.task_id,
                description=description,
                workdir=workdir,
                # Its own folder: an agent's prompt and diff files must not meet another chunk's.
                task_dir=task_dir / f"part-{index + 1}",
                diff=chunk.diff(),
                meter=self.meter,
            )
            async with gate:
                try:
                    output = await self.agent.run(request)
                except AgentError as exc:
                    return exc
            return output.review or {"summary": "", "comments": []}

        return list(await asyncio.gather(*(one(i, c) for i, c in enumerate(chunks))))


def _merged(
    scope: Scope, outcomes: list[dict[str, Any] | AgentError]
) -> tuple[list[str], list[Finding], list[tuple[str, str]]]:
    """The chunks' summaries and findings as one review; a failed chunk's files are named."""
    failed = [o for o in outcomes if isinstance(o, AgentError)]
    if outcomes and len(failed) == len(outcomes):
        if all(isinstance(e, RateLimited) for e in failed):
            raise ReviewSkipped(
                f"rate limited by the model provider: {failed[0]}", retry_later=True
            )
        raise failed[0]
    summaries: list[str] = []
    findings: list[Finding] = []
    left_out = list(scope.not_reviewed)
    for chunk, outcome in zip(scope.chunks, outcomes, strict=True):
        if isinstance(outcome, AgentError):
            left_out += [(path, _why_failed(outcome)) for path in chunk.paths]
            continue
        if (outcome.get("summary") or "").strip():
            summaries.append(outcome["summary"].strip())
        findings += [
            Finding(c["path"], c.get("line"), c["body"], blocking=bool(c.get("blocking")))
            for c in outcome["comments"]
        ]
    return summaries, findings, left_out


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

    The agent reads the PR's head checked out in a scratch folder and its diff, in chunks that
    fit the review's token budget. With `since` (a head already reviewed), only the changes after
    it are shown; comments are still anchored to the pull request's whole diff. Raises
    ReviewSkipped when the PR has more files than NIMBUS_REVIEW_MAX_FILES or every chunk met a
    rate limit.
    """
    assert services.github is not None and repo.github is not None
    settings = services.settings
    installation, full_name = int(repo.github["installation_id"]), repo.github["full_name"]
    gh = await services.github.api(installation)
    try:
        pr = await gh.getitem(f"/repos/{full_name}/pulls/{number}")
    except BadRequest as exc:
        if exc.status_code == 404:
            raise NotFound(f"{full_name} has no pull request #{number}") from None
        raise
    changed = int(pr.get("changed_files") or 0)
    if changed > settings.review_max_files:
        raise ReviewSkipped(
            f"too large: {changed} files changed, more than the {settings.review_max_files}"
            " this server reviews (NIMBUS_REVIEW_MAX_FILES)"
        )
    # https://docs.github.com/rest/pulls/pulls#list-pull-requests-files (paginated, 3000 at most)
    files = [
        _pr_file(f)
        async for f in gh.getiter(f"/repos/{full_name}/pulls/{number}/files?per_page=100")
        if not _ignored(f["filename"], paths_ignore)
    ]
    head = pr["head"]["sha"]
    shown = files
    if since and since != head:
        newer = await _changes_since(gh, full_name, since, head, paths_ignore)
        shown = files if newer is None else newer
    scope = plan_review(
        shown,
        budget_tokens=settings.review_budget_tokens,
        chunk_tokens=settings.review_chunk_tokens,
    )
    review = _Review(services, pr, f"review-{full_name.replace('/', '-')}-{number}")
    outcomes: list[dict[str, Any] | AgentError] = []
    if scope.chunks:
        scratch = await asyncio.to_thread(_scratch_folder, settings.data_dir / "reviews")
        try:
            workdir = scratch / "repo"
            await services.forges.for_repo(repo).checkout_commit(repo, head, workdir)
            outcomes = await review.chunks(scope.chunks, workdir, scratch)
        finally:
            # A checkout of a large repository takes a while to delete: off the event loop.
            await asyncio.to_thread(shutil.rmtree, scratch, True)
    summaries, findings, left_out = _merged(scope, outcomes)
    redactor = services.events.redactor
    # What goes on the PR passes the redactor, like every event: agents' errors are quoted in it.
    findings = [replace(f, body=redactor.text(f.body)) for f in findings]
    left_out = [(path, redactor.text(reason)) for path, reason in left_out]
    inline, moved = anchor(findings, files)
    if post:
        inline = await _not_posted_yet(gh, full_name, number, inline)
    summary = summary_with(redactor.text("\n\n".join(summaries)), moved, left_out)
    left_out_paths = {path for path, _ in left_out}
    result: dict[str, Any] = {
        "pr_url": pr_url,
        "head_sha": head,
        "summary": summary,
        "comments": inline,
        "files": len(shown),
        "reviewed_files": sum(1 for p in scope.reviewed_paths if p not in left_out_paths),
        "not_reviewed": [{"path": path, "reason": reason} for path, reason in left_out],
        "chunks": len(scope.chunks),
        "usage": review.meter.as_dict(),
        "posted": False,
        "review_url": None,
    }
    if post:
        # https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request
        posted = await gh.post(
            f"/repos/{full_name}/pulls/{number}/reviews",
            data={
                "commit_id": head,
                "body": summary or "Reviewed by Nimbus.",
                "event": "COMMENT",
                "comments": inline,
            },
        )
        result.update(posted=True, review_url=posted.get("html_url"))
    return result
