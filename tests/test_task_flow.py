"""Tasks through every phase on a real git repository, with the scripted command agent."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import git


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
        "completed", "DONE", None, None,
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
        "QUEUED", "CLONING", "INDEXING", "PLANNING", "AWAITING_APPROVAL", "IMPLEMENTING",
        "VERIFYING", "REVIEWING", "AWAITING_APPROVAL", "CLEANUP", "DONE",
    ]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1] == {**events[-1], "event_type": "done", "pr_url": None}
