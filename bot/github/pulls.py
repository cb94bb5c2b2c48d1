"""Pull requests: automatic reviews as the repository's config says, and `/nimbus review`."""

from __future__ import annotations

import base64
import logging
from typing import Any

from gidgethub import BadRequest, routing, sansio

from bot.errors import ConfigError
from bot.github.context import GitHubContext
from bot.github.reviews import review_pull_request
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


async def review_once(
    ctx: GitHubContext, data: dict[str, Any], pr: dict[str, Any], config: RepoConfig
) -> None:
    """Review the PR's head commit unless it was reviewed already (a redelivery, a double ask)."""
    repository = data["repository"]
    full_name, number, head = repository["full_name"], int(pr["number"]), pr["head"]["sha"]
    store = ctx.services.store
    # Read before claiming this head, which then becomes the latest.
    since = await store.last_review(full_name, number)
    if not await store.claim_review(full_name, number, head):
        log.info("%s#%s at %s was reviewed already", full_name, number, head[:12])
        return
    repo = await ctx.register(int(data["installation"]["id"]), repository)
    try:
        await review_pull_request(
            ctx.services,
            repo,
            number,
            post=True,
            pr_url=pr["html_url"],
            paths_ignore=config.auto_review.paths_ignore,
            since=since,
        )
    except BaseException:
        # Not reviewed after all: a later push or ask may try again.
        await store.release_review(full_name, number, head)
        raise


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
    await review_once(ctx, event.data, pr, config)
