"""What the GitHub layer's handlers work with: workspaces, repositories, cancels."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from bot.errors import Conflict
from bot.github.client import GitHubApp
from bot.models import Repo, Task, new_id, now_us
from phases import commands
from phases.context import Services


def workspace_id(installation_id: int) -> str:
    """Each installation has its own workspace (DESIGN §3)."""
    return f"ws-gh-{installation_id}"


def web_url(api_url: str) -> str:
    """github.com for api.github.com; `https://HOST` for GitHub Enterprise's `…/api/v3`."""
    if api_url.rstrip("/") == "https://api.github.com":
        return "https://github.com"
    return api_url.rstrip("/").removesuffix("/api/v3")


# How long a collaborator's permission is trusted before GitHub is asked again.
PERMISSION_TTL = 60.0
_WRITERS = frozenset({"admin", "maintain", "write"})


@dataclass
class GitHubContext:
    """What handlers work with: Nimbus's services and, when configured, the App's client."""

    services: Services
    app: GitHubApp | None
    _permissions: dict[tuple[str, str], tuple[bool, float]] = field(default_factory=dict)
    # Every App delivery names its installation and repository; once stored, they are not
    # written again (two write transactions a delivery otherwise). Safe to keep: Nimbus never
    # deletes a workspace or a repository, and what a repeat would write is already there.
    _workspaces: set[str] = field(default_factory=set)
    _repos: dict[tuple[int, str, int], Repo] = field(default_factory=dict)

    async def can_write(self, gh: Any, full_name: str, login: str) -> bool:
        """Whether `login` has write, maintain or admin access (cached briefly)."""
        cached = self._permissions.get((full_name, login))
        if cached and cached[1] > time.monotonic():
            return cached[0]
        # https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user
        data = await gh.getitem(f"/repos/{full_name}/collaborators/{login}/permission")
        allowed = data.get("permission") in _WRITERS or data.get("role_name") in _WRITERS
        self._permissions[(full_name, login)] = (allowed, time.monotonic() + PERMISSION_TTL)
        return allowed

    async def install(self, installation: dict) -> str:
        """The installation's workspace, created on first sight."""
        workspace = workspace_id(int(installation["id"]))
        if workspace not in self._workspaces:
            # The name is given when the workspace is made, and kept after.
            account = (installation.get("account") or {}).get("login") or "github"
            await self.services.store.ensure_workspace(workspace, f"GitHub: {account}")
            self._workspaces.add(workspace)
        return workspace

    async def register(self, installation_id: int, repository: dict) -> Repo:
        """Register (or update) a repository of the installation; the `Repo` as registered.

        Its id, workspace and `github` are current; its default branch is as it was then (the
        first clone may have set it since): ask the store for that.
        """
        full_name = repository["full_name"]
        key = (installation_id, full_name, int(repository["id"]))
        if key in self._repos:
            return self._repos[key]
        workspace = await self.install({"id": installation_id})
        url = f"{web_url(self.services.settings.github_api_url)}/{full_name}.git"
        github = {
            "installation_id": installation_id,
            "full_name": full_name,
            "repo_id": int(repository["id"]),
        }
        repo = Repo(
            new_id("repo"), workspace, url, repository.get("default_branch"), now_us(), github
        )
        self._repos[key] = stored = await self.services.store.add_repo(repo)
        return stored

    async def cancel(self, tasks: list[Task], why: str) -> int:
        cancelled = 0
        for task in tasks:
            with contextlib.suppress(Conflict):
                await commands.cancel(self.services.events, task, by=why)
                cancelled += 1
        return cancelled
