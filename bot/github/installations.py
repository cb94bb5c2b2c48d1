"""Installing and removing the App: workspaces, repositories, and the tasks they concern."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.github.context import GitHubContext, workspace_id

log = logging.getLogger("nimbus.github")

router = routing.Router()


# https://docs.github.com/webhooks/webhook-events-and-payloads#installation
@router.register("installation", action="created")
@router.register("installation", action="new_permissions_accepted")
@router.register("installation", action="unsuspend")
async def installed(event: sansio.Event, ctx: GitHubContext, *args: Any, **kw: Any) -> None:
    installation = event.data["installation"]
    workspace = await ctx.install(installation)
    for repository in event.data.get("repositories") or []:
        await ctx.register(int(installation["id"]), repository)
    log.info("installation %s: workspace %s", installation["id"], workspace)


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def removed(event: sansio.Event, ctx: GitHubContext, *args: Any, **kw: Any) -> None:
    installation_id = int(event.data["installation"]["id"])
    store = ctx.services.store
    tasks = []
    for repo in await store.list_repos(workspace_id(installation_id)):
        tasks += await store.active_tasks(repo_id=repo.id)
    # The App can no longer act on these repositories: their tasks cannot finish.
    done = await ctx.cancel(tasks, f"the GitHub App was {event.data['action']}")
    log.info(
        "installation %s %s: %d task(s) cancelled", installation_id, event.data["action"], done
    )


# https://docs.github.com/webhooks/webhook-events-and-payloads#installation_repositories
@router.register("installation_repositories", action="added")
@router.register("installation_repositories", action="removed")
async def repositories(event: sansio.Event, ctx: GitHubContext, *args: Any, **kw: Any) -> None:
    installation_id = int(event.data["installation"]["id"])
    await ctx.install(event.data["installation"])
    for repository in event.data.get("repositories_added") or []:
        await ctx.register(installation_id, repository)
    store = ctx.services.store
    for repository in event.data.get("repositories_removed") or []:
        repo = await ctx.register(installation_id, repository)
        tasks = await store.active_tasks(repo_id=repo.id)
        await ctx.cancel(tasks, "the repository was removed from the GitHub App")
