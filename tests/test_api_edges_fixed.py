"""Product bugs an audit found at the API's edges, each fixed and kept as a test."""

from __future__ import annotations

import json
import logging

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from tests.conftest import API_KEY, CLIENT_LOGGERS, FAST_CONFIG, make_repo
from tests.test_api import assert_error


@pytest.fixture
async def repo_id(server, tmp_path) -> str:
    return await server.register(make_repo(tmp_path / "repo", config=FAST_CONFIG))


async def test_websocket_since_beyond_any_seq_is_refused_as_422(server, repo_id):
    """bot/api/ws.py `_since` takes any run of digits; a number SQLite cannot hold raises
    OverflowError in `store.events_after` after the upgrade: the socket drops without a close
    frame and the server logs a traceback. `?since=abc` is a 422 before the upgrade; so should
    this be (or it should be read as "after everything")."""
    task = await server.create_task(repo_id, agent_name="good")
    url = f"{server.ws_url}/tasks/{task['id']}/ws?since=99999999999999999999999"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            url, additional_headers={"X-API-Key": API_KEY}, open_timeout=10
        ) as ws:
            async for _ in ws:
                pass
    assert refused.value.response.status_code == 422
    assert "since" in json.loads(refused.value.response.body)["error"]


async def test_a_percent_encoded_api_key_parameter_never_reaches_the_log(server, repo_id, caplog):
    """DESIGN §7: `?api_key=` must not reach a log. The WebSocket reads the query decoded
    (starlette), so `?api%5Fkey=KEY` opens it, but bot/api/__init__.py `redact_query` compares
    the raw name, `api%5Fkey`, with `api_key` and logs the key in clear."""
    caplog.set_level(logging.INFO)
    task = await server.create_task(repo_id, agent_name="good")
    await server.until_gate(task["id"], "plan")
    url = f"{server.ws_url}/tasks/{task['id']}/ws?api%5Fkey={API_KEY}"
    try:
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.recv()
    except InvalidStatus:
        pass  # refusing the spelling would do too; what matters is the log
    logged = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)
    )
    assert API_KEY not in logged


async def test_a_default_branch_ending_in_a_newline_is_422(server, remote):
    """bot/repo_urls.py `_BRANCH` ends in `$`, which also matches before a final "\\n", so
    `valid_branch("main\\n")` is True: the repository is stored with a branch git cannot have
    (201). It should be 422 naming default_branch, as `-x..y` is."""
    body = {"workspace_id": "ws-default", "url": str(remote), "default_branch": "main\n"}
    assert_error(await server.client.post("/repos/", json=body), 422, "default_branch")
    assert (await server.client.get("/repos/")).json() == {"repos": []}


async def test_a_skill_name_ending_in_a_newline_is_422(server, repo_id):
    """bot/skills.py `SKILL_NAME` ends in `$` (matched with `.match`), so "good\\n" passes
    `valid_skill_name`: the task is created (201) and fails later at INDEXING. It should be 422
    naming skill_name, as "../x" is."""
    body = {
        "workspace_id": "ws-default",
        "repo_id": repo_id,
        "description": "x",
        "skill_name": "good\n",
    }
    assert_error(await server.client.post("/tasks/", json=body), 422, "skill_name")
    assert (await server.client.get("/tasks/")).json()["tasks"] == []


async def test_a_description_with_a_nul_character_is_refused_or_runs(server, repo_id):
    """POST /tasks/ accepts a description holding "\\u0000" (201); the command agent gets the
    description in NIMBUS_TASK_DESCRIPTION, which no environment can hold, and the task fails
    at PLANNING with "internal error (ValueError: embedded null byte)". Either the API refuses
    it (422 naming description; bot/api/tasks.py CREATE_TASK, bot/api/bodies.py) or the agent
    gets it without the NUL (bot/agents/command.py)."""
    body = {
        "workspace_id": "ws-default",
        "repo_id": repo_id,
        "description": "Add\u0000multiply",
        "agent_name": "good",
    }
    response = await server.client.post("/tasks/", json=body)
    if response.status_code == 422:
        assert "description" in response.json()["error"]
        return
    assert response.status_code == 201, response.text
    task = await server.wait_for(
        response.json()["id"], lambda t: t["approval"] == "plan" or t["phase"] == "FAILED"
    )
    assert task["approval"] == "plan", task["error"]
