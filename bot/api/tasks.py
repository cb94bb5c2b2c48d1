"""The Tasks API (DESIGN §3): create, list, read, decide at the gates, cancel, diff."""

from __future__ import annotations

import base64
import binascii
import json

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.api.auth import own_repo, own_task, workspace_of
from bot.api.bodies import Body, Field
from bot.errors import NotFound, Unprocessable
from bot.models import Task
from bot.skills import valid_skill_name
from phases import commands
from phases.context import Services
from phases.machine import STATUSES

MAX_DESCRIPTION = 20_000
DEFAULT_LIMIT, MAX_LIMIT = 50, 200

CREATE_TASK = Body(
    "CreateTask",
    Field("workspace_id", str, required=True, description="The workspace of your API key."),
    Field("repo_id", str, required=True, description="A repository registered with POST /repos/."),
    Field(
        "description",
        str,
        required=True,
        max_length=MAX_DESCRIPTION,
        description="What to change, in plain words.",
    ),
    Field(
        "auto_approve", bool, default=False, description="Skip both approval gates (plan and diff)."
    ),
    Field("skill_name", str, nullable=True, description="A skill added to every prompt."),
    Field("agent_name", str, nullable=True, description="An agent of the server's configuration."),
)
REVISE = Body(
    "Revise",
    Field(
        "feedback",
        str,
        required=True,
        max_length=MAX_DESCRIPTION,
        description="What the next plan should do differently.",
    ),
)


def _services(request: Request) -> Services:
    return request.app.state.services


def _task_response(task: Task, status_code: int = 200) -> JSONResponse:
    return JSONResponse(task.to_json(), status_code=status_code)


def _check_choices(services: Services, agent_name: str | None, skill_name: str | None) -> None:
    if not services.agents.has(agent_name):
        raise Unprocessable(
            f"field 'agent_name': unknown agent {agent_name!r}; the agents are"
            f" {', '.join(services.agents.names)}"
        )
    if skill_name is not None and not valid_skill_name(skill_name):
        available = services.skills.on_server()
        raise Unprocessable(
            f"field 'skill_name': {skill_name!r} is not a skill name (letters, digits, '-', '_');"
            f" skills on this server: {', '.join(available) or 'none'}, or any"
            " .nimbus/skills/<name>.md in the repository"
        )


async def create_task(request: Request) -> Response:
    workspace = await workspace_of(request)
    body = await CREATE_TASK.read(request)
    services = _services(request)
    if body["workspace_id"] != workspace:
        raise Unprocessable(
            f"field 'workspace_id': {body['workspace_id']!r} is not the workspace of your API key"
            f" ({workspace})"
        )
    if await own_repo(services, workspace, body["repo_id"]) is None:
        raise Unprocessable(
            f"field 'repo_id': no repository {body['repo_id']!r} in workspace {workspace};"
            " register it with POST /repos/"
        )
    _check_choices(services, body["agent_name"], body["skill_name"])
    task = await commands.new_task(
        services.events,
        workspace_id=workspace,
        repo_id=body["repo_id"],
        description=body["description"],
        auto_approve=body["auto_approve"],
        skill_name=body["skill_name"],
        agent_name=body["agent_name"],
    )
    return _task_response(task, 201)


def _cursor(task: Task) -> str:
    raw = json.dumps([task.created_us, task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[int, str]:
    try:
        created, task_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(created, int) and 0 <= created < 2**63 and isinstance(task_id, str):
            return created, task_id
    except (ValueError, TypeError, binascii.Error):
        pass
    raise Unprocessable("parameter 'cursor' is not a cursor this API gave out; use next_cursor")


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_LIMIT:
        raise Unprocessable(f"parameter 'limit' must be a whole number from 1 to {MAX_LIMIT}")
    return int(value)


async def list_tasks(request: Request) -> Response:
    workspace = await workspace_of(request)
    query = request.query_params
    wanted = query.get("workspace_id", workspace)
    if wanted != workspace:
        raise NotFound(f"no workspace {wanted!r} for your API key")
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise Unprocessable(f"parameter 'status' must be one of {', '.join(STATUSES)}")
    limit = _limit(query.get("limit"))
    before = _parse_cursor(query["cursor"]) if query.get("cursor") else None
    tasks = await _services(request).store.list_tasks(
        workspace, status=status, repo_id=query.get("repo_id"), limit=limit + 1, before=before
    )
    page = tasks[:limit]
    next_cursor = _cursor(page[-1]) if len(tasks) > limit else None
    return JSONResponse({"tasks": [t.to_json() for t in page], "next_cursor": next_cursor})


async def get_task(request: Request) -> Response:
    workspace = await workspace_of(request)
    return _task_response(await own_task(request, workspace))


async def get_diff(request: Request) -> Response:
    workspace = await workspace_of(request)
    task = await own_task(request, workspace)
    diff = await _services(request).store.get_diff(task.id) if task.has_diff else None
    if diff is None:
        raise NotFound(f"task {task.id} has no diff yet (it is {task.phase})")
    return Response(diff, media_type="text/x-diff")


def _decision(command: str):
    async def endpoint(request: Request) -> Response:
        workspace = await workspace_of(request)
        task = await own_task(request, workspace)
        feedback = (await REVISE.read(request))["feedback"] if command == "revise" else None
        decided = await commands.decide(_services(request).events, task, command, feedback=feedback)
        return _task_response(decided)

    endpoint.__name__ = command.replace("-", "_")
    return endpoint


async def cancel_task(request: Request) -> Response:
    workspace = await workspace_of(request)
    task = await own_task(request, workspace)
    return _task_response(await commands.cancel(_services(request).events, task))


approve = _decision("approve")
reject = _decision("reject")
approve_diff = _decision("approve-diff")
reject_diff = _decision("reject-diff")
revise = _decision("revise")
