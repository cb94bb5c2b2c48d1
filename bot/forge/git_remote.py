"""The plain git remote forge: clone and push with the server's own git credentials."""

from __future__ import annotations

from pathlib import Path

from bot.forge import Delivery
from bot.git import Git
from bot.models import Repo, Task


class GitRemoteForge:
    """Any git URL: results are a pushed branch, with no pull request (`pr_url` stays null)."""

    def __init__(self, git: Git) -> None:
        self.git = git

    async def clone(self, repo: Repo, dest: Path, branch: str | None) -> None:
        await self.git.clone(repo.url, dest, branch)

    async def checkout_commit(self, repo: Repo, sha: str, dest: Path) -> None:
        await self.git.fetch_commit(repo.url, dest, sha)

    async def publish(self, task: Task, repo: Repo, workdir: Path, branch: str) -> Delivery:
        await self.git.push(workdir, "origin", branch)
        return Delivery(branch=branch)

    async def notify(self, task: Task) -> None:
        return None
