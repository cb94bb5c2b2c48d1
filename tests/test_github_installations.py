"""Installing the App: deliveries turned into workspaces and repositories; removals cancel tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid

import pytest

from bot.github.context import GitHubContext
from bot.keys import hash_key
from bot.models import Repo, new_id, now_us
from bot.store.sqlite import SqliteStore
from tests.test_github_webhooks import EXAMPLES, SECRET, sign


def example(event: str, name: str) -> dict:
    return json.loads((EXAMPLES / event / name).read_text())


async def deliver(server, event: str, payload: dict, delivery_id: str | None = None) -> str:
    body = json.dumps(payload).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": sign(body),
    }
    response = await server.client.post("/github/webhooks", content=body, headers=headers)
    assert response.status_code == 202, response.text
    return delivery_id


async def processed(server, delivery_id: str, timeout: float = 10) -> str | None:
    """Wait until the worker has processed the delivery; its error, if any."""
    store = server.app.state.services.store
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await store._fetchone(
            "SELECT processed_us, error FROM webhook_deliveries WHERE delivery_id = ?",
            (delivery_id,),
        )
        if row and row["processed_us"]:
            return row["error"]
        await asyncio.sleep(0.02)
    pytest.fail(f"delivery {delivery_id} was not processed in {timeout}s")


@pytest.fixture
async def github_server(start_server, settings):
    return await start_server(settings.with_overrides(github_webhook_secret=SECRET))


async def repos_of(server, workspace: str) -> dict[str, dict]:
    repos = await server.app.state.services.store.list_repos(workspace)
    return {r.github["full_name"]: r.to_json() for r in repos if r.github}


async def test_an_installation_creates_its_workspace_and_repositories(github_server):
    delivery = await deliver(
        github_server, "installation", example("installation", "created.payload.json")
    )
    assert await processed(github_server, delivery) is None
    store = github_server.app.state.services.store
    workspace = await store.get_workspace("ws-gh-957387")
    assert workspace is not None and workspace.name == "GitHub: Codertocat"
    repos = await repos_of(github_server, "ws-gh-957387")
    assert repos["Codertocat/Hello-World"]["url"] == "https://github.com/Codertocat/Hello-World.git"
    assert repos["Codertocat/Hello-World"]["github"] == {
        "installation_id": 957387,
        "full_name": "Codertocat/Hello-World",
        "repo_id": 186853002,
    }


async def test_repositories_added_later_are_registered(github_server):
    delivery = await deliver(
        github_server,
        "installation_repositories",
        example("installation_repositories", "added.payload.json"),
    )
    assert await processed(github_server, delivery) is None
    assert "Codertocat/Space" in await repos_of(github_server, "ws-gh-957387")


async def test_an_enterprise_server_gets_its_own_host(start_server, settings):
    server = await start_server(
        settings.with_overrides(
            github_webhook_secret=SECRET, github_api_url="https://ghe.example.com/api/v3"
        )
    )
    delivery = await deliver(
        server, "installation", example("installation", "created.payload.json")
    )
    await processed(server, delivery)
    repos = await repos_of(server, "ws-gh-957387")
    assert repos["Codertocat/Hello-World"]["url"] == (
        "https://ghe.example.com/Codertocat/Hello-World.git"
    )


async def test_a_delivery_whose_processing_failed_is_processed_again_when_redelivered(
    github_server,
):
    payload = example("installation_repositories", "added.payload.json")
    broken = json.loads(json.dumps(payload))
    del broken["repositories_added"][0]["full_name"]
    delivery = await deliver(github_server, "installation_repositories", broken)
    assert "KeyError" in await processed(github_server, delivery)
    # GitHub's Redeliver button sends the same delivery id again.
    await deliver(github_server, "installation_repositories", payload, delivery)
    assert await processed(github_server, delivery) is None
    assert "Codertocat/Space" in await repos_of(github_server, "ws-gh-957387")


async def test_a_processed_delivery_is_not_processed_twice(github_server):
    payload = example("installation", "created.payload.json")
    delivery = await deliver(github_server, "installation", payload)
    await processed(github_server, delivery)
    await deliver(github_server, "installation", payload, delivery)
    store = github_server.app.state.services.store
    row = await store._fetchone(
        "SELECT attempts FROM webhook_deliveries WHERE delivery_id = ?", (delivery,)
    )
    assert row["attempts"] == 1


@pytest.mark.parametrize(
    ("event", "name", "why"),
    [
        ("installation", "deleted.payload.json", "the GitHub App was deleted"),
        ("installation_repositories", "removed.payload.json", "the repository was removed"),
    ],
)
async def test_removing_the_app_or_a_repository_cancels_its_tasks(
    github_server, remote, event, name, why
):
    store = github_server.app.state.services.store
    # An installation (id 2, as in GitHub's examples) whose repository lives in a local bare repo.
    await store.ensure_workspace("ws-gh-2", "GitHub: octocat")
    github = {"installation_id": 2, "full_name": "octocat/Hello-World", "repo_id": 1296269}
    url = "https://github.com/octocat/Hello-World.git"
    if event == "installation":
        url = str(remote)  # any repository of the installation's workspace
    repo = await store.add_repo(Repo(new_id("repo"), "ws-gh-2", url, None, now_us(), github))
    await store.add_api_key("ws-gh-2", hash_key("gh-2-key-0123456789"), "")
    client = github_server.client
    response = await client.post(
        "/tasks/",
        json={"workspace_id": "ws-gh-2", "repo_id": repo.id, "description": "Add multiply"},
        headers={"X-API-Key": "gh-2-key-0123456789"},
    )
    task_id = response.json()["id"]
    delivery = await deliver(github_server, event, example(event, name))
    assert await processed(github_server, delivery) is None
    task = await store.get_task(task_id)
    assert task.status == "cancelled"
    assert why in task.error


async def test_a_delivery_stored_before_a_crash_is_processed_after_the_restart(
    start_server, settings
):
    settings = settings.with_overrides(github_webhook_secret=SECRET)
    # The 202 was sent and the delivery stored, then the process died before processing it.
    store = SqliteStore(settings.db_path)
    await store.open()
    payload = json.dumps(example("installation", "created.payload.json")).encode()
    await store.record_delivery("d-crash", "installation", payload)
    assert await store.take_deliveries(
        f"{settings.worker_name}:github", time.time() + 600, time.time()
    )
    await store.close()

    server = await start_server(settings)
    assert await processed(server, "d-crash") is None
    assert "Codertocat/Hello-World" in await repos_of(server, "ws-gh-957387")


async def test_a_known_installation_and_repository_are_not_written_again(github_server, tmp_path):
    store = SqliteStore(tmp_path / "own.db")
    await store.open()
    services = dataclasses.replace(github_server.app.state.services, store=store)
    ctx = GitHubContext(services, None)
    repository = {"id": 1296269, "full_name": "octo/known", "default_branch": "main"}
    first = await ctx.register(4343, repository)
    assert [r.id for r in await store.list_repos("ws-gh-4343")] == [first.id]
    await store.close()
    # Every delivery names them again: answered from memory, the store is not even asked.
    assert await ctx.register(4343, repository) == first
    assert await ctx.install({"id": 4343, "account": {"login": "octo"}}) == "ws-gh-4343"
    with pytest.raises(AssertionError, match="not open"):  # a repository it does not know
        await ctx.register(4343, {**repository, "id": 7, "full_name": "octo/other"})
