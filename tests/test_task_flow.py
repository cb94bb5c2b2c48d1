"""Tasks through every phase on a real git repository, with the scripted command agent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.models import Repo, new_id, now_us
from tests.conftest import API_KEY, TEST_COMMAND, git, make_repo


@pytest.fixture
def agent_trace(tmp_path, monkeypatch) -> Path:
    """Where the scripted agent writes what it saw (passed to it through `pass_env`)."""
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    return trace


@pytest.fixture
async def traced_server(agent_trace, start_server, settings):
    return await start_server(settings)


def traced(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def branch_file(remote: Path, branch: str, path: str) -> str:
    return git("show", f"{branch}:{path}", cwd=remote)


async def test_approved_task_is_pushed_to_its_branch(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, "Add a multiply function")
    assert (task["status"], task["phase"]) == ("queued", "QUEUED")

    task = await server.until_gate(task["id"], "plan")
    assert task["status"] == "awaiting_approval"
    assert task["plan"][0] == {"title": "Add multiply()", "files": ["calc.py"], "detail": "a * b"}

    approved = await server.client.post(f"/tasks/{task['id']}/approve")
    assert approved.status_code == 200
    assert approved.json()["phase"] == "IMPLEMENTING"

    task = await server.until_gate(task["id"], "diff")
    assert task["verification"]["passed"] is True
    diff = await server.client.get(f"/tasks/{task['id']}/diff")
    assert diff.headers["content-type"].startswith("text/x-diff")
    assert "+def multiply(a, b):" in diff.text

    await server.client.post(f"/tasks/{task['id']}/approve-diff")
    task = await server.until_ended(task["id"])
    assert (task["status"], task["phase"], task["error"], task["pr_url"]) == (
        "completed",
        "DONE",
        None,
        None,
    )
    branch = f"nimbus/{task['id']}"
    assert "return a * b" in branch_file(remote, branch, "calc.py")
    subject = git("log", "-1", "--format=%s%n%an <%ae>", branch, cwd=remote)
    assert subject == "Add a multiply function\nNimbus <nimbus@localhost>"
    assert git("rev-list", "--count", f"main..{branch}", cwd=remote) == "1"
    assert not (server.settings.tasks_dir / task["id"]).exists()

    events = await server.events(task["id"])
    phases = [e["phase"] for e in events if e["event_type"] == "phase"]
    assert phases == [
        "QUEUED",
        "CLONING",
        "INDEXING",
        "PLANNING",
        "AWAITING_APPROVAL",
        "IMPLEMENTING",
        "VERIFYING",
        "REVIEWING",
        "AWAITING_APPROVAL",
        "CLEANUP",
        "DONE",
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1] == {**events[-1], "event_type": "done", "pr_url": None}


def phases_of(events: list[dict]) -> list[str]:
    return [e["phase"] for e in events if e["event_type"] == "phase"]


def logs_of(events: list[dict]) -> str:
    return "\n".join(e["message"] for e in events if e["event_type"] == "log")


async def test_failing_tests_go_through_fixing_until_they_pass(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="fixer", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task
    assert task["fix_attempts"] == 1
    assert task["verification"]["passed"] is True
    events = await server.events(task["id"])
    assert phases_of(events)[5:9] == ["VERIFYING", "FIXING", "VERIFYING", "REVIEWING"]
    assert "fix round 1 of 3" in logs_of(events)
    assert "tests/test_multiply.py::test_multiply" in logs_of(events)


async def test_fix_rounds_are_bounded_and_the_diff_gate_shows_the_failure(server, tmp_path):
    config = f"test_command: {TEST_COMMAND}\nmax_fix_attempts: 2\n"
    remote = make_repo(tmp_path / "r", config=config)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="never")
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/approve")
    task = await server.until_gate(task["id"], "diff")
    assert task["fix_attempts"] == 2
    assert task["verification"]["passed"] is False
    assert task["verification"]["new_failures"] == ["tests/test_multiply.py::test_multiply"]
    events = await server.events(task["id"])
    assert phases_of(events).count("FIXING") == 2
    assert "tests still fail after 2 fix rounds" in logs_of(events)


async def test_auto_approve_skips_both_gates(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed"
    events = await server.events(task["id"])
    assert "AWAITING_APPROVAL" not in phases_of(events)
    # The plan and diff are still announced for whoever follows the task.
    assert {"plan", "diff", "done"} <= {e["event_type"] for e in events}


async def test_auto_approve_never_ships_a_change_whose_tests_fail(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="never", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"].startswith("REVIEWING: tests still fail after 3 fix rounds")
    assert "auto_approve" in task["error"]
    assert git("branch", "--list", cwd=remote) == "* main"


async def test_a_blocking_review_sends_the_task_back_to_fixing_once(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="blocking")
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/approve")
    task = await server.until_gate(task["id"], "diff")
    assert task["review"]["blocking"] is False
    events = await server.events(task["id"])
    assert phases_of(events)[6:] == [
        "VERIFYING",
        "REVIEWING",
        "FIXING",
        "VERIFYING",
        "REVIEWING",
        "AWAITING_APPROVAL",
    ]
    assert "fixing the review's blocking findings" in logs_of(events)


async def test_revise_plans_again_with_the_feedback(traced_server, remote, agent_trace):
    server = traced_server
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    revised = await server.client.post(
        f"/tasks/{task['id']}/revise", json={"feedback": "Use operator.mul instead"}
    )
    assert revised.status_code == 200
    assert revised.json()["phase"] == "PLANNING"
    task = await server.until_gate(task["id"], "plan")
    assert task["plan"]
    prompts = [seen["prompt"] for seen in traced(agent_trace) if seen["phase"] == "plan"]
    assert len(prompts) == 2
    assert "Use operator.mul instead" in prompts[1]
    assert "Use operator.mul instead" not in prompts[0]


async def test_rejected_plan_ends_cancelled_and_pushes_nothing(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    rejected = await server.client.post(f"/tasks/{task['id']}/reject")
    assert rejected.json()["status"] == "cancelled"
    task = await server.until_ended(task["id"])
    assert (task["phase"], task["status"]) == ("FAILED", "cancelled")
    assert "rejected" in task["error"]
    events = await server.events(task["id"])
    assert events[-1]["event_type"] == "error"
    assert events[-1]["status"] == "cancelled"
    assert events[-2]["event_type"] == "phase"
    assert git("branch", "--list", cwd=remote) == "* main"
    assert not (server.settings.tasks_dir / task["id"]).exists()


async def test_cancel_stops_a_running_agent_at_once(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="sleeper", auto_approve=True)
    await server.wait_for(task["id"], lambda t: t["phase"] == "IMPLEMENTING")
    cancelled = await server.client.post(f"/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    task = await server.wait_for(task["id"], lambda t: t["phase"] == "FAILED", timeout=10)
    assert task["status"] == "cancelled"
    again = await server.client.post(f"/tasks/{task['id']}/cancel")
    assert again.status_code == 409
    assert git("branch", "--list", cwd=remote) == "* main"


async def test_cancel_while_queued_or_at_a_gate(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    response = await server.client.post(f"/tasks/{task['id']}/cancel")
    assert response.json()["phase"] == "CLEANUP"
    task = await server.until_ended(task["id"])
    assert task["status"] == "cancelled"


async def test_an_agent_that_exits_non_zero_fails_the_task_with_its_stderr(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="fails", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"] == (
        "IMPLEMENTING: agent 'fails' (implement) exited with code 3: agent broke down in implement"
    )


async def test_an_agent_that_hangs_is_stopped_at_its_timeout(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="hangs", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["error"] == (
        "IMPLEMENTING: agent 'hangs' (implement) did not finish within 2s and was stopped"
    )


async def test_a_plan_that_cannot_be_read_fails_at_planning(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="garbage")
    task = await server.until_ended(task["id"])
    assert task["error"].startswith("PLANNING: could not read a plan from the agent's output")


async def test_a_markdown_plan_is_accepted(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="markdown")
    task = await server.until_gate(task["id"], "plan")
    assert [s["title"] for s in task["plan"]] == ["Add multiply to calc.py", "Test it"]


async def test_an_agent_that_changes_nothing_fails_the_task(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="nothing", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["error"] == "IMPLEMENTING: the agent finished implement without changing any file"


async def test_changes_to_protected_paths_are_refused(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="protected", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed"
    files = git("ls-tree", "-r", "--name-only", f"nimbus/{task['id']}", cwd=remote)
    assert ".github/workflows/ci.yml" not in files.splitlines()
    assert "calc.py" in files.splitlines()
    events = await server.events(task["id"])
    assert "refused changes to protected paths: .github/workflows/ci.yml" in logs_of(events)


async def test_a_repository_that_cannot_be_cloned_fails_with_gits_words(server, tmp_path):
    gone = make_repo(tmp_path / "g")
    repo_id = await server.register(gone)
    shutil.rmtree(gone)
    task = await server.create_task(repo_id)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"].startswith("CLONING: git clone failed: ")
    assert "does not exist" in task["error"]


async def test_secrets_in_gits_message_are_redacted(server, tmp_path):
    store = server.app.state.services.store
    url = f"https://x-access-token:{API_KEY}@127.0.0.1:1/owner/repo.git"
    repo = await store.add_repo(Repo(new_id("repo"), "ws-default", url, None, now_us()))
    task = await server.create_task(repo.id)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert API_KEY not in str(task)
    assert API_KEY not in str(await server.events(task["id"]))


async def test_the_model_agent_without_a_model_says_what_to_configure(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="builtin")
    task = await server.until_ended(task["id"])
    assert task["error"].startswith(
        "PLANNING: agent 'builtin' needs a model: set NIMBUS_MODEL_PROVIDER"
    )
    assert "NIMBUS_CONFIG" in task["error"]


async def test_failures_that_were_there_before_are_not_blamed(server, tmp_path):
    broken = "def test_broken():\n    assert False\n"
    remote = make_repo(tmp_path / "r", files={"tests/test_broken.py": broken})
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task
    assert task["verification"]["passed"] is True
    assert task["verification"]["preexisting_failures"] == ["tests/test_broken.py::test_broken"]
    assert task["fix_attempts"] == 0


async def test_an_approved_diff_being_published_cannot_be_cancelled(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/approve")
    await server.until_gate(task["id"], "diff")
    await server.client.post(f"/tasks/{task['id']}/approve-diff")
    response = await server.client.post(f"/tasks/{task['id']}/cancel")
    assert response.status_code == 409
    assert (await server.until_ended(task["id"]))["status"] == "completed"


async def test_what_a_test_run_leaves_in_the_clone_never_joins_the_diff(server, tmp_path):
    # The repository's tests write a report, a cache folder and touch a tracked file.
    litter = "echo report > report.txt; mkdir -p .cache; echo x > .cache/x; echo '#' >> conftest.py"
    remote = make_repo(tmp_path / "r", config=f"test_command: {litter}; {TEST_COMMAND}\n")
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    await server.client.post(f"/tasks/{task['id']}/approve")
    task = await server.until_gate(task["id"], "diff")
    diff = (await server.client.get(f"/tasks/{task['id']}/diff")).text
    assert "calc.py" in diff  # the agent's work
    assert "report.txt" not in diff and ".cache" not in diff and "conftest.py" not in diff
    assert "discarded what the test run left in the clone" in logs_of(
        await server.events(task["id"])
    )
