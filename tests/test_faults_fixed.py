"""Faults an audit found Nimbus did not survive, now fixed: what DESIGN §2 and §6 promise.

A PR GitHub did not open before its 5xx is opened after looking; token minting is retried on a
5xx; GitHub down is an error that says so; a full disk is a 503; a task never runs twice at once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import Counter

import pytest

from bot.keys import hash_key
from tests.test_faults import small_file_system, statuses
from tests.test_github_flow import github_world

KEY = "gh-1-key-0123456789"


@pytest.fixture
async def world(tmp_path, start_server, settings):
    async with github_world(tmp_path, start_server, settings) as made:
        yield made


@pytest.fixture
def small_disk(tmp_path):
    with small_file_system(tmp_path / "disk") as disk:
        yield disk


async def github_repo(world) -> str:
    """The installed repository, registered by a first delivery; its id."""
    issue = world.github.add_issue("octo-org", "hello", "Say hello")
    await world.comment(issue.number, "/nimbus help")
    store = world.server.app.state.services.store
    (repo,) = await store.list_repos("ws-gh-1")
    await store.add_api_key("ws-gh-1", hash_key(KEY), "")
    return repo.id


async def api_task(world, repo_id: str) -> dict:
    """A REST task on the repository, auto-approved (no gate, no delivery), once it ended."""
    body = {"workspace_id": "ws-gh-1", "repo_id": repo_id, "description": "Add multiply",
            "auto_approve": True}  # fmt: skip
    response = await world.server.client.post("/tasks/", json=body, headers={"X-API-Key": KEY})
    assert response.status_code == 201, response.text
    return await world.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))


async def test_a_pull_request_github_did_not_open_before_its_5xx_is_opened_after_looking(world):
    # DESIGN §6: after a 5xx Nimbus looks (the PR by branch) and creates only what is missing.
    repo_id = await github_repo(world)
    world.github.fail_next("POST", "/repos/*/pulls", 502)
    task = await api_task(world, repo_id)
    assert (task["status"], task["error"]) == ("completed", None), task
    assert len(world.github.pulls_of("octo-org", "hello")) == 1
    # Created again only after looking: the 502, a look that found nothing, then the 201.
    assert statuses(world.github, "POST", "/repos/*/pulls") == [502, 201]
    assert len(statuses(world.github, "GET", "/repos/*/pulls")) == 2  # before, and after the 502


async def test_a_5xx_while_minting_an_installation_token_is_retried(world):
    # Minting a token creates nothing anyone sees: asking again after a 5xx is safe.
    repo_id = await github_repo(world)
    world.github.expire_all_tokens()  # the cached token is refused: Nimbus mints another
    world.github.fail_next("POST", "/app/installations/*/access_tokens", 502)
    task = await api_task(world, repo_id)
    assert (task["status"], task["error"]) == ("completed", None), task
    assert statuses(world.github, "POST", "/app/installations/*/access_tokens")[-2:] == [502, 201]


async def test_github_down_fails_the_task_saying_so_not_as_an_internal_error(world):
    repo_id = await github_repo(world)
    world.github.expire_all_tokens()
    world.github.fail_next("POST", "/app/installations/*/access_tokens", 503, times=50)
    task = await api_task(world, repo_id)
    assert task["status"] == "failed"
    assert "internal error" not in task["error"], task["error"]
    assert "GitHub" in task["error"] and "503" in task["error"], task["error"]


async def test_a_full_disk_under_the_database_is_a_503_that_says_so(
    small_disk,
    start_server,
    settings,
    remote,
):
    server = await start_server(settings.with_overrides(data_dir=small_disk))
    repo_id = await server.register(remote)
    fill = ["dd", "if=/dev/zero", f"of={small_disk / 'filler'}", "bs=64k"]
    await (await asyncio.create_subprocess_exec(*fill, stderr=subprocess.DEVNULL)).wait()
    body = {"workspace_id": "ws-default", "repo_id": repo_id, "description": "Add multiply"}
    response = await server.client.post("/tasks/", json=body)
    assert response.status_code == 503, response.text
    assert "space" in response.json()["error"].lower(), response.text


async def test_each_phase_runs_once_when_no_phase_outlasts_a_lease_renewal(
    start_server, settings, remote
):
    # No fault at all: phases shorter than the renewal interval, a task longer than the lease.
    server = await start_server(settings.with_overrides(lease_seconds=3))
    started_at = time.monotonic()
    task = await server.create_task(
        await server.register(remote), agent_name="slow", auto_approve=True
    )
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task
    # The premise: the task outlived its lease, so only renewals kept it (not a speed check).
    assert time.monotonic() - started_at > server.settings.lease_seconds
    logs = Counter(
        e["message"].split(":")[0]
        for e in await server.events(task["id"])
        if e["event_type"] == "log"
    )
    started = {k: logs[k] for k in ("test command", "implementing the plan with agent 'slow'",
                                    "running tests", "review")}  # fmt: skip
    assert started == dict.fromkeys(started, 1), logs
