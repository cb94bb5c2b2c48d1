"""The GitHub forge: clone and push with the installation token, pull requests, checks, comments."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
from gidgethub import BadRequest, GitHubBroken

from bot.errors import GitError, PhaseError
from bot.forge import Delivery
from bot.git import Git
from bot.github import render
from bot.github.client import GitHubApp
from bot.github.context import web_url
from bot.models import Repo, Task
from bot.repo_config import parse_repo_config
from bot.retry import backoff
from bot.store import Store
from phases.machine import Gate, Phase

log = logging.getLogger("nimbus.github")

CHECK_NAME = "Nimbus verification"
# Tries at opening a pull request when GitHub answers 5xx and, looked for, it is not there.
_CREATE_ATTEMPTS = 3


@contextlib.asynccontextmanager
async def github_errors(doing: str) -> AsyncIterator[None]:
    """GitHub failing (5xx after retries, unreachable) as an error that says so and what to do."""
    try:
        yield
    except GitHubBroken as exc:
        raise PhaseError(
            f"GitHub failed while {doing}: {exc.status_code} {exc} after retries (GitHub may be"
            " down: https://www.githubstatus.com); try again later with `/nimbus retry` or a new"
            " task"
        ) from None
    except httpx2.TransportError as exc:
        raise PhaseError(
            f"GitHub could not be reached while {doing} ({type(exc).__name__}); check this"
            " server's network and NIMBUS_GITHUB_API_URL, then try again"
        ) from None


def _auth_header(token: str) -> str:
    # https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/authenticating-as-a-github-app-installation
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return f"Authorization: Basic {basic}"


def _installation(repo: Repo) -> tuple[int, str]:
    assert repo.github is not None, "not a GitHub repository"
    return int(repo.github["installation_id"]), str(repo.github["full_name"])


def _issue_number(task: Task) -> int | None:
    source = task.source or {}
    return int(source["issue"]) if source.get("type") == "github_issue" else None


class GitHubForge:
    """A repository of a GitHub App installation."""

    def __init__(self, app: GitHubApp, git: Git, store: Store) -> None:
        self.app = app
        self.git = git
        self.store = store
        self._web = web_url(app.api_url)
        # marker -> comment id, so that an edit does not list the issue's comments every time.
        self._comments: dict[str, int] = {}

    async def _git_with_token(self, repo: Repo, run: Any) -> None:
        """Run a git network operation with the installation token, renewing it once if refused."""
        installation, _ = _installation(repo)
        for attempt in range(2):
            try:
                await run(_auth_header(await self.app.token(installation)))
                return
            except GitError as exc:
                # With prompts off, git reports a refused token as a failed prompt.
                refused = any(
                    sign in str(exc)
                    for sign in ("401", "Authentication failed", "could not read Username")
                )
                if not refused or attempt:
                    raise
                # The token expired or was revoked mid-task: mint a new one and try again.
                self.app.forget_token(installation)

    async def clone(self, repo: Repo, dest: Path, branch: str | None) -> None:
        installation, full_name = _installation(repo)
        async with github_errors(f"cloning {full_name}"):
            gh = await self.app.api(installation)
            # Cloned from where GitHub says the repository is (DESIGN §6).
            info = await gh.getitem(f"/repos/{full_name}")
            url, branch = info["clone_url"], branch or info.get("default_branch")
            await self._git_with_token(
                repo, lambda auth: self.git.clone(url, dest, branch, auth_header=auth)
            )

    async def checkout_commit(self, repo: Repo, sha: str, dest: Path) -> None:
        """Commit `sha` of `repo` (a pull request's head) into `dest`, for a review to read."""
        installation, full_name = _installation(repo)
        gh = await self.app.api(installation)
        url = (await gh.getitem(f"/repos/{full_name}"))["clone_url"]
        await self._git_with_token(
            repo, lambda auth: self.git.fetch_commit(url, dest, sha, auth_header=auth)
        )

    async def publish(self, task: Task, repo: Repo, workdir: Path, branch: str) -> Delivery:
        installation, full_name = _installation(repo)
        async with github_errors(f"opening the pull request on {full_name}"):
            gh = await self.app.api(installation)
            # To where GitHub says the repository is, whatever the clone's remote says.
            url = (await gh.getitem(f"/repos/{full_name}"))["clone_url"]
            await self._git_with_token(
                repo, lambda auth: self.git.push(workdir, url, branch, auth_header=auth)
            )
            pr = await self._pull_request(gh, task, full_name, branch)
            await self._check_run(gh, task, full_name, await self.git.head(workdir))
        return Delivery(branch=branch, pr_url=pr["html_url"])

    async def _existing_pr(self, gh: Any, full_name: str, branch: str) -> dict | None:
        owner = full_name.split("/")[0]
        async for pr in gh.getiter(f"/repos/{full_name}/pulls?state=open&head={owner}:{branch}"):
            return pr
        return None

    async def _pull_request(self, gh: Any, task: Task, full_name: str, branch: str) -> dict:
        existing = await self._existing_pr(gh, full_name, branch)
        if existing is not None:
            return existing
        config, _ = parse_repo_config(task.state.get("config_text"))
        data = {
            "title": render.pr_title(task),
            "head": branch,
            "base": task.state.get("default_branch") or "main",
            "body": render.pr_body(task, _issue_number(task)),
            "draft": config.draft_pr,
        }
        try:
            return await self._create_pr(gh, full_name, branch, data)
        except BadRequest as exc:
            if not data["draft"] or "draft" not in str(exc).lower():
                raise PhaseError(f"GitHub refused the pull request: {exc}") from None
        # The repository's plan has no draft pull requests: open a normal one.
        try:
            return await self._create_pr(gh, full_name, branch, {**data, "draft": False})
        except BadRequest as exc:
            raise PhaseError(f"GitHub refused the pull request: {exc}") from None

    async def _create_pr(self, gh: Any, full_name: str, branch: str, data: dict) -> dict:
        """POST the pull request; after a 5xx, the one GitHub opened anyway, or another try."""
        attempts = 0
        while True:
            try:
                return await gh.post(f"/repos/{full_name}/pulls", data=data)
            except GitHubBroken:
                # GitHub may have opened it before failing: look before creating it again.
                found = await self._existing_pr(gh, full_name, branch)
                if found is not None:
                    return found
                attempts += 1
                if attempts == _CREATE_ATTEMPTS:
                    raise
                await asyncio.sleep(backoff(attempts - 1, self.app.retry_base))

    async def _check_run(self, gh: Any, task: Task, full_name: str, sha: str) -> None:
        """The verification result on the PR's head commit."""
        verification = task.verification or {}
        passed = verification.get("passed")
        conclusion = "neutral" if passed is None else ("success" if passed else "failure")
        try:
            await gh.post(
                f"/repos/{full_name}/check-runs",
                data={
                    "name": CHECK_NAME,
                    "head_sha": sha,
                    "status": "completed",
                    "conclusion": conclusion,
                    "output": {
                        "title": verification.get("summary") or "not verified",
                        "summary": verification.get("summary") or "not verified",
                    },
                },
            )
        except Exception:
            # The PR is what matters; a missing check is logged, not a failed task.
            log.exception("task %s: creating the check run failed", task.id)

    async def notify(self, task: Task) -> None:
        """Keep the issue's status comment current; post the plan and the diff at their gates."""
        issue = _issue_number(task)
        repo_github = (task.source or {}).get("repository")
        installation = (task.source or {}).get("installation_id")
        if issue is None or not repo_github or installation is None:
            return
        gh = await self.app.api(int(installation))
        await self._upsert(
            gh, repo_github, issue, render.marker(task.id), render.status_comment(task)
        )
        if task.phase == Phase.AWAITING_APPROVAL and task.approval == Gate.PLAN:
            await self._upsert(
                gh, repo_github, issue, render.marker(task.id, "plan"), render.plan_comment(task)
            )
        if task.phase in (Phase.DONE, Phase.FAILED):
            await self._upsert(
                gh,
                repo_github,
                issue,
                render.marker(task.id, "result"),
                render.result_comment(task),
            )
            label = (task.source or {}).get("label")
            if label:
                # The trigger label comes off when the task ends, so it can be applied again.
                with contextlib.suppress(BadRequest):
                    name = quote(label, safe="")
                    await gh.delete(f"/repos/{repo_github}/issues/{issue}/labels/{name}")
        if task.phase == Phase.AWAITING_APPROVAL and task.approval == Gate.DIFF:
            diff = await self.store.get_diff(task.id) or ""
            base = task.state.get("default_branch") or "main"
            compare = f"{self._web}/{repo_github}/compare/{base}...{task.branch}"
            await self._upsert(
                gh,
                repo_github,
                issue,
                render.marker(task.id, "diff"),
                render.diff_comment(task, diff, compare_url=compare),
            )

    async def _upsert(self, gh: Any, full_name: str, issue: int, marker: str, body: str) -> None:
        comment_id = self._comments.get(marker)
        if comment_id is None:
            async for comment in gh.getiter(f"/repos/{full_name}/issues/{issue}/comments"):
                # Only Nimbus's own comments: anyone could write a marker into theirs.
                author = comment.get("user") or {}
                if author.get("type") == "Bot" and comment.get("body", "").startswith(marker):
                    comment_id = comment["id"]
                    break
        if comment_id is None:
            created = await gh.post(
                f"/repos/{full_name}/issues/{issue}/comments", data={"body": body}
            )
            self._comments[marker] = created["id"]
        else:
            self._comments[marker] = comment_id
            await gh.patch(f"/repos/{full_name}/issues/comments/{comment_id}", data={"body": body})
