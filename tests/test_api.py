"""The REST contract of DESIGN §3, spoken over HTTP to the real server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.routing import Route, WebSocketRoute

from bot.keys import hash_key
from tests.conftest import AGENTS, API_KEY, Server, git, make_repo

MIB = 1024 * 1024
SEED_FIELDS = [
    "id", "description", "status", "phase", "created_at", "repo_id", "workspace_id", "pr_url",
    "error",
]  # fmt: skip
MORE_FIELDS = [
    "updated_at", "approval", "auto_approve", "skill_name", "agent_name", "branch", "source",
    "plan", "verification", "usage",
]  # fmt: skip
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
OTHER_KEY = "other-workspace-key-9876543210"


async def task_ids(server: Server) -> list[str]:
    """Every task of ws-default, newest first."""
    response = await server.client.get("/tasks/", params={"limit": 200})
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()["tasks"]]


def error_problem(response: httpx2.Response, status: int, *mentions: str) -> str | None:
    """What keeps the response from being a JSON error of `status` naming each of `mentions`."""
    if response.status_code != status:
        return f"{response.status_code} instead of {status}: {response.text[:300]}"
    if not response.headers.get("content-type", "").startswith("application/json"):
        return f"not JSON: {response.headers.get('content-type')}"
    body = response.json()
    if list(body) != ["error"] or not isinstance(body["error"], str) or not body["error"]:
        return f"not {{'error': message}}: {body}"
    missing = [word for word in mentions if word not in body["error"]]
    return f"{body['error']!r} does not mention {missing}" if missing else None


def assert_error(response: httpx2.Response, status: int, *mentions: str) -> str:
    """The response is a JSON error with this status whose message names each of `mentions`."""
    problem = error_problem(response, status, *mentions)
    assert problem is None, problem
    return response.json()["error"]


async def other_workspace(server: Server) -> str:
    """A second workspace whose key is OTHER_KEY, made the way the CLI makes them."""
    store = server.app.state.services.store
    workspace = await store.create_workspace("other")
    await store.add_api_key(workspace.id, hash_key(OTHER_KEY), "")
    return workspace.id


def other_client(server: Server) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=server.url, headers={"X-API-Key": OTHER_KEY}, timeout=30)


async def gone_repo(server: Server, root: Path) -> str:
    """A repository that is registered and then disappears, so tasks on it fail fast."""
    bare = make_repo(root)
    repo_id = await server.register(bare)
    shutil.rmtree(bare)
    return repo_id


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def conformance(
    value: Any, schema: dict[str, Any], spec: dict[str, Any], at: str = "$"
) -> list[str]:
    """Where `value` breaks `schema` (the subset of JSON Schema that /openapi.json uses)."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return conformance(value, spec["components"]["schemas"][name], spec, at)
    kinds = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    wanted = schema.get("type")
    if wanted is not None:
        names = [wanted] if isinstance(wanted, str) else wanted
        if not any(kinds[n](value) for n in names):
            return [f"{at}: {value!r} is not {wanted}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{at}: {value!r} not in {schema['enum']}")
    if schema.get("format") == "date-time" and not RFC3339_Z.match(value):
        problems.append(f"{at}: {value!r} is not RFC 3339 with Z")
    if isinstance(value, dict):
        problems += [f"{at}: {k} missing" for k in schema.get("required", []) if k not in value]
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += conformance(item, properties[key], spec, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{at}: unexpected {key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += conformance(item, schema["items"], spec, f"{at}[{i}]")
    return problems


@pytest.fixture
async def repo_id(server, remote) -> str:
    return await server.register(remote)


async def test_created_task_has_the_documented_fields_in_order(server, repo_id):
    response = await server.client.post(
        "/tasks/",
        json={"workspace_id": "ws-default", "repo_id": repo_id, "description": "  Add multiply "},
    )
    assert response.status_code == 201
    task = response.json()
    assert list(task)[: len(SEED_FIELDS + MORE_FIELDS)] == SEED_FIELDS + MORE_FIELDS
    assert re.fullmatch(r"task-\S+", task["id"])
    assert {k: task[k] for k in SEED_FIELDS if k not in ("id", "created_at")} == {
        "description": "Add multiply",
        "status": "queued",
        "phase": "QUEUED",
        "repo_id": repo_id,
        "workspace_id": "ws-default",
        "pr_url": None,
        "error": None,
    }
    assert {k: task[k] for k in MORE_FIELDS if k != "updated_at"} == {
        "approval": None,
        "auto_approve": False,
        "skill_name": None,
        "agent_name": None,
        "branch": None,
        "source": None,
        "plan": None,
        "verification": None,
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    assert RFC3339_Z.match(task["created_at"]) and RFC3339_Z.match(task["updated_at"])

    fetched = await server.client.get(f"/tasks/{task['id']}/")
    assert fetched.status_code == 200
    assert list(fetched.json()) == list(task)
    assert fetched.json()["created_at"] == task["created_at"]


async def test_created_task_keeps_the_choices_given(server, repo_id):
    task = await server.create_task(repo_id, auto_approve=True, agent_name="good", skill_name=None)
    assert (task["auto_approve"], task["agent_name"], task["skill_name"]) == (True, "good", None)


async def test_every_path_answers_with_and_without_trailing_slash(server, repo_id, remote):
    task = await server.create_task(repo_id, agent_name="good")
    task = await server.until_gate(task["id"], "plan")
    base = f"/tasks/{task['id']}"
    create = {"workspace_id": "ws-default", "repo_id": repo_id, "description": "x"}
    repo = {"workspace_id": "ws-default", "url": str(remote)}
    review = {"pr_url": "https://github.com/octo/calc/pull/1"}
    calls: list[tuple[str, str, Any, int]] = [
        ("GET", "/tasks", None, 200),
        ("POST", "/tasks", create, 201),
        ("GET", base, None, 200),
        ("GET", "/repos", None, 200),
        ("POST", "/repos", repo, 200),
        ("GET", f"{base}/diff", None, 404),
        ("POST", f"{base}/approve-diff", None, 409),
        ("POST", f"{base}/reject-diff", None, 409),
        ("POST", f"{base}/revise", {}, 422),
        ("POST", "/tasks/review", review, 404),
        ("GET", "/healthz", None, 200),
    ]
    for method, path, body, status in calls:
        for variant in (path.rstrip("/"), path.rstrip("/") + "/"):
            response = await server.client.request(
                method, variant, json=body, follow_redirects=False
            )
            assert response.status_code == status, (method, variant, response.text)

    approved = await server.client.post(f"{base}/approve/", follow_redirects=False)
    assert approved.status_code == 200
    again = await server.client.post(f"{base}/approve", follow_redirects=False)
    assert_error(again, 409, "approve")
    cancelled = await server.client.post(f"{base}/cancel/", follow_redirects=False)
    assert cancelled.status_code == 200
    assert_error(await server.client.post(f"{base}/cancel", follow_redirects=False), 409)


async def test_unknown_path_is_a_json_404(server):
    assert_error(await server.client.get("/nowhere"), 404, "/nowhere")
    assert_error(await server.client.get("/tasks/task-nope/"), 404, "task-nope")
    assert_error(await server.client.get("/tasks/task-nope/diff"), 404)
    assert_error(await server.client.post("/tasks/task-nope/approve"), 404)


async def test_wrong_method_is_a_json_405(server, repo_id):
    task = await server.create_task(repo_id)
    assert_error(await server.client.delete("/tasks/"), 405, "DELETE")
    assert_error(await server.client.get(f"/tasks/{task['id']}/approve"), 405, "GET")
    assert_error(await server.client.put(f"/tasks/{task['id']}"), 405, "PUT")


async def test_missing_or_unknown_key_is_401(server, repo_id):
    task = await server.create_task(repo_id)
    calls = [
        ("GET", "/tasks/"),
        ("POST", "/tasks/"),
        ("GET", f"/tasks/{task['id']}/"),
        ("POST", f"/tasks/{task['id']}/cancel"),
        ("GET", f"/tasks/{task['id']}/diff"),
        ("GET", "/repos/"),
        ("POST", "/repos/"),
        ("POST", "/tasks/review/"),
    ]
    for headers, mention in (({}, "missing API key"), ({"X-API-Key": "nope"}, "unknown API key")):
        async with httpx2.AsyncClient(base_url=server.url, headers=headers) as anonymous:
            for method, path in calls:
                response = await anonymous.request(method, path, json={"description": "x"})
                assert_error(response, 401, mention)
    assert (await server.task(task["id"]))["status"] != "cancelled"
    assert await task_ids(server) == [task["id"]]


async def test_health_and_openapi_need_no_key(server):
    async with httpx2.AsyncClient(base_url=server.url) as anonymous:
        health = await anonymous.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (await anonymous.get("/openapi.json")).status_code == 200


async def test_another_workspace_cannot_see_or_touch_a_task(server, repo_id):
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    other = await other_workspace(server)
    async with other_client(server) as client:
        base = f"/tasks/{task['id']}"
        for method, path in [
            ("GET", f"{base}/"),
            ("GET", f"{base}/diff"),
            ("POST", f"{base}/approve"),
            ("POST", f"{base}/reject"),
            ("POST", f"{base}/cancel"),
        ]:
            assert_error(await client.request(method, path), 404, task["id"])
        assert_error(await client.get("/tasks/", params={"workspace_id": "ws-default"}), 404)
        assert_error(await client.get("/repos/", params={"workspace_id": "ws-default"}), 404)
        own = await client.get("/tasks/")
        assert own.json() == {"tasks": [], "next_cursor": None}
        assert (await client.get("/repos/")).json() == {"repos": []}

        foreign = await client.post(
            "/tasks/", json={"workspace_id": other, "repo_id": repo_id, "description": "x"}
        )
        assert_error(foreign, 422, "repo_id")
        assert (await client.get("/tasks/")).json()["tasks"] == []

    untouched = await server.task(task["id"])
    assert (untouched["status"], untouched["approval"]) == ("awaiting_approval", "plan")


async def test_a_task_cannot_be_created_in_another_workspace(server, repo_id):
    other = await other_workspace(server)
    response = await server.client.post(
        "/tasks/", json={"workspace_id": other, "repo_id": repo_id, "description": "x"}
    )
    assert_error(response, 422, "workspace_id")
    assert await task_ids(server) == []


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"workspace_id": "ws-default", "repo_id": "REPO", "description": "x"}
    for name, value in changes.items():
        if value is ...:
            del body[name]
        else:
            body[name] = value
    return body


BAD_BODIES: list[tuple[str, Any, int, tuple[str, ...]]] = [
    ("malformed-json", b'{"description": ', 400, ("JSON",)),
    ("empty-body", b"", 400, ()),
    ("invalid-utf8", b'{"description": "\xff\xfe"}', 400, ()),
    ("array", b"[1, 2]", 422, ("object",)),
    ("string", b'"Add multiply"', 422, ("object",)),
    ("null", b"null", 422, ("object",)),
    ("missing-description", _body(description=...), 422, ("description",)),
    ("missing-repo", _body(repo_id=...), 422, ("repo_id",)),
    ("missing-workspace", _body(workspace_id=...), 422, ("workspace_id",)),
    ("extra-field", _body(priority="high"), 422, ("priority",)),
    ("description-number", _body(description=5), 422, ("description",)),
    ("description-list", _body(description=["x"]), 422, ("description",)),
    ("auto-approve-string", _body(auto_approve="yes"), 422, ("auto_approve",)),
    ("auto-approve-number", _body(auto_approve=1), 422, ("auto_approve",)),
    ("repo-null", _body(repo_id=None), 422, ("repo_id",)),
    ("description-empty", _body(description=""), 422, ("description",)),
    ("description-blank", _body(description="  \n "), 422, ("description",)),
    ("description-too-long", _body(description="x" * 20_001), 422, ("description",)),
    ("unknown-repo", _body(repo_id="repo-nope"), 422, ("repo_id", "POST /repos/")),
    ("unknown-workspace", _body(workspace_id="ws-nope"), 422, ("workspace_id",)),
    ("unknown-agent", _body(agent_name="nope"), 422, ("agent_name", *AGENTS)),
    ("agent-number", _body(agent_name=3), 422, ("agent_name",)),
    ("skill-path", _body(skill_name="../x"), 422, ("skill_name",)),
    ("skill-slash", _body(skill_name="a/b"), 422, ("skill_name",)),
    ("nested-too-deep", b"[" * 100_000, 400, ()),
    ("lone-surrogate", _body(description="\ud800 multiply"), 422, ("description",)),
]


async def test_bad_task_bodies_are_refused_and_nothing_is_stored(server, repo_id):
    problems = {}
    for name, body, status, mentions in BAD_BODIES:
        if isinstance(body, dict):
            raw = json.dumps({k: repo_id if v == "REPO" else v for k, v in body.items()}).encode()
        else:
            raw = body
        response = await server.client.post(
            "/tasks/", content=raw, headers={"Content-Type": "application/json"}
        )
        if problem := error_problem(response, status, *mentions):
            problems[name] = problem
    assert problems == {}
    assert await task_ids(server) == []


async def test_body_over_one_mib_is_413_json(server, repo_id):
    body = {"workspace_id": "ws-default", "repo_id": repo_id, "description": "x" * MIB}
    response = await server.client.post("/tasks/", json=body)
    assert_error(response, 413, "body")
    assert await task_ids(server) == []


async def test_streamed_body_over_one_mib_without_length_is_413_json(server, repo_id):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"workspace_id": "ws-default", "description": "'
        for _ in range(20):
            yield b"x" * 64 * 1024
        yield b'"}'

    response = await server.client.post(
        "/tasks/", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "body")
    assert await task_ids(server) == []


async def test_declared_length_over_one_mib_is_413_before_reading(server, repo_id):
    reader, writer = await asyncio.open_connection("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
    try:
        writer.write(
            b"POST /tasks/ HTTP/1.1\r\nHost: nimbus\r\nX-API-Key: " + API_KEY.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(MIB + 1).encode()
            + b"\r\n\r\n{"
        )  # fmt: skip
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"(?i)content-length: (\d+)", head)[1])
        body = json.loads(await asyncio.wait_for(reader.readexactly(length), 10))
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert "body" in body["error"]
    assert await task_ids(server) == []


async def test_body_of_exactly_one_mib_is_accepted(server, repo_id):
    raw = json.dumps({"workspace_id": "ws-default", "repo_id": repo_id, "description": "x"})
    padded = raw[:-1] + " " * (MIB - len(raw)) + "}"
    response = await server.client.post(
        "/tasks/", content=padded.encode(), headers={"Content-Type": "application/json"}
    )
    assert len(padded) == MIB
    assert response.status_code == 201, response.text


async def test_gate_decisions_outside_their_gate_are_409(server, repo_id):
    task = await server.create_task(repo_id, agent_name="good")
    base = f"/tasks/{task['id']}"
    await server.until_gate(task["id"], "plan")
    assert_error(await server.client.get(f"{base}/diff"), 404, "no diff")
    for command in ("approve-diff", "reject-diff"):
        assert_error(await server.client.post(f"{base}/{command}"), 409, command, "diff")

    assert (await server.client.post(f"{base}/approve")).status_code == 200
    await server.until_gate(task["id"], "diff")
    assert (await server.client.get(f"{base}/diff")).status_code == 200
    assert_error(await server.client.post(f"{base}/approve"), 409, "approve", "plan")
    assert_error(await server.client.post(f"{base}/reject"), 409, "reject")
    revise = await server.client.post(f"{base}/revise", json={"feedback": "smaller"})
    assert_error(revise, 409, "revise")
    still = await server.task(task["id"])
    assert (still["phase"], still["approval"]) == ("AWAITING_APPROVAL", "diff")


async def test_racing_decisions_pass_the_gate_once(server, repo_id):
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    commands = ("approve", "reject", "approve")
    answers = await asyncio.gather(
        *(server.client.post(f"/tasks/{task['id']}/{command}") for command in commands)
    )
    assert sorted(r.status_code for r in answers) == [200, 409, 409]
    for response in answers:
        if response.status_code == 409:
            assert_error(response, 409)
    winner = next(c for c, r in zip(commands, answers, strict=True) if r.status_code == 200)
    assert ((await server.task(task["id"]))["status"] == "cancelled") == (winner == "reject")


async def test_cancel_twice_is_409_and_once_ended_is_409(server, repo_id):
    task = await server.create_task(repo_id, agent_name="good")
    base = f"/tasks/{task['id']}"
    await server.until_gate(task["id"], "plan")
    cancelled = await server.client.post(f"{base}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert_error(await server.client.post(f"{base}/cancel"), 409, "cancel")

    ended = await server.until_ended(task["id"])
    assert (ended["phase"], ended["status"]) == ("FAILED", "cancelled")
    assert_error(await server.client.post(f"{base}/cancel"), 409, "cancel")
    for command in ("approve", "reject", "approve-diff", "reject-diff"):
        assert_error(await server.client.post(f"{base}/{command}"), 409, command)


async def test_list_is_newest_first_and_pages_walk_every_task_once(server, tmp_path):
    gone = await gone_repo(server, tmp_path / "gone")
    created = [(await server.create_task(gone, f"task {i}"))["id"] for i in range(7)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await server.client.get("/tasks/", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["tasks"]) <= 3
        seen += [t["id"] for t in page["tasks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "next_cursor never ran out"
    assert seen == created[::-1]
    assert pages == 3


async def test_list_filters_by_status_and_repo(server, remote, tmp_path):
    live = await server.register(remote)
    gone = await gone_repo(server, tmp_path / "gone")
    failing = [(await server.create_task(gone, f"doomed {i}"))["id"] for i in range(3)]
    waiting = (await server.create_task(live, agent_name="good"))["id"]
    for task_id in failing:
        ended = await server.until_ended(task_id)
        assert ended["status"] == "failed", ended
    await server.until_gate(waiting, "plan")

    async def listed(**params: str) -> list[str]:
        response = await server.client.get("/tasks", params=params)
        assert response.status_code == 200, response.text
        return [t["id"] for t in response.json()["tasks"]]

    assert await listed(status="failed") == failing[::-1]
    assert await listed(status="awaiting_approval") == [waiting]
    assert await listed(status="completed") == []
    assert await listed(repo_id=gone) == failing[::-1]
    assert await listed(repo_id=live) == [waiting]
    assert await listed(repo_id=live, status="failed") == []
    assert await listed(repo_id="repo-nope") == []
    assert await listed(workspace_id="ws-default") == [waiting, *failing[::-1]]


async def test_list_limit_defaults_to_50_and_allows_200(server, tmp_path):
    gone = await gone_repo(server, tmp_path / "gone")
    for i in range(51):
        await server.create_task(gone, f"task {i}")
    first = (await server.client.get("/tasks/")).json()
    assert len(first["tasks"]) == 50 and first["next_cursor"] is not None
    rest = (await server.client.get("/tasks/", params={"cursor": first["next_cursor"]})).json()
    assert len(rest["tasks"]) == 1 and rest["next_cursor"] is None
    everything = (await server.client.get("/tasks/", params={"limit": "200"})).json()
    assert len(everything["tasks"]) == 51 and everything["next_cursor"] is None


BAD_LIST_PARAMETERS: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({"limit": "201"}, ("limit", "200")),
    ({"limit": "0"}, ("limit",)),
    ({"limit": "-1"}, ("limit",)),
    ({"limit": "abc"}, ("limit",)),
    ({"limit": "2.5"}, ("limit",)),
    ({"limit": ""}, ("limit",)),
    ({"limit": "\u00b2"}, ("limit",)),
    ({"status": "sleeping"}, ("status", "queued")),
    ({"status": "QUEUED"}, ("status",)),
    ({"cursor": "garbage!"}, ("cursor",)),
    ({"cursor": cursor_of({"a": 1})}, ("cursor",)),
    ({"cursor": cursor_of([1, 2, 3])}, ("cursor",)),
    ({"cursor": cursor_of(["1", "task-x"])}, ("cursor",)),
    ({"cursor": cursor_of([2**70, "task-x"])}, ("cursor",)),
]


async def test_bad_list_parameters_are_422(server):
    problems = {}
    for params, mentions in BAD_LIST_PARAMETERS:
        response = await server.client.get("/tasks/", params=params)
        if problem := error_problem(response, 422, *mentions):
            problems[json.dumps(params)] = problem
    assert problems == {}


async def test_registering_a_repo_twice_gives_the_same_repo(server, remote):
    body = {"workspace_id": "ws-default", "url": str(remote)}
    first = await server.client.post("/repos/", json=body)
    assert first.status_code == 201
    repo = first.json()
    assert list(repo) == ["id", "workspace_id", "url", "default_branch", "created_at", "github"]
    assert repo["github"] is None
    assert (repo["workspace_id"], repo["default_branch"]) == ("ws-default", None)
    assert RFC3339_Z.match(repo["created_at"])

    again = await server.client.post("/repos", json=body)
    assert (again.status_code, again.json()) == (200, repo)
    as_file_url = await server.client.post("/repos/", json={**body, "url": f"file://{remote}"})
    assert (as_file_url.status_code, as_file_url.json()["id"]) == (200, repo["id"])
    listed = await server.client.get("/repos/")
    assert listed.json() == {"repos": [repo]}


async def test_the_same_url_in_another_workspace_is_another_repo(server, remote):
    mine = await server.register(remote)
    other = await other_workspace(server)
    async with other_client(server) as client:
        theirs = await client.post("/repos/", json={"workspace_id": other, "url": str(remote)})
        assert theirs.status_code == 201
        assert theirs.json()["id"] != mine
        assert [r["id"] for r in (await client.get("/repos/")).json()["repos"]] == [
            theirs.json()["id"]
        ]
    assert [r["id"] for r in (await server.client.get("/repos/")).json()["repos"]] == [mine]


BAD_REPO_URLS: list[tuple[str, tuple[str, ...]]] = [
    ("", ("url",)),
    ("not a url", ("url",)),
    ("ftp://example.com/calc.git", ("url",)),
    ("--upload-pack=touch /tmp/pwned", ("url",)),
    ("https:///calc.git", ("url",)),
    ("https://github.com/octo/\ud800.git", ("url",)),
    ("https://user:secret@github.com/octo/calc.git", ("url", "credentials")),
    ("https://secret@github.com/octo/calc.git", ("url", "credentials")),
    ("ssh://git:secret@example.com/calc.git", ("url", "credentials")),
]


async def test_bad_repo_urls_are_422_and_nothing_is_stored(server):
    problems = {}
    for url, mentions in BAD_REPO_URLS:
        # json.dumps escapes what UTF-8 cannot carry (a lone surrogate), as a client might.
        raw = json.dumps({"workspace_id": "ws-default", "url": url}).encode()
        response = await server.client.post(
            "/repos/", content=raw, headers={"Content-Type": "application/json"}
        )
        problem = error_problem(response, 422, *mentions)
        if problem is None and "secret" in response.json()["error"]:
            problem = f"the error repeats the credentials: {response.json()['error']}"
        if problem:
            problems[url] = problem
    assert problems == {}
    assert (await server.client.get("/repos/")).json() == {"repos": []}


async def test_local_path_that_is_not_a_git_repo_is_422(server, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    response = await server.client.post(
        "/repos/", json={"workspace_id": "ws-default", "url": str(plain)}
    )
    assert_error(response, 422, "url", "not a git repository")


async def test_bad_default_branch_is_422(server, remote):
    body = {"workspace_id": "ws-default", "url": str(remote), "default_branch": "-x..y"}
    assert_error(await server.client.post("/repos/", json=body), 422, "default_branch")
    assert (await server.client.get("/repos/")).json() == {"repos": []}


async def test_local_repos_are_refused_when_turned_off(start_server, settings, remote):
    server = await start_server(settings.with_overrides(allow_local_repos=False))
    for url in (str(remote), f"file://{remote}"):
        response = await server.client.post(
            "/repos/", json={"workspace_id": "ws-default", "url": url}
        )
        assert_error(response, 422, "url", "NIMBUS_ALLOW_LOCAL_REPOS")
    https = await server.client.post(
        "/repos/", json={"workspace_id": "ws-default", "url": "https://github.com/octo/calc.git"}
    )
    assert https.status_code == 201


async def test_review_of_a_malformed_pr_url_is_422(server):
    for pr_url in [
        "not a url",
        "http://github.com/octo/calc/pull/1",
        "https://github.com/octo/calc/issues/1",
        "https://github.com/octo/calc/pull/abc",
        "https://github.com/octo/pull/1",
    ]:
        response = await server.client.post("/tasks/review/", json={"pr_url": pr_url})
        assert_error(response, 422, "pr_url")


async def test_review_body_is_checked(server):
    assert_error(await server.client.post("/tasks/review/", json={}), 422, "pr_url")
    body = {"pr_url": "https://github.com/octo/calc/pull/1", "post": "yes"}
    assert_error(await server.client.post("/tasks/review/", json=body), 422, "post")


async def test_review_of_an_unregistered_repo_is_404(server):
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": "https://github.com/octo/calc/pull/1"}
    )
    assert_error(response, 404, "octo/calc")


async def test_review_without_github_credentials_is_503_saying_so(server):
    await server.register("https://github.com/octo/calc.git")
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": "https://github.com/Octo/Calc/pull/7"}
    )
    assert_error(response, 503, "GitHub App", "NIMBUS_GITHUB_APP_ID")
    assert await task_ids(server) == []


def _route_key(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path.rstrip("/") or "/")


async def _spec(server: Server) -> dict[str, Any]:
    response = await server.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_openapi_is_a_3_1_document_with_resolvable_refs(server):
    spec = await _spec(server)
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
    }  # fmt: skip
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec))
    assert refs and set(refs) <= set(spec["components"]["schemas"])
    for path, item in spec["paths"].items():
        assert path.startswith("/")
        for method, operation in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}, (path, method)
            assert operation["summary"]
            for parameter in operation.get("parameters", []):
                assert {"name", "in", "schema"} <= set(parameter), (path, parameter)
                if parameter["in"] == "path":
                    assert parameter["required"] is True
                    assert "{" + parameter["name"] + "}" in path


async def test_openapi_describes_every_route(server):
    spec = await _spec(server)
    documented = {
        (_route_key(path), method.upper())
        for path, item in spec["paths"].items()
        for method in item
    }
    served = set()
    for route in server.app.routes:
        if isinstance(route, WebSocketRoute):
            served.add((_route_key(route.path), "GET"))
        elif isinstance(route, Route):
            served |= {(_route_key(route.path), m) for m in route.methods or () if m != "HEAD"}
    assert served - documented == set()
    assert documented - served == set()


async def test_openapi_operations_answer_with_schemas(server):
    spec = await _spec(server)
    error = {"$ref": "#/components/schemas/Error"}
    problems = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            responses = operation.get("responses") or {}
            if not any(code.startswith(("1", "2")) for code in responses):
                problems.append(f"{where}: no success response")
            for code, response in responses.items():
                if not response.get("description"):
                    problems.append(f"{where} {code}: no description")
                if code == "101":  # the WebSocket upgrade has no body
                    continue
                if not response.get("content"):
                    problems.append(f"{where} {code}: no content")
                for media, content in response.get("content", {}).items():
                    if "schema" not in content:
                        problems.append(f"{where} {code} {media}: no schema")
                if code >= "400" and response["content"]["application/json"]["schema"] != error:
                    problems.append(f"{where} {code}: not the Error schema")
            body = operation.get("requestBody")
            if body is not None and "$ref" not in body["content"]["application/json"]["schema"]:
                problems.append(f"{where}: request body without a schema")
    assert problems == []


async def test_openapi_security_matches_what_needs_a_key(server):
    spec = await _spec(server)
    async with httpx2.AsyncClient(base_url=server.url) as anonymous:
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                if path.endswith("/ws"):
                    continue
                url = path.replace("{task_id}", "task-nope")
                response = await anonymous.request(method.upper(), url)
                secured = bool(operation.get("security"))
                assert (response.status_code == 401) == secured, (path, method, response.text)


async def test_openapi_task_schema_matches_a_real_task(server, repo_id):
    spec = await _spec(server)
    schema = spec["components"]["schemas"]["Task"]
    task = await server.create_task(repo_id, agent_name="good")
    at_gate = await server.until_gate(task["id"], "plan")
    assert conformance(task, schema, spec) == []
    assert conformance(at_gate, schema, spec) == []
    listed = (await server.client.get("/tasks/")).json()
    assert conformance(listed, spec["components"]["schemas"]["TaskList"], spec) == []
    repos = (await server.client.get("/repos/")).json()
    assert conformance(repos, spec["components"]["schemas"]["RepoList"], spec) == []
    error = (await server.client.get("/tasks/task-nope/")).json()
    assert conformance(error, spec["components"]["schemas"]["Error"], spec) == []
    assert set(schema["properties"]) == set(at_gate)
    # Every task JSON carries every one of its keys, so a client may rely on all of them.
    assert set(schema["required"]) == set(at_gate)


async def test_openapi_request_bodies_match_what_the_api_accepts(server):
    spec = await _spec(server)
    schema = spec["components"]["schemas"]["CreateTask"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"workspace_id", "repo_id", "description"}
    assert set(schema["properties"]) == {
        "workspace_id", "repo_id", "description", "auto_approve", "skill_name", "agent_name",
    }  # fmt: skip
    assert spec["components"]["schemas"]["Revise"]["required"] == ["feedback"]
    assert set(spec["components"]["schemas"]["ReviewRequest"]["properties"]) == {"pr_url", "post"}


async def test_revise_sends_the_plan_back_with_the_feedback(
    start_server, settings, remote, tmp_path, monkeypatch
):
    trace = tmp_path / "trace.jsonl"
    # Set before the server starts: it hands agents the environment it started with.
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    server = await start_server(settings)
    task = await server.create_task(await server.register(remote), agent_name="good")
    base = f"/tasks/{task['id']}"
    await server.until_gate(task["id"], "plan")

    assert_error(await server.client.post(f"{base}/revise", json={}), 422, "feedback")
    assert_error(await server.client.post(f"{base}/revise", json={"feedback": " "}), 422)
    assert_error(await server.client.post(f"{base}/revise", json={"feedback": 3}), 422)
    assert_error(await server.client.post(f"{base}/revise"), 400)
    assert (await server.task(task["id"]))["approval"] == "plan"

    revised = await server.client.post(f"{base}/revise", json={"feedback": "Use operator.mul"})
    assert revised.status_code == 200
    assert (revised.json()["phase"], revised.json()["approval"]) == ("PLANNING", None)
    assert revised.json()["status"] == "running"

    back = await server.until_gate(task["id"], "plan")
    assert back["status"] == "awaiting_approval"
    prompts = [json.loads(line)["prompt"] for line in trace.read_text().splitlines()]
    assert len(prompts) == 2
    assert "Use operator.mul" not in prompts[0] and "Use operator.mul" in prompts[1]
    phases = [e["phase"] for e in await server.events(task["id"]) if e["event_type"] == "phase"]
    assert phases[-3:] == ["AWAITING_APPROVAL", "PLANNING", "AWAITING_APPROVAL"]


async def test_reject_at_plan_gate_cancels_and_pushes_nothing(server, repo_id, remote):
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    rejected = await server.client.post(f"/tasks/{task['id']}/reject")
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["approval"]) == ("cancelled", None)

    ended = await server.until_ended(task["id"])
    assert (ended["phase"], ended["status"], ended["pr_url"]) == ("FAILED", "cancelled", None)
    assert "rejected" in ended["error"]
    assert git("branch", "--list", cwd=remote) == "* main"
    events = await server.events(task["id"])
    assert events[-1]["event_type"] == "error"
    assert "rejected" in events[-1]["error"]


async def test_reject_diff_cancels_and_pushes_nothing(server, repo_id, remote):
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    assert (await server.client.post(f"/tasks/{task['id']}/approve")).status_code == 200
    await server.until_gate(task["id"], "diff")
    rejected = await server.client.post(f"/tasks/{task['id']}/reject-diff")
    assert rejected.status_code == 200
    assert (rejected.json()["status"], rejected.json()["approval"]) == ("cancelled", None)

    ended = await server.until_ended(task["id"])
    assert (ended["phase"], ended["status"], ended["pr_url"]) == ("FAILED", "cancelled", None)
    assert "rejected" in ended["error"]
    assert git("branch", "--list", cwd=remote) == "* main"
