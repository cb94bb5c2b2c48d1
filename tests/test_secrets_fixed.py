"""Secrets and hostile clones: the product bugs an audit found, each fixed and kept as a test.

Each test says where the secret went and what let it (tests/test_secrets_audit.py and
tests/test_hostile_clone.py hold what held from the start).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import pytest_asyncio
import websockets
from websockets.exceptions import InvalidStatus

from bot.github.register import write_credentials
from tests.conftest import TEST_COMMAND, git, make_repo, write_agents
from tests.fakes.git_remote import GitRemote, running
from tests.test_github_flow import github_world
from tests.test_secrets_audit import (
    API_KEY,
    ended,
    server_env,
    start_nimbus,
    stop_nimbus,
)

WEBHOOK_SECRET = "pending-webhook-secret-4b8e1d7c2a9f6053"
CLIENT_SECRET = "pending-client-secret-0e5a7c3b9d1f8264"


@dataclass
class Served:
    """What one `nimbus serve`, at its default log level, logged and made of one task."""

    log: str
    task: dict


@pytest.fixture(scope="module")
def outside_tmp():
    """Where an operator keeps the App's files: not under /tmp, which the sandbox replaces."""
    folder = Path(tempfile.mkdtemp(prefix="nimbus-pending-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory, outside_tmp) -> Served:
    root = tmp_path_factory.mktemp("pending")
    # The App's files as `nimbus github register` writes them: settings and key side by side.
    settings_file = outside_tmp / "nimbus-github-app.env"
    app = {
        "id": 4242,
        "pem": "-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key\n-----END RSA PRIVATE KEY-----\n",
        "webhook_secret": WEBHOOK_SECRET,
        "client_id": "Iv1.pendingclient",
        "client_secret": CLIENT_SECRET,
    }
    key = write_credentials(settings_file, app, "https://api.github.com")
    # The repository's tests print the operator's settings file, if they can see it, and a
    # fixture in which someone committed the webhook secret (as a team reusing it might).
    command = (
        f"if grep -q NIMBUS_GITHUB {settings_file}; then echo SETTINGS-READABLE;"
        f" cat {settings_file}; else echo SETTINGS-HIDDEN; fi;"
        f" cat fixtures/token.txt; {TEST_COMMAND}"
    )
    remote = make_repo(
        root / "repo",
        files={"fixtures/token.txt": f"{WEBHOOK_SECRET}\n"},
        config=f"test_command: {json.dumps(command)}\n",
    )
    env = server_env(
        root / "data",
        NIMBUS_CONFIG=str(write_agents(root / "agents.toml")),
        NIMBUS_GITHUB_APP_ID="4242",
        NIMBUS_GITHUB_PRIVATE_KEY_PATH=str(key),
        NIMBUS_GITHUB_WEBHOOK_SECRET=WEBHOOK_SECRET,
    )
    nimbus = await asyncio.to_thread(start_nimbus, env, root / "nimbus.log")
    try:
        async with nimbus.client(API_KEY) as client:
            repo = await client.post(
                "/repos/", json={"workspace_id": "ws-default", "url": str(remote)}
            )
            body = {
                "workspace_id": "ws-default",
                "repo_id": repo.json()["id"],
                "description": "Add multiply",
                "auto_approve": True,
            }
            task_id = (await client.post("/tasks/", json=body)).json()["id"]
            task = await ended(client, task_id)
            ws = nimbus.url.replace("http://", "ws://")
            # A browser follows a task with the key in the query: accepted, and refused.
            for query in (f"api_key={API_KEY}", f"api%5Fkey={API_KEY}"):
                async with websockets.connect(f"{ws}/tasks/{task_id}/ws?{query}") as follower:
                    async for _ in follower:  # every event, up to the server's close
                        pass
                with pytest.raises(InvalidStatus):
                    await websockets.connect(f"{ws}/tasks/task-unknown/ws?{query}")
            async with httpx2.AsyncClient(base_url=nimbus.url) as anonymous:
                await anonymous.get(f"/tasks/?api%5Fkey={API_KEY}")
    finally:
        await asyncio.to_thread(stop_nimbus, nimbus.process)
    return Served(log=nimbus.log.read_text(), task=task)


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_a_websocket_key_in_the_query_stays_out_of_the_log(served):
    """Was a bug: uvicorn logs every WebSocket handshake at INFO with its query string.

    `nimbus serve` turns uvicorn's access log off and logs requests itself with `?api_key=`
    masked (bot/api/__init__.py RequestLog), but uvicorn's WebSocket protocol logs
    `"WebSocket /tasks/<id>/ws?api_key=<key>" [accepted]` (and `... 404` when refused) on the
    `uvicorn.error` logger, which `serve` (bot/cli.py) runs at NIMBUS_LOG_LEVEL, default info.
    """
    uvicorns = [line for line in lines_with(served.log, API_KEY) if "nimbus.http" not in line]
    assert uvicorns == []


def test_a_percent_encoded_api_key_name_is_masked_too(served):
    """Was a bug: `?api%5Fkey=<key>` is read as `api_key` but logged as it came.

    Starlette decodes parameter names, so bot/api/auth.py accepts the key from `api%5Fkey`
    on the WebSocket; bot/api/__init__.py `redact_query` compares the raw, undecoded name with
    `api_key`, so RequestLog writes `WS /tasks/<id>/ws?api%5Fkey=<key> 101` (and the same for
    any HTTP path) to the log.
    """
    ours = [line for line in lines_with(served.log, API_KEY) if "nimbus.http" in line]
    assert ours == []


def test_the_apps_settings_file_is_hidden_from_the_repositorys_commands(served):
    """Was a bug: the sandbox hides the App's key file but not the settings file beside it.

    `nimbus github register` writes `nimbus-github-app.env` (NIMBUS_GITHUB_WEBHOOK_SECRET, the
    OAuth client secret) next to the `.pem`; app.py `_sandbox` hides only the key file's own
    path (with the data folder and the agent configuration), and bot/sandbox.py binds `/`
    read-only, so the repository's test command reads the settings file.
    """
    output = served.task["verification"]["output_tail"]
    assert "SETTINGS-HIDDEN" in output, output[:300]


def test_a_secret_in_a_commands_output_is_masked_in_the_task(served):
    """Was a bug: a task's `verification`, `plan`, `review` and `diff` skip the redactor.

    bot/events.py `TaskEvents.change` redacts only the `error` of task changes; the test
    output kept in `verification.output_tail` (phases/verifying.py) is stored and served by
    `GET /tasks/{id}` as it came, so the webhook secret the test command printed is there in
    clear, where an event or an error with the same text would show `***`. The plan and the
    review go the same way into GitHub's plan comment and PR body (bot/github/render.py).
    """
    assert " passed" in served.task["verification"]["output_tail"]  # the tests did run
    assert WEBHOOK_SECRET not in json.dumps(served.task)


MARKER_FILTER = "filter-ran.log"


async def test_programs_named_in_the_clones_config_never_run_in_nimbuss_git(server, tmp_path):
    """Was a bug (defence in depth): the clone's config can still make Nimbus's git run programs.

    bot/git.py passes `-c core.hooksPath=/dev/null -c core.fsmonitor=false` (hooks and
    fsmonitor do not run: tests/test_hostile_clone.py), but a filter driver or textconv named in
    the clone's `.git/config` and selected by the repository's own `.gitattributes` runs in
    `git add` (`changed_paths`, `commit_all`) and `git diff`, outside any sandbox. Reachable
    wherever repository code can write `.git`: NIMBUS_SANDBOX=off, or bwrap missing (auto then
    runs commands unisolated).
    """
    marker = tmp_path / MARKER_FILTER
    attributes = "*.py filter=audit diff=audit\n"
    remote = make_repo(tmp_path / "repo", files={".gitattributes": attributes})
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id)
    await server.until_gate(task["id"], "plan")
    program = tmp_path / "evil-filter"
    program.write_text(
        f'#!/bin/sh\necho "$1 ran" >> {marker}\n'
        'if [ "$1" = textconv ]; then cat "$2"; else cat; fi\n'
    )
    program.chmod(0o755)
    config = server.settings.tasks_dir / task["id"] / "repo" / ".git" / "config"
    with config.open("a") as out:
        out.write(
            f'[filter "audit"]\n\tclean = {program} clean\n\tsmudge = {program} smudge\n'
            f'[diff "audit"]\n\ttextconv = {program} textconv\n'
        )
    await server.client.post(f"/tasks/{task['id']}/approve")
    gate = await server.wait_for(task["id"], lambda t: t["approval"] == "diff" or t["error"])
    assert gate["approval"] == "diff", gate["error"]
    await server.client.post(f"/tasks/{task['id']}/approve-diff")
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task["error"]
    assert not marker.exists(), marker.read_text()


async def test_only_the_approved_diff_is_pushed(server, tmp_path):
    """Was a bug: files the repository's tests write during VERIFYING are pushed, never approved.

    phases/cleanup.py commits with `git.squash` (`reset --soft <base>`, `add --all`, commit):
    whatever the last test run left in the working tree (here a workflow, a file of its own,
    `__pycache__/`) goes into the pushed commit, although the diff the person approved (and the
    protected-path check in phases/changes.py) came before that run. So the repository's own
    code decides part of the pull request after approval, protected paths included, and
    anything it could read goes out with it.
    """
    writer = "mkdir -p .github/workflows; echo 'on: push' > .github/workflows/injected.yml"
    command = f"{writer}; echo from-the-tests > injected.txt; {TEST_COMMAND}"
    remote = make_repo(tmp_path / "repo", config=f"test_command: {json.dumps(command)}\n")
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task["error"]
    # What a person approves at the diff gate (auto_approve approves the same diff).
    approved = (await server.client.get(f"/tasks/{task['id']}/diff")).text
    pushed = git("diff", "--name-only", "main", f"nimbus/{task['id']}", cwd=remote).splitlines()
    in_diff = re.findall(r"^diff --git a/(\S+) ", approved, re.MULTILINE)
    assert sorted(pushed) == sorted(in_diff)


class Recorder:
    """A git host's token check that accepts any token and keeps it."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def git_access(self, token: str, owner: str, repo: str) -> str | None:
        self.tokens.append(token)
        return None


async def test_the_installation_token_goes_only_to_the_repositorys_clone_url(
    tmp_path, start_server, settings
):
    """Was a bug (defence in depth): the push with the token goes wherever the clone's config says.

    bot/forge/github.py `publish` pushes to the remote named `origin`, and bot/git.py hands
    git the token as `http.extraHeader`, which git sends to whatever URL `remote.origin.pushurl`
    (or a `url.*.pushInsteadOf`) in the clone's `.git/config` names. DESIGN §6 wants the push to
    go to the `clone_url` GitHub reports. Reachable wherever repository code can write `.git`.
    """
    recorder = Recorder()
    async with (
        running(GitRemote(tmp_path / "elsewhere", recorder)) as elsewhere,
        github_world(tmp_path, start_server, settings) as world,
    ):
        elsewhere.create("octo-org", "hello")
        issue = world.github.add_issue("octo-org", "hello", "Add multiply")
        await world.comment(issue.number, "/nimbus add multiply")
        task = await world.task(until=lambda t: t["approval"] == "plan")
        clone = world.server.settings.tasks_dir / task["id"] / "repo"
        with (clone / ".git" / "config").open("a") as config:
            url = elsewhere.clone_url("octo-org", "hello")
            config.write(f'[remote "origin"]\n\tpushurl = {url}\n')
        await world.comment(issue.number, "/nimbus approve")
        await world.task(until=lambda t: t["approval"] == "diff")
        await world.comment(issue.number, "/nimbus approve-diff")
        task = await world.task(until=lambda t: t["phase"] in ("DONE", "FAILED"))
        assert recorder.tokens == [], task["error"]
