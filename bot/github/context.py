"""What the GitHub layer's handlers work with: workspaces, repositories, cancels."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

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


@dataclass
class GitHubContext:
    """What handlers work with: Nimbus's services and, when configured, the App's client."""

    services: Services
    app: GitHubApp | None

    async def install(self, installation: dict) -> str:
        """The installation's workspace, created on first sight."""
        account = (installation.get("account") or {}).get("login") or "github"
        workspace = workspace_id(int(installation["id"]))
        await self.services.store.ensure_workspace(workspace, f"GitHub: {account}")
        return workspace

    async def register(self, installation_id: int, repository: dict) -> Repo:
        """Register (or update) a repository of the installation."""
        workspace = await self.install({"id": installation_id})
        full_name = repository["full_name"]
        url = f"{web_url(self.services.settings.github_api_url)}/{full_name}.git"
        github = {
            "installation_id": installation_id,
            "full_name": full_name,
            "repo_id": int(repository["id"]),
        }
        repo = Repo(
            new_id("repo"), workspace, url, repository.get("default_branch"), now_us(), github
        )
        return await self.services.store.add_repo(repo)

    async def cancel(self, tasks: list[Task], why: str) -> int:
        cancelled = 0
        for task in tasks:
            with contextlib.suppress(Conflict):
                await commands.cancel(self.services.events, task, by=why)
                cancelled += 1
        return cancelled
