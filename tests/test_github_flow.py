"""End to end on a fake GitHub: `/nimbus …` on an issue → plan → approve → diff → PR pushed."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.keys import hash_key
from bot.models import Repo, now_us
from tests.conftest import TEST_COMMAND
from tests.fakes.github import FakeGitHub, GitRemote, running
from tests.test_github_webhooks import EXAMPLES, SECRET, sign

FILES = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "conftest.py": "",
    ".github/nimbus.yml": f"test_command: {TEST_COMMAND}\n",
}


class GitHubWorld:
    """A fake GitHub with one installed repository, and Nimbus wired to it."""

    def __init__(self, github: FakeGitHub, remote: GitRemote, server) -> None:
        self.github = github
        self.remote = remote
        self.server = server

    async def get(self, path: str) -> dict:
        return await self.github.get(path)

    async def comment(self, number: int, body: str, user: str = "alice") -> str:
        """`user` comments on the issue; GitHub delivers issue_comment.created to Nimbus."""
        comment = self.github.add_comment("octo-org", "hello", number, body, user=user)
        payload = json.loads((EXAMPLES / "issue_comment" / "created.payload.json").read_text())
        payload["installation"] = {"id": 1}
        payload["repository"] = await self.get("/repos/octo-org/hello")
        payload["issue"] = await self.get(f"/repos/octo-org/hello/issues/{number}")
        payload["comment"] = await self.get(f"/repos/octo-org/hello/issues/comments/{comment.id}")
        payload["sender"] = payload["comment"]["user"]
        return await self.deliver("issue_comment", payload)

    async def issue_event(self, action: str, number: int, **extra) -> str:
        """GitHub delivers `issues.<action>` for issue `number`, as sent by alice."""
        example = "labeled.payload.json" if action == "labeled" else "opened.payload.json"
        payload = json.loads((EXAMPLES / "issues" / example).read_text())
        payload.update(action=action, installation={"id": 1}, **extra)
        payload["repository"] = await self.get("/repos/octo-org/hello")
        payload["issue"] = await self.get(f"/repos/octo-org/hello/issues/{number}")
        payload["sender"] = {**payload["sender"], "login": "alice", "type": "User"}
        return await self.deliver("issues", payload)

    async def deliver(self, event: str, payload: dict) -> str:
        body = json.dumps(payload).encode()
        delivery = str(uuid.uuid4())
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body),
        }
        response = await self.server.client.post("/github/webhooks", content=body, headers=headers)
        assert response.status_code == 202, response.text
        store = self.server.app.state.services.store
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            row = await store._fetchone(
                "SELECT processed_us, error FROM webhook_deliveries WHERE delivery_id = ?",
                (delivery,),
            )
            if row["processed_us"]:
                assert row["error"] is None, row["error"]
                return delivery
            await asyncio.sleep(0.02)
        pytest.fail("the delivery was not processed")

    async def task(self, timeout: float = 60, until=lambda t: True) -> dict:
        """The issue's newest task, once `until(task)` holds."""
        store = self.server.app.state.services.store
        deadline = time.monotonic() + timeout
        while True:
            tasks = await store.list_tasks(
                "ws-gh-1", status=None, repo_id=None, limit=1, before=None
            )
            if tasks and until(tasks[0].to_json()):
                return tasks[0].to_json()
            assert time.monotonic() < deadline, tasks and tasks[0].to_json()
            await asyncio.sleep(0.05)

    async def comments_marked(self, number: int, kind: str, timeout: float = 10) -> list[str]:
        """Nimbus's comments of one kind (`:plan`, `:diff`, …), once there is one."""
        deadline = time.monotonic() + timeout
        while True:
            found = [b for b in self.bodies(number) if f":{kind} -->" in b.splitlines()[0]]
            if found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.05)

    async def through_both_gates(self, issue) -> dict:
        """Ask for a task on the issue, approve the plan and the diff; the finished task."""
        await self.comment(issue.number, "/nimbus add multiply")
        await self.task(until=lambda t: t["approval"] == "plan")
        await self.comment(issue.number, "/nimbus approve")
        await self.task(until=lambda t: t["approval"] == "diff")
        await self.comment(issue.number, "/nimbus approve-diff")
        task = await self.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))
        assert task["status"] == "completed", task
        return task

    def commit_on(self, branch: str, path: str, text: str, *, new: bool = False) -> None:
        """Someone pushes a commit writing `text` to `path` on `branch` (straight to the repo)."""
        self.commit_files(branch, {path: text}, new=new)

    def commit_files(self, branch: str, files: dict[str, str | None], *, new: bool = False) -> None:
        """Someone pushes one commit writing `files` (None: deleting) on `branch`."""
        bare = self.remote.path("octo-org", "hello")
        work = bare.parent / f"work-{uuid.uuid4().hex[:8]}"
        env = {
            "GIT_AUTHOR_NAME": "A",
            "GIT_AUTHOR_EMAIL": "a@example.com",
            "GIT_COMMITTER_NAME": "A",
            "GIT_COMMITTER_EMAIL": "a@example.com",
            "HOME": str(bare.parent),
            "PATH": "/usr/bin:/bin:/usr/local/bin",
        }
        run = {"env": env, "check": True, "capture_output": True, "timeout": 30}
        source = [] if new else ["-b", branch]
        subprocess.run(["git", "clone", "-q", *source, str(bare), str(work)], **run)
        if new:
            subprocess.run(["git", "checkout", "-q", "-b", branch], cwd=work, **run)
        for path, text in files.items():
            if text is None:
                (work / path).unlink()
                continue
            (work / path).parent.mkdir(parents=True, exist_ok=True)
            (work / path).write_text(text)
        subprocess.run(["git", "add", "-A"], cwd=work, **run)
        subprocess.run(["git", "commit", "-qm", f"change {', '.join(files)}"], cwd=work, **run)
        subprocess.run(["git", "push", "-q", "origin", branch], cwd=work, **run)

    def bodies(self, number: int) -> list[str]:
        return [c.body for c in self.github.comments_on("octo-org", "hello", number)]


@asynccontextmanager
async def github_world(
    root: Path, start_server, settings, files: dict[str, str] = FILES, **overrides
) -> AsyncIterator[GitHubWorld]:
    """A fake GitHub with octo-org/hello installed (id 1), alice a writer, Nimbus wired to it."""
    async with (
        running(FakeGitHub()) as github,
        running(GitRemote(root / "git", github)) as remote,
    ):
        remote.create("octo-org", "hello", files=files)
        github.add_repo("octo-org", "hello", installation_id=1, remote=remote)
        github.set_permission("octo-org", "hello", "alice", "write")
        server = await start_server(
            settings.with_overrides(
                github_app_id=str(github.app_id),
                github_private_key=github.private_key_pem,
                github_webhook_secret=SECRET,
                github_api_url=github.url,
                **overrides,
            )
        )
        yield GitHubWorld(github, remote, server)
        assert github.problems == []


@pytest.fixture
async def world(tmp_path, start_server, settings):
    async with github_world(tmp_path, start_server, settings) as made:
        yield made


async def test_an_issue_comment_becomes_a_pull_request(world):
    github = world.github
    issue = github.add_issue("octo-org", "hello", "Add multiply", "We need `multiply(a, b)`.")
    await world.comment(issue.number, "/nimbus add a multiply function with a test")
    task = await world.task(until=lambda t: t["approval"] == "plan")
    assert task["source"]["issue"] == issue.number
    assert task["description"].startswith("add a multiply function with a test\n\nIssue #")
    plan_comments = await world.comments_marked(issue.number, "plan")
    assert len(plan_comments) == 1 and "/nimbus approve" in plan_comments[0]

    await world.comment(issue.number, "/nimbus approve")
    task = await world.task(until=lambda t: t["approval"] == "diff")
    diff_comments = await world.comments_marked(issue.number, "diff")
    assert len(diff_comments) == 1 and "multiply" in diff_comments[0]

    await world.comment(issue.number, "/nimbus approve-diff")
    task = await world.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))
    assert task["status"] == "completed", task
    (pull,) = github.pulls_of("octo-org", "hello")
    assert task["pr_url"] == f"https://github.example/octo-org/hello/pull/{pull.number}"
    assert pull.draft is True
    assert pull.head == task["branch"] == "nimbus/issue-1-add-multiply"
    assert f"Closes #{issue.number}" in pull.body
    assert world.remote.branch("octo-org", "hello", task["branch"]) is not None
    # One status comment, edited in place.
    statuses = [
        b for b in world.bodies(issue.number) if b.startswith(f"<!-- nimbus:task={task['id']} -->")
    ]
    assert len(statuses) == 1


async def test_a_reader_gets_one_reply_and_no_task(world):
    github = world.github
    github.set_permission("octo-org", "hello", "mallory", "read")
    issue = github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus rm -rf everything", user="mallory")
    await world.comment(issue.number, "/nimbus approve", user="mallory")
    store = world.server.app.state.services.store
    assert await store.list_tasks("ws-gh-1", status=None, repo_id=None, limit=5, before=None) == []
    replies = [b for b in world.bodies(issue.number) if "nimbus:permission" in b]
    assert len(replies) == 1


async def test_the_label_starts_a_task_and_comes_off_when_it_ends(world):
    github = world.github
    issue = github.add_issue("octo-org", "hello", "Add multiply", "Please.", labels=["nimbus"])
    await world.issue_event("labeled", issue.number, label={"name": "nimbus"})
    task = await world.task(until=lambda t: t["approval"] == "plan")
    assert task["description"].startswith("Issue #1: Add multiply")
    await world.comment(issue.number, "/nimbus reject")
    task = await world.task(until=lambda t: t["phase"] == "FAILED")
    assert task["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while "nimbus" in github.issues[("octo-org/hello", 1)].labels:
        assert time.monotonic() < deadline, "the label stayed"
        await asyncio.sleep(0.05)
    results = await world.comments_marked(issue.number, "result")
    assert len(results) == 1


async def test_closing_the_issue_cancels_its_task(world):
    issue = world.github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply")
    await world.task(until=lambda t: t["approval"] == "plan")
    await world.issue_event("closed", issue.number)
    task = await world.task(until=lambda t: t["phase"] == "FAILED")
    assert task["status"] == "cancelled"
    assert "the issue was closed" in task["error"]


async def test_one_active_task_per_issue(world):
    issue = world.github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply")
    task = await world.task(until=lambda t: t["approval"] == "plan")
    await world.comment(issue.number, "/nimbus also add divide")
    store = world.server.app.state.services.store
    tasks = await store.list_tasks("ws-gh-1", status=None, repo_id=None, limit=5, before=None)
    assert [t.id for t in tasks] == [task["id"]]
    assert any(task["id"] in b and "active" in b.lower() for b in world.bodies(issue.number))


async def test_bots_and_quoted_commands_start_nothing(world):
    issue = world.github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply", user="dependabot[bot]")
    await world.comment(issue.number, "> /nimbus add multiply\n\nas they said")
    store = world.server.app.state.services.store
    assert await store.list_tasks("ws-gh-1", status=None, repo_id=None, limit=5, before=None) == []


async def test_an_expired_token_is_renewed_mid_task(world):
    github = world.github
    issue = github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply")
    await world.task(until=lambda t: t["approval"] == "plan")
    github.expire_all_tokens()
    await world.comment(issue.number, "/nimbus approve")
    await world.task(until=lambda t: t["approval"] == "diff")
    github.expire_all_tokens()
    await world.comment(issue.number, "/nimbus approve-diff")
    task = await world.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))
    assert task["status"] == "completed", task
    assert len(github.pulls_of("octo-org", "hello")) == 1


async def test_a_push_refused_for_its_token_is_retried_with_a_new_one(world, tmp_path):
    """The forge itself: its cached token still looks fresh, GitHub has revoked it."""
    services = world.server.app.state.services
    forge = services.forges.github
    repo = Repo(
        "repo-x",
        "ws-gh-1",
        "unused",
        None,
        now_us(),
        {"installation_id": 1, "full_name": "octo-org/hello", "repo_id": 1},
    )
    clone = tmp_path / "clone"
    await forge.clone(repo, clone, None)
    (clone / "calc.py").write_text("def add(a, b):\n    return b + a\n")
    await services.git.commit_all(clone, "swap")
    world.github.expire_all_tokens()
    mints = world.github.mints[1]
    await forge._git_with_token(
        repo, lambda auth: services.git.push(clone, "origin", "swapped", auth_header=auth)
    )
    assert world.remote.denied  # the first push met the refusal …
    assert world.github.mints[1] == mints + 1  # … a new token was minted …
    assert world.remote.branch("octo-org", "hello", "swapped") is not None  # … and it went through


async def test_an_api_task_on_a_github_repository_opens_a_pull_request(world):
    issue = world.github.add_issue("octo-org", "hello", "Say hello")
    await world.comment(issue.number, "/nimbus help")  # registers the repository on the fly
    store = world.server.app.state.services.store
    (repo,) = await store.list_repos("ws-gh-1")
    await store.add_api_key("ws-gh-1", hash_key("gh-1-key-0123456789"), "")
    response = await world.server.client.post(
        "/tasks/",
        json={
            "workspace_id": "ws-gh-1",
            "repo_id": repo.id,
            "description": "Add multiply",
            "auto_approve": True,
        },
        headers={"X-API-Key": "gh-1-key-0123456789"},
    )
    task_id = response.json()["id"]
    task = await world.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))
    assert task["id"] == task_id and task["status"] == "completed", task
    (pull,) = world.github.pulls_of("octo-org", "hello")
    assert task["pr_url"].endswith(f"/pull/{pull.number}")
    assert task["branch"] == f"nimbus/{task_id}"
    events = [e.to_json() for e in await store.events_after(task_id, 0)]
    assert events[-1] == {**events[-1], "event_type": "done", "pr_url": task["pr_url"]}


async def test_the_installation_token_never_leaks(tmp_path, start_server, settings):
    # The repository's tests fail (exit 7) if an installation token is in their environment.
    leak_check = "if env | grep -q ghs_; then exit 7; fi"
    files = {**FILES, ".github/nimbus.yml": f"test_command: {leak_check}; {TEST_COMMAND}\n"}
    async with github_world(tmp_path, start_server, settings, files) as world:
        github, server = world.github, world.server
        issue = github.add_issue("octo-org", "hello", "Add multiply")
        task = await world.through_both_gates(issue)
        minted = [t.token for t in github.tokens.values() if t.token != ""]
        assert minted
        events = await server.app.state.services.store.events_after(task["id"], 0)
        logged = [e.fields.get("message", "") for e in events]
        assert any(m.startswith("baseline: tests pass") for m in logged), logged
        places = [json.dumps(task)] + [json.dumps(e.to_json()) for e in events]
        places += [c.body for c in github.comments_on("octo-org", "hello", issue.number)]
        for path in settings.data_dir.rglob("*"):
            if path.is_file():
                places.append(path.read_bytes().decode("latin-1"))
        for token in minted:
            assert not any(token in place for place in places)
        assert github.problems == []


async def test_status_replies_without_becoming_a_second_status_comment(world):
    issue = world.github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply")
    task = await world.task(until=lambda t: t["approval"] == "plan")
    await world.comment(issue.number, "/nimbus status")
    marked = [
        b for b in world.bodies(issue.number) if b.startswith(f"<!-- nimbus:task={task['id']} -->")
    ]
    assert len(marked) == 1
    assert any(
        "Plan approval" in b and not b.startswith("<!--") for b in world.bodies(issue.number)
    )


async def test_retry_makes_a_new_task_from_the_same_request(world):
    issue = world.github.add_issue("octo-org", "hello", "Add multiply")
    await world.comment(issue.number, "/nimbus add multiply")
    first = await world.task(until=lambda t: t["approval"] == "plan")
    await world.comment(issue.number, "/nimbus reject")
    await world.task(until=lambda t: t["phase"] == "FAILED")
    await world.comment(issue.number, "/nimbus retry")
    second = await world.task(until=lambda t: t["id"] != first["id"])
    assert second["description"] == first["description"]
    store = world.server.app.state.services.store
    assert (await store.get_task(first["id"])).status == "cancelled"


async def test_a_pull_request_github_opened_despite_a_5xx_is_not_opened_twice(world):
    github = world.github
    github.fail_next("POST", "/repos/*/pulls", 502, after_acting=True)
    task = await world.through_both_gates(github.add_issue("octo-org", "hello", "Add multiply"))
    (pull,) = github.pulls_of("octo-org", "hello")
    assert task["pr_url"].endswith(f"/pull/{pull.number}")
    (check,) = [c for c in github.check_runs.values() if c.name == "Nimbus verification"]
    assert check.conclusion == "success"


async def test_a_plan_without_drafts_gets_a_normal_pull_request(world):
    github = world.github
    github.repos["octo-org/hello"].drafts_supported = False
    await world.through_both_gates(github.add_issue("octo-org", "hello", "Add multiply"))
    (pull,) = github.pulls_of("octo-org", "hello")
    assert pull.draft is False


async def test_a_plan_without_drafts_after_5xx_still_gets_a_normal_pull_request(world):
    # The draft refusal came on the last try the 5xx left: the fallback has tries of its own.
    github = world.github
    github.repos["octo-org/hello"].drafts_supported = False
    github.fail_next("POST", "/repos/*/pulls", 502, times=2)
    task = await world.through_both_gates(github.add_issue("octo-org", "hello", "Add multiply"))
    (pull,) = github.pulls_of("octo-org", "hello")
    assert pull.draft is False and task["pr_url"].endswith(f"/pull/{pull.number}")
