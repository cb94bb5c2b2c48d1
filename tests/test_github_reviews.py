"""`POST /tasks/review/` on a pull request of an installed repository, against the fake GitHub."""

from __future__ import annotations

import json
import subprocess

import httpx2
import pytest

from bot.keys import hash_key
from bot.models import Repo, new_id, now_us
from tests.fakes.github import FakeGitHub, GitRemote, running
from tests.test_github_flow import FILES
from tests.test_github_installations import deliver, processed
from tests.test_github_webhooks import EXAMPLES, SECRET

KEY = "gh-1-key-0123456789"
PR_URL = "https://github.com/octo-org/hello/pull/1"


def push_feature(bare, tmp_path) -> None:
    """A branch `feature` adding multiply() to calc.py, pushed straight into the bare repo."""
    work = tmp_path / "feature-work"
    env = {
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.com",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    run = {"cwd": tmp_path, "env": env, "check": True, "capture_output": True, "timeout": 30}
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], **run)
    (work / "calc.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n"
    )
    subprocess.run(["git", "checkout", "-q", "-b", "feature"], **{**run, "cwd": work})
    subprocess.run(["git", "commit", "-qam", "multiply"], **{**run, "cwd": work})
    subprocess.run(["git", "push", "-q", "origin", "feature"], **{**run, "cwd": work})


@pytest.fixture
def auto_review() -> bool:
    """Whether the server reviews pull requests automatically (NIMBUS_AUTO_REVIEW)."""
    return False


@pytest.fixture
async def reviewing(tmp_path, start_server, settings, auto_review):
    async with (
        running(FakeGitHub()) as github,
        running(GitRemote(tmp_path / "g", github)) as remote,
    ):
        remote.create("octo-org", "hello", files=FILES)
        github.add_repo("octo-org", "hello", installation_id=1, remote=remote)
        push_feature(remote.path("octo-org", "hello"), tmp_path)
        github.add_pull("octo-org", "hello", "feature", title="Add multiply")
        server = await start_server(
            settings.with_overrides(
                github_app_id=str(github.app_id),
                github_private_key=github.private_key_pem,
                github_webhook_secret=SECRET,
                github_api_url=github.url,
                auto_review=auto_review,
            )
        )
        store = server.app.state.services.store
        await store.ensure_workspace("ws-gh-1", "GitHub: octo-org")
        github_info = {"installation_id": 1, "full_name": "octo-org/hello", "repo_id": 1}
        url = "https://github.com/octo-org/hello.git"
        await store.add_repo(Repo(new_id("repo"), "ws-gh-1", url, None, now_us(), github_info))
        await store.add_api_key("ws-gh-1", hash_key(KEY), "")
        yield github, server
        assert github.problems == []


async def test_a_review_is_returned_with_comments_on_lines_of_the_diff(reviewing):
    github, server = reviewing
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    review = response.json()
    assert review["pr_url"] == PR_URL and review["posted"] is False
    assert review["comments"] == [{"path": "calc.py", "line": 4, "side": "RIGHT", "body": "ok"}]
    assert github.reviews == {}


async def test_post_true_posts_one_review(reviewing):
    github, server = reviewing
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL, "post": True}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    assert response.json()["posted"] is True
    (posted,) = github.reviews.values()
    assert posted.state == "COMMENTED"


async def test_an_unknown_pull_request_is_404(reviewing):
    _, server = reviewing
    response = await server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL.replace("/1", "/99")}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 404
    assert "#99" in response.json()["error"]


async def _get(github, path: str) -> dict:
    token = github.issue_token(1)
    async with httpx2.AsyncClient(base_url=github.url) as client:
        response = await client.get(path, headers={"Authorization": f"token {token}"})
    return response.json()


async def pull_request_event(github, server, action: str = "opened") -> None:
    payload = json.loads((EXAMPLES / "pull_request" / "opened.payload.json").read_text())
    payload.update(action=action, installation={"id": 1})
    payload["repository"] = await _get(github, "/repos/octo-org/hello")
    payload["pull_request"] = await _get(github, "/repos/octo-org/hello/pulls/1")
    payload["number"] = 1
    assert await processed(server, await deliver(server, "pull_request", payload)) is None


@pytest.mark.parametrize("auto_review", [True])
async def test_an_opened_pr_is_reviewed_once_per_head(reviewing, auto_review):
    github, server = reviewing
    await pull_request_event(github, server, "opened")
    await pull_request_event(github, server, "opened")  # a redelivery or a double trigger
    await pull_request_event(github, server, "reopened")
    assert len(github.reviews) == 1


async def test_automatic_reviews_are_off_unless_turned_on(reviewing):
    github, server = reviewing
    await pull_request_event(github, server, "opened")
    assert github.reviews == {}


async def test_nimbus_review_on_a_pr_reviews_it(reviewing):
    github, server = reviewing
    github.set_permission("octo-org", "hello", "alice", "write")
    comment = github.add_comment("octo-org", "hello", 1, "/nimbus review", user="alice")
    payload = json.loads((EXAMPLES / "issue_comment" / "created.payload.json").read_text())
    payload["installation"] = {"id": 1}
    payload["repository"] = await _get(github, "/repos/octo-org/hello")
    payload["issue"] = await _get(github, "/repos/octo-org/hello/issues/1")
    payload["comment"] = await _get(github, f"/repos/octo-org/hello/issues/comments/{comment.id}")
    payload["sender"] = payload["comment"]["user"]
    assert await processed(server, await deliver(server, "issue_comment", payload)) is None
    (review,) = github.reviews.values()
    assert review.state == "COMMENTED"


@pytest.fixture
def agent_trace(tmp_path, monkeypatch):
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    return trace


def push_more(bare, tmp_path) -> None:
    """A second commit on `feature`: divide() added."""
    work = tmp_path / "more-work"
    env = {
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.com",
        "HOME": str(tmp_path),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    run = {"cwd": tmp_path, "env": env, "check": True, "capture_output": True, "timeout": 30}
    subprocess.run(["git", "clone", "-q", "-b", "feature", str(bare), str(work)], **run)
    with (work / "calc.py").open("a") as calc:
        calc.write("\n\ndef divide(a, b):\n    return a / b\n")
    subprocess.run(["git", "commit", "-qam", "divide"], **{**run, "cwd": work})
    subprocess.run(["git", "push", "-q", "origin", "feature"], **{**run, "cwd": work})


@pytest.mark.parametrize("auto_review", [True])
async def test_a_push_is_reviewed_incrementally_without_repeating_comments(
    agent_trace, reviewing, auto_review, tmp_path
):
    github, server = reviewing
    await pull_request_event(github, server, "opened")
    push_more(github.repos["octo-org/hello"].git_dir, tmp_path)
    await pull_request_event(github, server, "synchronize")
    assert len(github.reviews) == 2
    prompts = [json.loads(line)["prompt"] for line in agent_trace.read_text().splitlines()]
    assert "+def multiply(a, b):" in prompts[0]
    assert "+def divide(a, b):" in prompts[1]
    assert "+def multiply(a, b):" not in prompts[1]  # only what changed since the last review
    # The agent said the same thing on the same line twice: it is on the PR once.
    assert len(github.review_comments) == 1
