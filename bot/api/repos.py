"""Repositories: register a git URL in a workspace, and list them."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.auth import workspace_of
from bot.api.bodies import Body, Field
from bot.errors import NotFound, Unprocessable
from bot.models import Repo, new_id, now_us
from bot.repo_urls import normalize_repo_url, valid_branch
from phases.context import Services

CREATE_REPO = Body(
    "CreateRepo",
    Field("workspace_id", str, required=True, description="The workspace of your API key."),
    Field(
        "url",
        str,
        required=True,
        max_length=2000,
        description="https://…, ssh://…, user@host:path; local paths when allowed.",
    ),
    Field(
        "default_branch",
        str,
        nullable=True,
        description="The branch to work from; the remote's HEAD when left out.",
    ),
)


async def create_repo(request: Request) -> Response:
    workspace = await workspace_of(request)
    body = await CREATE_REPO.read(request)
    services: Services = request.app.state.services
    if body["workspace_id"] != workspace:
        raise Unprocessable(
            f"field 'workspace_id': {body['workspace_id']!r} is not the workspace of your API key"
            f" ({workspace})"
        )
    branch = body["default_branch"]
    if branch is not None and not valid_branch(branch):
        raise Unprocessable(f"field 'default_branch': {branch!r} is not a valid branch name")
    settings = services.settings
    url = normalize_repo_url(
        body["url"], allow_local=settings.local_repos_allowed, data_dir=settings.data_dir
    )
    existing = await services.store.find_repo(workspace, url)
    if existing is not None:
        return JSONResponse(existing.to_json(), status_code=200)
    repo = await services.store.add_repo(
        Repo(
            id=new_id("repo"),
            workspace_id=workspace,
            url=url,
            default_branch=branch,
            created_us=now_us(),
        )
    )
    return JSONResponse(repo.to_json(), status_code=201)


async def list_repos(request: Request) -> Response:
    workspace = await workspace_of(request)
    wanted = request.query_params.get("workspace_id", workspace)
    if wanted != workspace:
        raise NotFound(f"no workspace {wanted!r} for your API key")
    repos = await request.app.state.services.store.list_repos(workspace)
    return JSONResponse({"repos": [r.to_json() for r in repos]})
