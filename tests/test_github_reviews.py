"""`POST /tasks/review/` on a pull request of an installed repository, against the fake GitHub."""

from __future__ import annotations

import json

import pytest

from bot.keys import hash_key
from bot.models import Repo, new_id, now_us
from tests.test_github_flow import github_world
from tests.test_github_installations import deliver, processed
from tests.test_github_webhooks import EXAMPLES

KEY = "gh-1-key-0123456789"
PR_URL = "https://github.com/octo-org/hello/pull/1"


MULTIPLY = "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n"
DIVIDE = MULTIPLY + "\n\ndef divide(a, b):\n    return a / b\n"


@pytest.fixture
def auto_review() -> bool:
    """Whether the server reviews pull requests automatically (NIMBUS_AUTO_REVIEW)."""
    return False


@pytest.fixture
async def reviewing(tmp_path, start_server, settings, auto_review):
    """PR #1 (`feature`: multiply added) on an installed repository Nimbus knows by its URL."""
    async with github_world(tmp_path, start_server, settings, auto_review=auto_review) as world:
        world.commit_on("feature", "calc.py", MULTIPLY, new=True)
        world.github.add_pull("octo-org", "hello", "feature", title="Add multiply")
        await registered(world)
        yield world


async def registered(world) -> None:
    """octo-org/hello known by its URL in workspace ws-gh-1, which API key KEY opens."""
    store = world.server.app.state.services.store
    await store.ensure_workspace("ws-gh-1", "GitHub: octo-org")
    github_info = {"installation_id": 1, "full_name": "octo-org/hello", "repo_id": 1}
    url = "https://github.com/octo-org/hello.git"
    await store.add_repo(Repo(new_id("repo"), "ws-gh-1", url, None, now_us(), github_info))
    await store.add_api_key("ws-gh-1", hash_key(KEY), "")


async def test_a_review_is_returned_with_comments_on_lines_of_the_diff(reviewing):
    github, server = reviewing.github, reviewing.server
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    review = response.json()
    assert review["pr_url"] == PR_URL and review["posted"] is False
    assert review["comments"] == [{"path": "calc.py", "line": 4, "side": "RIGHT", "body": "ok"}]
    assert github.reviews == {}


async def test_post_true_posts_one_review(reviewing):
    github, server = reviewing.github, reviewing.server
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL, "post": True}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    assert response.json()["posted"] is True
    (posted,) = github.reviews.values()
    assert posted.state == "COMMENTED"


async def test_an_unknown_pull_request_is_404(reviewing):
    server = reviewing.server
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL.replace("/1", "/99")}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 404
    assert "#99" in response.json()["error"]


async def pull_request_event(world, action: str = "opened") -> None:
    payload = json.loads((EXAMPLES / "pull_request" / "opened.payload.json").read_text())
    payload.update(action=action, installation={"id": 1})
    payload["repository"] = await world.get("/repos/octo-org/hello")
    payload["pull_request"] = await world.get("/repos/octo-org/hello/pulls/1")
    payload["number"] = 1
    assert (
        await processed(world.server, await deliver(world.server, "pull_request", payload)) is None
    )


@pytest.mark.parametrize("auto_review", [True])
async def test_an_opened_pr_is_reviewed_once_per_head(reviewing, auto_review):
    github = reviewing.github
    await pull_request_event(reviewing, "opened")
    await pull_request_event(reviewing, "opened")  # a redelivery or a double trigger
    await pull_request_event(reviewing, "reopened")
    assert len(github.reviews) == 1


async def test_automatic_reviews_are_off_unless_turned_on(reviewing):
    github = reviewing.github
    await pull_request_event(reviewing, "opened")
    assert github.reviews == {}


async def test_nimbus_review_on_a_pr_reviews_it(reviewing):
    github = reviewing.github
    await reviewing.comment(1, "/nimbus review")
    (review,) = github.reviews.values()
    assert review.state == "COMMENTED"


@pytest.fixture
def agent_trace(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    return trace


@pytest.mark.parametrize("auto_review", [True])
async def test_a_push_is_reviewed_incrementally_without_repeating_comments(
    agent_trace, reviewing, auto_review
):
    github = reviewing.github
    await pull_request_event(reviewing, "opened")
    reviewing.commit_on("feature", "calc.py", DIVIDE)
    await pull_request_event(reviewing, "synchronize")
    assert len(github.reviews) == 2
    prompts = [json.loads(line)["prompt"] for line in agent_trace.read_text().splitlines()]
    assert "+def multiply(a, b):" in prompts[0]
    assert "+def divide(a, b):" in prompts[1]
    assert "+def multiply(a, b):" not in prompts[1]  # only what changed since the last review
    # The agent said the same thing on the same line twice: it is on the PR once.
    assert len(github.review_comments) == 1


async def test_a_registered_repository_without_the_app_installed_is_404(reviewing):
    store = reviewing.server.app.state.services.store
    url = "https://github.com/octo-org/plain.git"
    await store.add_repo(Repo(new_id("repo"), "ws-gh-1", url, None, now_us(), None))
    response = await reviewing.server.client.post(
        "/tasks/review/",
        json={"pr_url": "https://github.com/octo-org/plain/pull/3"},
        headers={"X-API-Key": KEY},
    )
    assert response.status_code == 404
    assert "not installed on octo-org/plain" in response.json()["error"]
