"""Forges: where a task's repository comes from and where its results go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.models import Repo, Task


@dataclass(frozen=True)
class Delivery:
    """What publishing a task's branch produced."""

    branch: str
    pr_url: str | None = None


class Forge(Protocol):
    """One kind of host for repositories: a plain git remote now, GitHub later."""

    async def clone(self, repo: Repo, dest: Path, branch: str | None) -> None:
        """Clone `repo` into `dest` (with whatever credentials this forge uses)."""
        ...

    async def checkout_commit(self, repo: Repo, sha: str, dest: Path) -> None:
        """Check out commit `sha` of `repo` into a new `dest`, without history (for reviews)."""
        ...

    async def publish(self, task: Task, repo: Repo, workdir: Path, branch: str) -> Delivery:
        """Push the task's branch and open whatever the forge offers for review (a PR)."""
        ...

    async def notify(self, task: Task) -> None:
        """Show people the task as it now is (a status comment); a plain remote has nowhere."""
        ...


class Forges:
    """Chooses the forge for a repository: GitHub for an App installation's, else plain git."""

    def __init__(self, default: Forge, github: Forge | None = None) -> None:
        self.default = default
        self.github = github

    def for_repo(self, repo: Repo) -> Forge:
        if repo.github and self.github is not None:
            return self.github
        return self.default
