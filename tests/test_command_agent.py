"""The command agent's contract (DESIGN §4), seen from inside the agent, and skills."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.conftest import API_KEY, make_repo


@pytest.fixture
def agent_trace(tmp_path, monkeypatch) -> Path:
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    # A server secret in the server's environment must never reach an agent.
    monkeypatch.setenv("NIMBUS_API_KEY", API_KEY)
    monkeypatch.setenv("INNOCENT_LOOKING", API_KEY)
    return trace


def seen_by_agent(trace: Path) -> dict[str, dict]:
    return {entry["phase"]: entry for entry in map(json.loads, trace.read_text().splitlines())}


async def test_each_phase_gets_the_contracts_environment_and_files(
    agent_trace, start_server, settings, remote
):
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, "Add multiply\n\nwith a test", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed"
    seen = seen_by_agent(agent_trace)
    assert set(seen) == {"plan", "implement", "review"}
    task_dir = settings.tasks_dir / task["id"]
    for phase, entry in seen.items():
        env = entry["env"]
        assert env["NIMBUS_PHASE"] == phase
        assert env["NIMBUS_TASK_ID"] == task["id"]
        assert env["NIMBUS_TASK_DESCRIPTION"] == "Add multiply\n\nwith a test"
        assert env["HOME"] == str(task_dir / "home")
        assert entry["cwd"] == str(task_dir / "repo")
        assert env["AGENT_MODE"] == "good"
        assert "Add multiply" in entry["prompt"]
        assert "calc.py" in entry["prompt"]  # the repository overview from INDEXING
        assert API_KEY not in json.dumps(env)
        assert not {k for k in env if k.startswith("NIMBUS_")} - {
            "NIMBUS_PHASE",
            "NIMBUS_TASK_ID",
            "NIMBUS_TASK_DESCRIPTION",
            "NIMBUS_PROMPT_FILE",
            "NIMBUS_CONTEXT_FILE",
            "NIMBUS_PLAN_FILE",
            "NIMBUS_DIFF_FILE",
        }
        # bwrap sets PWD to the working folder it starts the command in.
        assert env.pop("PWD", entry["cwd"]) == entry["cwd"]
        assert set(env) - {k for k in env if k.startswith(("NIMBUS_", "AGENT_"))} == {
            "PATH",
            "LANG",
            "HOME",
            "TMPDIR",  # its own, beside HOME
        }
        assert env["TMPDIR"] == str(task_dir / "tmp")
    assert "NIMBUS_PLAN_FILE" in seen["implement"]["env"]
    assert "Add multiply()" in seen["implement"]["prompt"]
    assert "NIMBUS_DIFF_FILE" in seen["review"]["env"]
    assert "+def multiply(a, b):" in seen["review"]["prompt"]


async def test_the_fix_phase_gets_the_failing_output(agent_trace, start_server, settings, remote):
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="fixer", auto_approve=True)
    await server.until_ended(task["id"])
    fix = seen_by_agent(agent_trace)["fix"]
    assert "NIMBUS_FAILURES_FILE" in fix["env"]
    assert "test_multiply" in fix["prompt"]
    assert "assert 7 == 12" in fix["prompt"]


async def test_a_server_skill_is_added_to_every_prompt(agent_trace, start_server, settings, remote):
    settings.server_skills_dir.mkdir(parents=True)
    (settings.server_skills_dir / "tests-first.md").write_text("Always write the test first.")
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, skill_name="tests-first", auto_approve=True)
    await server.until_ended(task["id"])
    for entry in seen_by_agent(agent_trace).values():
        assert "Always write the test first." in entry["prompt"]


async def test_a_repository_skill_is_found_in_the_clone(
    agent_trace, start_server, settings, tmp_path
):
    remote = make_repo(tmp_path / "r", files={".nimbus/skills/house.md": "Use tabs, never spaces."})
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, skill_name="house")
    await server.until_gate(task["id"], "plan")
    assert "Use tabs, never spaces." in seen_by_agent(agent_trace)["plan"]["prompt"]


async def test_a_missing_repository_skill_fails_at_indexing(server, remote):
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, skill_name="nowhere")
    task = await server.until_ended(task["id"])
    assert task["error"].startswith("INDEXING: skill 'nowhere' is neither in the repository")


async def test_running_tasks_never_exceed_the_concurrency_bound(start_server, settings, remote):
    server = await start_server(settings.with_overrides(max_concurrent_tasks=1))
    repo_id = await server.register(remote)
    ids = [
        (await server.create_task(repo_id, agent_name="slow", auto_approve=True))["id"]
        for _ in range(3)
    ]
    most = 0
    while True:
        listed = (await server.client.get("/tasks/")).json()["tasks"]
        statuses = [t["status"] for t in listed if t["id"] in ids]
        most = max(most, statuses.count("running"))
        if all(s == "completed" for s in statuses):
            break
        assert "failed" not in statuses
        await asyncio.sleep(0.02)
    assert most == 1
