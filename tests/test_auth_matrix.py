"""Who may call what (DESIGN §3): each endpoint with no key, another workspace's key, the right one.

A missing key is 401 except on the public endpoints (`/healthz`, `/openapi.json`, and
`/github/webhooks`, which is signed instead). Another workspace's key on workspace A's task, repo
or workspace is 404, or 422 for a body naming A's workspace or repo, in words that do not tell it
from one that does not exist. A refused request changes nothing.

All cells share one real server (conftest's `servers`: a fresh server and task per cell would
make this file take a minute). Each call that moves a task gets a task of its own; the refused
calls share one task per gate and check that it stays there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus

from bot.keys import hash_key
from tests.conftest import (
    API_KEY,
    CLIENT_LOGGERS,
    FAST_CONFIG,
    Server,
    make_repo,
    make_settings,
    servers,
)
from tests.test_github_flow import GitHubWorld, github_world
from tests.test_github_reviews import KEY as GITHUB_KEY
from tests.test_github_reviews import MULTIPLY, PR_URL, registered
from tests.test_github_webhooks import sign

pytestmark = pytest.mark.asyncio(loop_scope="module")

OTHER_KEY = "matrix-other-workspace-key-0123456789"
CALLERS: dict[str, dict[str, str]] = {
    "no-key": {},
    "other-workspace": {"X-API-Key": OTHER_KEY},
    "right-key": {"X-API-Key": API_KEY},
}
# Calls that move a task: the right key's call gets a task of its own at this gate.
MOVES = {
    "approve": "plan",
    "reject": "plan",
    "revise": "plan",
    "cancel": "plan",
    "approve-diff": "diff",
    "reject-diff": "diff",
}


@dataclass
class World:
    """Workspace A (ws-default) with its repositories and tasks, workspace B, a fake GitHub."""

    server: Server
    github: GitHubWorld
    root: Path
    repo_id: str  # a live repository of A
    gone_repo_id: str  # a repository of A that disappeared: its tasks fail at once
    other: str  # workspace B, opened by OTHER_KEY
    shared: dict[str, str]  # state ("plan", "diff", "ended") -> a task that stays in it
    own: dict[str, str] = field(default_factory=dict)  # MOVES key -> its own task

    async def snapshot(self, task_id: str | None) -> dict[str, Any]:
        """What a refused call must leave as it was: the task, and both workspaces' contents."""
        store = self.server.app.state.services.store
        state: dict[str, Any] = {}
        if task_id is not None:
            state["task"] = (await store.get_task(task_id)).to_json()
            state["events"] = len(await store.events_after(task_id, 0, 10_000))
        for workspace in ("ws-default", self.other):
            tasks = await store.list_tasks(
                workspace, status=None, repo_id=None, limit=1000, before=None
            )
            state[workspace] = {
                "tasks": sorted(t.id for t in tasks),
                "repos": [r.to_json() for r in await store.list_repos(workspace)],
            }
        return state


async def add_other_workspace(server: Server) -> str:
    store = server.app.state.services.store
    workspace = await store.create_workspace("other")
    await store.add_api_key(workspace.id, hash_key(OTHER_KEY), "")
    return workspace.id


async def task_at(server: Server, repo_id: str, state: str) -> str:
    """A task of `repo_id` waiting at gate `state`, or ended (`state` "ended")."""
    task_id = (await server.create_task(repo_id, agent_name="good"))["id"]
    if state == "ended":
        assert (await server.until_ended(task_id))["status"] == "failed"
        return task_id
    await server.until_gate(task_id, "plan")
    if state == "diff":
        approved = await server.client.post(f"/tasks/{task_id}/approve")
        assert approved.status_code == 200, approved.text
        await server.until_gate(task_id, "diff")
    return task_id


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    root = tmp_path_factory.mktemp("matrix")
    settings = make_settings(root, max_concurrent_tasks=10)
    async with servers() as start, github_world(root / "github", start, settings) as github:
        github.commit_on("feature", "calc.py", MULTIPLY, new=True)
        github.github.add_pull("octo-org", "hello", "feature", title="Add multiply")
        await registered(github)
        server = github.server
        repo_id = await server.register(make_repo(root / "a", config=FAST_CONFIG))
        gone = make_repo(root / "gone", config=FAST_CONFIG)
        gone_repo_id = await server.register(gone)
        shutil.rmtree(gone)
        states = ["plan", "diff", *MOVES.values()]
        tasks = await asyncio.gather(*(task_at(server, repo_id, s) for s in states))
        shared = dict(zip(["plan", "diff"], tasks, strict=False))
        shared["ended"] = await task_at(server, gone_repo_id, "ended")
        yield World(
            server=server,
            github=github,
            root=root,
            repo_id=repo_id,
            gone_repo_id=gone_repo_id,
            other=await add_other_workspace(server),
            shared=shared,
            own=dict(zip(MOVES, tasks[2:], strict=True)),
        )


@dataclass(frozen=True)
class Row:
    """One endpoint: how to call it, the task it needs, and the answer for each caller."""

    id: str
    method: str
    path: str  # {task} is the task's id
    answers: dict[str, int]
    state: str | None = None  # the task: "plan", "diff" or "ended"
    body: Callable[[World], Any] | None = None
    # What a successful call did to the task, as the right key's answer shows it.
    effect: Callable[[dict[str, Any]], bool] | None = None


SECURED = {"no-key": 401, "other-workspace": 404, "right-key": 200}
NAMES_A_WORKSPACE = {"no-key": 401, "other-workspace": 422, "right-key": 201}
PUBLIC = {"no-key": 200, "other-workspace": 200, "right-key": 200}


def _left(status: str, phase: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """The task left its gate: `status` now (and `phase`, when given)."""
    return lambda t: t["status"] == status and t["approval"] is None and phase in (None, t["phase"])


def _moves(name: str, effect: Callable[[dict[str, Any]], bool], body=None) -> Row:
    return Row(name, "POST", f"/tasks/{{task}}/{name}", SECURED, MOVES[name], body, effect)


ROWS = [
    Row("list-tasks-of-A", "GET", "/tasks/?workspace_id=ws-default", SECURED, "ended"),
    Row(
        "create-task-in-A",
        "POST",
        "/tasks/",
        NAMES_A_WORKSPACE,
        body=lambda w: {
            "workspace_id": "ws-default",
            "repo_id": w.gone_repo_id,
            "description": "x",
        },
    ),
    Row("get-task", "GET", "/tasks/{task}/", SECURED, "ended"),
    _moves("approve", _left("running")),
    _moves("reject", _left("cancelled")),
    _moves("revise", _left("running", "PLANNING"), lambda w: {"feedback": "smaller steps"}),
    _moves("cancel", _left("cancelled")),
    _moves("approve-diff", _left("running")),
    _moves("reject-diff", _left("cancelled")),
    Row("diff", "GET", "/tasks/{task}/diff", SECURED, "diff"),
    Row("list-repos-of-A", "GET", "/repos/?workspace_id=ws-default", SECURED),
    Row(
        "register-repo-in-A",
        "POST",
        "/repos/",
        NAMES_A_WORKSPACE,
        body=lambda w: {
            "workspace_id": "ws-default",
            "url": str(make_repo(w.root / f"new-{uuid.uuid4().hex[:8]}", config=FAST_CONFIG)),
        },
    ),
    Row("healthz", "GET", "/healthz", PUBLIC),
    Row("openapi", "GET", "/openapi.json", PUBLIC),
]
CELLS = [pytest.param(row, caller, id=f"{row.id}-{caller}") for row in ROWS for caller in CALLERS]


def mentions_only_the_id(refused: httpx2.Response, unknown: httpx2.Response, *ids: str) -> None:
    """Both are the same JSON error once the ids they name are blanked out."""
    assert refused.status_code == unknown.status_code, (refused.text, unknown.text)
    first, second = refused.json()["error"], unknown.json()["error"]
    for name in ids:
        first, second = first.replace(name, "<id>"), second.replace(name, "<id>")
    assert first == second


def client_for(world: World, headers: dict[str, str]) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=world.server.url, headers=headers, timeout=30)


@pytest.mark.parametrize(("row", "caller"), CELLS)
async def test_endpoint_answers_each_caller(world, row, caller):
    expected = row.answers[caller]
    task_id = None
    if row.state is not None:
        moves = caller == "right-key" and row.id in MOVES
        task_id = world.own[row.id] if moves else world.shared[row.state]
    path = row.path.replace("{task}", task_id or "")
    body = row.body(world) if row.body else None
    before = await world.snapshot(task_id)
    async with client_for(world, CALLERS[caller]) as client:
        response = await client.request(row.method, path, json=body)
        assert response.status_code == expected, response.text

        if expected >= 400:
            assert list(response.json()) == ["error"], response.text
            assert await world.snapshot(task_id) == before
        if expected == 401:
            assert "missing API key" in response.json()["error"]
        if caller == "other-workspace" and expected == 404:
            # Another workspace's task or workspace looks exactly like one that does not exist.
            named, unknown_id = (task_id, "task-0123abcd") if task_id else ("ws-default", "ws-no")
            unknown = await client.request(row.method, path.replace(named, unknown_id), json=body)
            mentions_only_the_id(response, unknown, named, unknown_id)
        if caller == "other-workspace" and expected == 422:
            assert "workspace_id" in response.json()["error"]
            unknown = await client.request(
                row.method, path, json={**body, "workspace_id": "ws-nope"}
            )
            mentions_only_the_id(response, unknown, "ws-default", "ws-nope")
        if caller == "other-workspace" and row.id == "list-tasks-of-A":
            # B's own collections, filtered by A's repository or not, show nothing of A's.
            for params in ({}, {"repo_id": world.repo_id}, {"workspace_id": world.other}):
                own = await client.get("/tasks/", params=params)
                assert own.json() == {"tasks": [], "next_cursor": None}, params
            assert (await client.get("/repos/")).json() == {"repos": []}

    if caller != "right-key":
        return
    answer = response.json() if response.headers["content-type"] == "application/json" else None
    if row.effect is not None:
        # The answer is the task just after the decision; the store has its events by then.
        assert answer["id"] == task_id and row.effect(answer), answer
        after = await world.snapshot(task_id)
        assert after["events"] > before["events"]
    if row.id == "get-task":
        assert answer["id"] == task_id
    if row.id == "list-tasks-of-A":
        assert task_id in [t["id"] for t in answer["tasks"]]
    if row.id == "diff":
        assert response.headers["content-type"].startswith("text/x-diff")
        assert response.text.startswith("diff --git ")
    if row.id in ("create-task-in-A", "register-repo-in-A"):
        assert answer["workspace_id"] == "ws-default"
    if row.id == "list-repos-of-A":
        assert world.repo_id in [r["id"] for r in answer["repos"]]


async def test_a_foreign_repo_looks_like_an_unknown_one(world):
    before = await world.snapshot(None)
    async with client_for(world, CALLERS["other-workspace"]) as client:
        answers = [
            await client.post(
                "/tasks/", json={"workspace_id": world.other, "repo_id": repo, "description": "x"}
            )
            for repo in (world.repo_id, "repo-0123abcd")
        ]
    assert answers[0].status_code == 422 and "repo_id" in answers[0].json()["error"]
    mentions_only_the_id(*answers, world.repo_id, "repo-0123abcd")
    assert await world.snapshot(None) == before


WEBHOOK_CELLS = [
    pytest.param(signed, caller, id=f"{'signed' if signed else 'unsigned'}-{caller}")
    for signed in (True, False)
    for caller in CALLERS
]


@pytest.mark.parametrize(("signed", "caller"), WEBHOOK_CELLS)
async def test_webhooks_ignore_the_key_and_need_the_signature(world, signed, caller):
    body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
    headers = {
        **CALLERS[caller],
        "Content-Type": "application/json",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        **({"X-Hub-Signature-256": sign(body)} if signed else {}),
    }
    async with client_for(world, {}) as client:
        response = await client.post("/github/webhooks", content=body, headers=headers)
    if signed:
        assert (response.status_code, response.json()["zen"]) == (200, "pong")
    else:
        assert response.status_code == 401
        assert "X-Hub-Signature-256" in response.json()["error"]


REVIEW_CALLERS = {
    "no-key": ({}, 401),
    "other-workspace": ({"X-API-Key": OTHER_KEY}, 404),
    # PR #1 belongs to ws-gh-1, the workspace of the App installation, which GITHUB_KEY opens.
    "right-key": ({"X-API-Key": GITHUB_KEY}, 200),
}


@pytest.mark.parametrize("caller", list(REVIEW_CALLERS))
async def test_review_answers_each_caller(world, caller):
    headers, status = REVIEW_CALLERS[caller]
    posted = dict(world.github.github.reviews)
    async with client_for(world, headers) as client:
        response = await client.post("/tasks/review/", json={"pr_url": PR_URL, "post": True})
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["posted"] is True
        assert len(world.github.github.reviews) == len(posted) + 1
    else:
        assert list(response.json()) == ["error"]
        # Nothing was posted on the pull request.
        assert world.github.github.reviews == posted


async def follow(url: str, headers: dict[str, str]) -> tuple[list[dict[str, Any]], int | None]:
    """Every event of an ended task, and the close code the server ended with."""
    async with websockets.connect(url, additional_headers=headers, open_timeout=10) as ws:
        seen = [json.loads(raw) async for raw in ws]
    return seen, ws.close_code


WS_CELLS = [
    pytest.param(headers, query, status, id=name)
    for name, headers, query, status in [
        ("no-key", {}, None, 401),
        ("unknown-key", {"X-API-Key": "nope"}, None, 401),
        ("other-workspace", {"X-API-Key": OTHER_KEY}, None, 404),
        ("right-key", {"X-API-Key": API_KEY}, None, 101),
        ("query-unknown-key", {}, "nope", 401),
        ("query-other-workspace", {}, OTHER_KEY, 404),
        ("query-right-key", {}, API_KEY, 101),
        # The header wins: a key in the query cannot widen what the header's key opens.
        ("header-other-query-right", {"X-API-Key": OTHER_KEY}, API_KEY, 404),
    ]
]


@pytest.mark.parametrize(("headers", "query", "status"), WS_CELLS)
async def test_websocket_answers_each_caller(world, headers, query, status):
    task_id = world.shared["ended"]
    url = f"{world.server.ws_url}/tasks/{task_id}/ws"
    if query is not None:
        url += f"?api_key={query}"
    if status == 101:
        seen, code = await follow(url, headers)
        assert (seen[0]["phase"], seen[-1]["event_type"], code) == ("QUEUED", "error", 1000)
        assert {e["task_id"] for e in seen} == {task_id}
        return
    with pytest.raises(InvalidStatus) as refused:
        await follow(url, headers)
    assert refused.value.response.status_code == status
    assert list(json.loads(refused.value.response.body)) == ["error"]


QUERY_KEY_CALLS = [
    pytest.param("GET", "/tasks/?workspace_id=ws-default", id="list-tasks"),
    pytest.param("GET", "/tasks/{task}/", id="get-task"),
    pytest.param("POST", "/tasks/{task}/approve", id="approve"),
    pytest.param("POST", "/tasks/{task}/cancel", id="cancel"),
]


@pytest.mark.parametrize(("method", "path"), QUERY_KEY_CALLS)
async def test_the_query_key_opens_only_the_websocket(world, method, path):
    """DESIGN §3 allows `?api_key=` for browsers on the WebSocket only."""
    task_id = world.shared["plan"]
    before = await world.snapshot(task_id)
    async with client_for(world, {}) as client:
        response = await client.request(
            method, path.replace("{task}", task_id), params={"api_key": API_KEY}
        )
    assert response.status_code == 401, response.text
    assert "X-API-Key" in response.json()["error"]
    assert await world.snapshot(task_id) == before


async def test_a_key_in_the_query_never_reaches_the_log(world, caplog):
    caplog.set_level(logging.DEBUG)
    base = f"{world.server.ws_url}/tasks/{world.shared['ended']}/ws"
    await follow(f"{base}?since=0&api_key={API_KEY}", {})
    with pytest.raises(InvalidStatus):
        await follow(f"{base}?API_KEY={OTHER_KEY}&api_key={OTHER_KEY}", {})
    async with client_for(world, {}) as client:
        await client.get("/tasks/", params={"api_key": API_KEY})
    # The clients' own loggers (httpx2, websockets.client) are the test's, not the server's.
    server_side = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(r.getMessage() for r in server_side)
    assert f"/tasks/{world.shared['ended']}/ws?since=0&api_key=***" in logged
    assert API_KEY not in logged and OTHER_KEY not in logged
