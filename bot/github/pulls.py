"""Pull requests: automatic reviews as the repository's config says, and `/nimbus review`."""

from __future__ import annotations

import base64
import logging
from typing import Any

from gidgethub import BadRequest, RateLimitExceeded, routing, sansio

from bot.errors import ConfigError
from bot.github.context import GitHubContext
from bot.github.reviews import ReviewSkipped, review_pull_request
from bot.redact import Redactor
from bot.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config

log = logging.getLogger("nimbus.github")

router = routing.Router()


async def repo_config(gh: Any, full_name: str, branch: str) -> RepoConfig:
    """`.github/nimbus.yml` of the default branch, defaults merged; defaults when absent."""
    try:
        # https://docs.github.com/rest/repos/contents#get-repository-content
        found = await gh.getitem(f"/repos/{full_name}/contents/{CONFIG_PATH}?ref={branch}")
    except BadRequest as exc:
        if exc.status_code == 404:
            return RepoConfig()
        raise
    text = base64.b64decode(found.get("content") or "").decode("utf-8", errors="replace")
    try:
        return parse_repo_config(text)[0]
    except ConfigError as exc:
        log.warning("%s: %s; automatic reviews use the defaults", full_name, exc)
        return RepoConfig()


CHECK_NAME = "Nimbus review"


def _rate_limited(exc: BaseException) -> bool:
    """GitHub refused for its rate limit (primary, secondary or 429) after the client's retries."""
    if isinstance(exc, RateLimitExceeded):
        return True
    if isinstance(exc, BadRequest):
        status = exc.status_code
        return status == 429 or (status == 403 and "rate limit" in str(exc).lower())
    return False


class ReviewCheck:
    """The check run that says what became of a PR head's review: made, or skipped and why."""

    def __init__(self, gh: Any, full_name: str, head: str, redactor: Redactor) -> None:
        self.gh, self.full_name, self.head = gh, full_name, head
        # Reasons carry error messages: no secret may reach GitHub through them.
        self.redactor = redactor
        self.run_id: int | None = None

    async def _send(self, data: dict[str, Any]) -> None:
        # The review is what matters: a check GitHub refuses is logged, never the review's end.
        try:
            if self.run_id is None:
                # https://docs.github.com/rest/checks/runs#create-a-check-run
                made = await self.gh.post(
                    f"/repos/{self.full_name}/check-runs",
                    data={"name": CHECK_NAME, "head_sha": self.head, **data},
                )
                self.run_id = int(made["id"])
            else:
                # https://docs.github.com/rest/checks/runs#update-a-check-run
                await self.gh.patch(f"/repos/{self.full_name}/check-runs/{self.run_id}", data=data)
        except Exception:
            log.exception("%s at %s: the review's check run failed", self.full_name, self.head)

    async def start(self) -> None:
        await self._send({"status": "in_progress", "output": _output("Reviewing", "")})

    async def finish(self, conclusion: str, title: str, summary: str) -> None:
        await self._send(
            {"status": "completed", "conclusion": conclusion, "output": _output(title, summary)}
        )

    async def skipped(self, reason: str, hint: str) -> None:
        """A neutral check: the review was not made, never a silent success."""
        reason = self.redactor.text(reason)
        summary = f"{reason}\n\n{hint}" if hint else reason
        await self.finish("neutral", f"Review skipped: {reason}"[:200], summary)


def _output(title: str, summary: str) -> dict[str, str]:
    # GitHub's limit on a check run's summary is 65535 characters.
    return {"title": title, "summary": summary[:65_000] or title}


def _done_summary(result: dict[str, Any]) -> tuple[str, str]:
    reviewed, files = result["reviewed_files"], result["files"]
    comments = len(result["comments"])
    title = f"Reviewed {reviewed} of {files} file{'s' if files != 1 else ''}"
    title += f", {comments} comment{'s' if comments != 1 else ''}"
    lines = [f"{title}: {result['review_url']}" if result.get("review_url") else title]
    if result["not_reviewed"]:
        lines.append(f"{len(result['not_reviewed'])} not reviewed; the review's summary says why.")
    return title, "\n\n".join(lines)


async def review_once(
    ctx: GitHubContext, data: dict[str, Any], pr: dict[str, Any], config: RepoConfig
) -> None:
    """Review the PR's head commit unless it was reviewed already (a redelivery, a double ask)."""
    assert ctx.app is not None
    repository = data["repository"]
    full_name, number, head = repository["full_name"], int(pr["number"]), pr["head"]["sha"]
    store = ctx.services.store
    # Read before claiming this head, which then becomes the latest.
    since = await store.last_review(full_name, number)
    if not await store.claim_review(full_name, number, head):
        log.info("%s#%s at %s was reviewed already", full_name, number, head[:12])
        return
    installation = int(data["installation"]["id"])
    redactor = ctx.services.events.redactor
    check = ReviewCheck(await ctx.app.api(installation), full_name, head, redactor)
    await check.start()
    repo = await ctx.register(installation, repository)
    try:
        result = await review_pull_request(
            ctx.services,
            repo,
            number,
            post=True,
            pr_url=pr["html_url"],
            paths_ignore=config.auto_review.paths_ignore,
            since=since,
        )
    except ReviewSkipped as exc:
        if exc.retry_later:
            await store.release_review(full_name, number, head)
        hint = "`/nimbus review` asks again." if exc.retry_later else ""
        await check.skipped(exc.reason, hint)
        return
    except BaseException as exc:
        # Not reviewed after all: a later push or ask may try again.
        await store.release_review(full_name, number, head)
        if _rate_limited(exc):
            await check.skipped(f"rate limited by GitHub: {exc}", "`/nimbus review` asks again.")
            return
        if isinstance(exc, Exception):
            await check.skipped(f"the review failed: {exc}", "`/nimbus review` asks again.")
        raise
    await check.finish("success", *_done_summary(result))


async def pause(ctx: GitHubContext, data: dict[str, Any], by: str) -> str:
    """Stop automatic reviews of the PR; the reply to post."""
    await ctx.services.store.pause_reviews(
        data["repository"]["full_name"], int(data["issue"]["number"]), by
    )
    return (
        "Automatic reviews are paused on this pull request. `/nimbus resume` turns them back on;"
        " `/nimbus review` asks for one now."
    )


async def resume(ctx: GitHubContext, data: dict[str, Any]) -> str:
    """Let automatic reviews of the PR run again; the reply to post."""
    resumed = await ctx.services.store.resume_reviews(
        data["repository"]["full_name"], int(data["issue"]["number"])
    )
    if not resumed:
        return "Automatic reviews were not paused on this pull request."
    return "Automatic reviews are on again: the next push is reviewed (`/nimbus review` now)."


def _is_bot(user: dict[str, Any]) -> bool:
    return user.get("type") == "Bot" or str(user.get("login", "")).endswith("[bot]")


# https://docs.github.com/webhooks/webhook-events-and-payloads#pull_request
@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="ready_for_review")
@router.register("pull_request", action="synchronize")
async def changed(event: sansio.Event, ctx: GitHubContext, *a: Any, **kw: Any) -> None:
    pr = event.data["pull_request"]
    author = pr.get("user") or {}
    # Bots' PRs (dependency updates, Nimbus's own) are not reviewed automatically.
    if ctx.app is None or _is_bot(author):
        return
    repository = event.data["repository"]
    gh = await ctx.app.api(int(event.data["installation"]["id"]))
    config = await repo_config(gh, repository["full_name"], repository["default_branch"])
    rules = config.auto_review
    # Off unless the repository or the server turns it on: reviews cost tokens.
    if not (rules.enabled or ctx.services.settings.auto_review):
        return
    if pr.get("draft") and not rules.drafts:
        return
    if author.get("login") in rules.ignore_authors:
        return
    paused_by = await ctx.services.store.reviews_paused_by(repository["full_name"], pr["number"])
    if paused_by:
        check = ReviewCheck(
            gh, repository["full_name"], pr["head"]["sha"], ctx.services.events.redactor
        )
        await check.skipped(
            f"automatic reviews are paused on this pull request (by {paused_by})",
            "`/nimbus resume` turns them back on; `/nimbus review` asks for one now.",
        )
        return
    await review_once(ctx, event.data, pr, config)
