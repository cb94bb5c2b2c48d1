"""Who is calling: the API key (header, or `?api_key=` on the WebSocket) names a workspace."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from bot.errors import NotFound, Unauthorized
from bot.keys import hash_key
from bot.models import Repo, Task
from phases.context import Services

DEFAULT_WORKSPACE = "ws-default"


async def workspace_of(conn: HTTPConnection, *, allow_query: bool = False) -> str:
    """The caller's workspace id; 401 when the key is missing or unknown."""
    key = conn.headers.get("x-api-key")
    if not key and allow_query:
        key = conn.query_params.get("api_key")
    if not key:
        raise Unauthorized("missing API key: send it in the X-API-Key header")
    services: Services = conn.app.state.services
    bootstrap = services.settings.api_key
    if bootstrap and hmac.compare_digest(key.encode(), bootstrap.encode()):
        return DEFAULT_WORKSPACE
    workspace = await services.store.workspace_for_key(hash_key(key))
    if workspace is None:
        raise Unauthorized("unknown API key: create one with `nimbus key create --workspace ws-…`")
    return workspace


async def own_task(conn: HTTPConnection, workspace: str) -> Task:
    """The task named in the path, if it belongs to the caller's workspace (404 otherwise)."""
    task_id = conn.path_params["task_id"]
    task = await conn.app.state.services.store.get_task(task_id)
    if task is None or task.workspace_id != workspace:
        raise NotFound(f"no task {task_id!r} in your workspace")
    return task


async def own_repo(services: Services, workspace: str, repo_id: str) -> Repo | None:
    repo = await services.store.get_repo(repo_id)
    return repo if repo is not None and repo.workspace_id == workspace else None
