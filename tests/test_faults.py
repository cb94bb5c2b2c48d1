"""Faults (issue 7): GitHub, the model, git and the disk failing, and the server killed mid-phase.

Each ends in a retried success or a clear FAILED; none leaves a task stuck in a working status.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.conftest import AGENT_SCRIPT, API_KEY, TEST_COMMAND, git, make_repo
from tests.fakes.models import FakeOpenAI, Hang, running
from tests.test_github_flow import github_world
from tests.test_model_agent import implement_replies, plan_reply, review_reply, with_model
from tests.test_restart import ServerProcess, create, wait_for

PHASES = ["QUEUED", "CLONING", "INDEXING", "PLANNING", "IMPLEMENTING", "VERIFYING", "REVIEWING",
          "CLEANUP", "DONE"]  # fmt: skip
ENDED = ("DONE", "FAILED")


@pytest.fixture
async def world(tmp_path, start_server, settings):
    async with github_world(tmp_path, start_server, settings) as made:
        yield made


@pytest.fixture
async def openai():
    async with running(FakeOpenAI()) as fake:
        yield fake
    assert fake.problems == []


def statuses(github, method: str, path_glob: str) -> list[int]:
    """What the fake GitHub answered to requests of one kind, in order."""
    return [r["status"] for r in github.requests
            if r["method"] == method and fnmatch.fnmatchcase(r["path"], path_glob)]  # fmt: skip


def markers(bodies: list[str]) -> list[str]:
    """The hidden markers of Nimbus's comments (one per comment it made)."""
    return [b.splitlines()[0] for b in bodies if b.startswith("<!-- nimbus:")]


async def test_github_failing_along_a_task_ends_in_one_pull_request_and_one_comment_each(world):
    github = world.github
    issue = github.add_issue("octo-org", "hello", "Add multiply")
    # GitHub posts the status comment but answers 502; then a secondary rate limit on the next.
    github.fail_next("POST", "/repos/*/issues/*/comments", 502, after_acting=True)
    github.fail_next("POST", "/repos/*/issues/*/comments", 403, retry_after=0)
    github.fail_next("PATCH", "/repos/*/issues/comments/*", 503)
    github.fail_next("GET", "/repos/*/pulls", 502)
    github.fail_next("POST", "/repos/*/pulls", 429, retry_after=1)
    github.fail_next("POST", "/repos/*/check-runs", 429, retry_after=0)
    task = await world.through_both_gates(issue)
    await world.comments_marked(issue.number, "result")

    (pull,) = github.pulls_of("octo-org", "hello")
    assert task["pr_url"].endswith(f"/pull/{pull.number}")
    assert statuses(github, "POST", "*/pulls") == [429, 201]
    assert statuses(github, "GET", "*/pulls") == [502, 200]
    assert statuses(github, "POST", "*/check-runs") == [429, 201]
    assert statuses(github, "POST", "*/issues/*/comments")[:3] == [502, 403, 201]
    edits = statuses(github, "PATCH", "*/issues/comments/*")
    assert edits[edits.index(503) + 1] == 200
    # Found by its marker after the 502, then edited: one status, plan, diff and result comment.
    found = markers(world.bodies(issue.number))
    assert sorted(found) == sorted(
        f"<!-- nimbus:task={task['id']}{kind} -->" for kind in ("", ":plan", ":diff", ":result")
    )


async def test_a_model_that_does_not_answer_in_time_is_asked_again(
    openai, start_server, settings, remote
):
    openai.script(Hang(30), plan_reply(), *implement_replies(), review_reply())
    server = await start_server(with_model(settings, openai).with_overrides(model_timeout=1))
    task = await server.create_task(
        await server.register(remote), agent_name="builtin", auto_approve=True
    )
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task
    assert len(openai.requests) == 7  # the one left unanswered, then the six of the task


async def test_a_model_that_never_answers_in_time_fails_the_task_clearly(
    openai, start_server, settings, remote
):
    openai.script(Hang(30), Hang(30))
    slow = with_model(settings, openai).with_overrides(model_timeout=1, model_max_retries=1)
    server = await start_server(slow)
    task = await server.create_task(
        await server.register(remote), agent_name="builtin", auto_approve=True
    )
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"] == (
        f"PLANNING: the openai model 'gpt-test' at {openai.url} kept failing after 2 attempts;"
        " last: no answer within 1s"
    )
    assert not (settings.tasks_dir / task["id"]).exists()


def pre_receive(remote: Path, script: str) -> None:
    """A hook on the remote's side, as a hosting service has for branch protection."""
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(script)
    hook.chmod(0o755)


async def test_a_push_the_remote_refuses_fails_the_task_with_the_remotes_words(server, remote):
    pre_receive(remote, "#!/bin/sh\necho 'nimbus/* branches are protected here' >&2\nexit 1\n")
    task = await server.create_task(await server.register(remote), auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"].startswith("CLEANUP: git push failed: ")
    assert "nimbus/* branches are protected here" in task["error"]
    assert "pre-receive hook declined" in task["error"]
    assert git("branch", "--list", cwd=remote) == "* main"
    assert not (server.settings.tasks_dir / task["id"]).exists()


async def test_a_remote_that_stops_answering_is_given_up_at_the_git_timeout(
    start_server, settings, remote, tmp_path
):
    pid_file = tmp_path / "hook.pid"
    pre_receive(remote, f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    server = await start_server(settings.with_overrides(git_timeout=3))
    task = await server.create_task(await server.register(remote), auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["error"] == "CLEANUP: git push timed out after 3s"
    # The push was stopped with everything it started: no hook is left waiting on the remote.
    hook = int(pid_file.read_text())
    for _ in range(100):
        if not _alive(hook, b"sleep"):
            break
        await asyncio.sleep(0.05)
    else:
        os.kill(hook, signal.SIGKILL)
        pytest.fail("the remote's hook outlived the push that started it")


def _alive(pid: int, name: bytes) -> bool:
    """Whether `pid` is still a running (not zombie) process whose command line has `name`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and name in cmdline


@contextlib.contextmanager
def small_file_system(where: Path) -> Iterator[Path]:
    """A 3 MiB file system of its own at `where` (a tmpfs: root is needed to mount one)."""
    where.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({done.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    with small_file_system(tmp_path / "disk") as disk:
        yield disk


async def test_a_clone_that_fills_the_disk_fails_and_frees_the_space(
    small_disk, start_server, settings, tmp_path
):
    big = make_repo(tmp_path / "big")
    work = tmp_path / "big" / "work"
    (work / "blob.bin").write_bytes(os.urandom(4 * 2**20))  # incompressible: 4 MiB in git too
    git("add", "-A", cwd=work)
    git("commit", "-qm", "a big file", cwd=work)
    git("push", "-q", str(big), "main", cwd=work)
    on_disk = settings.with_overrides(
        data_dir=small_disk / "data", database_path=tmp_path / "nimbus.db"
    )
    server = await start_server(on_disk)

    task = await server.create_task(await server.register(big), auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "failed"
    assert task["error"].startswith("CLONING: git clone failed: ")
    assert "No space left on device" in task["error"]
    # The half-made clone is gone, so the next task has the room it needs.
    small = make_repo(tmp_path / "small")
    task = await server.create_task(await server.register(small), auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task


async def test_a_disk_that_fills_mid_task_fails_it_saying_so_and_the_next_task_runs(
    small_disk, start_server, settings, remote
):
    server = await start_server(settings.with_overrides(data_dir=small_disk, lease_seconds=6))
    task = await server.create_task(
        await server.register(remote), agent_name="slow", auto_approve=True
    )
    await server.wait_for(task["id"], lambda t: t["phase"] == "IMPLEMENTING")
    filler = small_disk / "filler"
    fill = ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"]
    await (await asyncio.create_subprocess_exec(*fill, stderr=subprocess.DEVNULL)).wait()
    # The agent's writes fail in the clone: the task ends, saying why, while the disk is full.
    task = await server.wait_for(task["id"], lambda t: t["phase"] in ENDED, timeout=40)
    assert task["status"] == "failed", task
    assert task["error"].startswith("IMPLEMENTING: ") and "No space left on device" in task["error"]
    assert (await server.client.get("/healthz")).status_code == 200
    another = {"workspace_id": "ws-default", "repo_id": task["repo_id"], "description": "More"}
    answer = await server.client.post("/tasks/", json=another)
    # Refused with an error that says so (test_faults_fixed checks the 503), or stored whole:
    # a commit that fits in the room the WAL file already has needs no new disk space.
    if answer.status_code != 201:
        assert answer.status_code >= 500 and "error" in answer.json(), answer.text

    filler.unlink()  # room again: a task runs to the end
    retry = await server.create_task(task["repo_id"], auto_approve=True)
    assert (await server.until_ended(retry["id"]))["status"] == "completed"


async def test_a_task_whose_clone_was_lost_while_it_waited_fails_saying_what_to_do(server, remote):
    task = await server.create_task(await server.register(remote))
    await server.until_gate(task["id"], "plan")
    folder = server.settings.tasks_dir / task["id"]
    shutil.rmtree(folder)  # a disk replaced, a folder cleaned up by hand while nobody worked on it
    assert (await server.client.post(f"/tasks/{task['id']}/approve")).status_code == 200
    task = await server.until_ended(task["id"])
    assert (task["status"], task["error"]) == (
        "failed",
        f"IMPLEMENTING: the task's clone is missing from {folder / 'repo'};"
        " retry the task to start over",
    )


# The server killed in a phase: a pause in that phase, SIGKILL, then a process takes over.

PAUSE = '''"""Pause the test command once, in the phase named by argv[1]."""
import sys
import time
from pathlib import Path

phase = "verifying" if "multiply" in Path("calc.py").read_text() else "indexing"
marker = Path(".paused")
if phase == sys.argv[1] and not marker.exists():
    marker.write_text(phase)
    deadline = time.monotonic() + 30
    while marker.exists() and time.monotonic() < deadline:  # until the clone is removed
        time.sleep(0.1)
'''

PUSH_ONCE = '''#!{python}
"""Hold the first push until released (or 30 s), then refuse it."""
import sys
import time
from pathlib import Path

if not Path("held-push").exists():
    Path("held-push").write_text("")
    deadline = time.monotonic() + 30
    while not Path("released").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    sys.exit(1)
'''

PAUSING_AGENT = """
default_agent = "pausing"
[agents.pausing]
kind = "command"
command = ["{python}", "{script}"]
writable_paths = ["{markers}"]
[agents.pausing.env]
AGENT_MODE = "good"
AGENT_SLEEP_IN = "{sleep_in}"
AGENT_SLEEP = "30"
AGENT_SLEEP_ONCE = "{marker}"
"""


def pause_in(phase: str, root: Path) -> tuple[Path, object]:
    """A repository and agent that pause once in `phase`; returns the remote and a probe."""
    arg = phase.lower() if phase in ("INDEXING", "VERIFYING") else "none"
    remote = make_repo(
        root / "repo",
        files={"pause.py": PAUSE, ".gitignore": ".paused\n"},
        config=f"test_command: {sys.executable} pause.py {arg} && {TEST_COMMAND}\n",
    )
    markers = root / "markers"
    markers.mkdir()
    (root / "agents.toml").write_text(
        PAUSING_AGENT.format(
            python=sys.executable,
            script=AGENT_SCRIPT,
            sleep_in="plan" if phase == "PLANNING" else "",
            marker=markers / "once",
            markers=markers,
        )
    )
    if phase == "CLEANUP":
        pre_receive(remote, PUSH_ONCE.format(python=sys.executable))

    def paused() -> bool:
        if phase == "PLANNING":
            return (markers / "once").exists() and bool((markers / "once").read_text())
        if phase == "CLEANUP":
            return (remote / "held-push").exists()
        return any((root / "data").rglob(".paused"))

    return remote, paused


async def phase_events(url: str, task_id: str) -> list[str]:
    ws_url = url.replace("http://", "ws://") + f"/tasks/{task_id}/ws"
    async with websockets.connect(ws_url, additional_headers={"X-API-Key": API_KEY}) as ws:
        events = [json.loads(message) async for message in ws]
    return [e["phase"] for e in events if e["event_type"] == "phase"]


def end_agent_left_behind(marker: Path) -> None:
    """Without a sandbox, the killed server's agent sleeps on: end it, if it is still ours."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(marker.read_text())
        if str(marker).encode() in Path(f"/proc/{pid}/environ").read_bytes():
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("phase", "taker"),
    [
        # Another process, once the killed one's lease has expired (the reconciler's case) …
        ("INDEXING", "w2"),
        # … or the same worker restarted, which takes its own tasks back at once.
        ("PLANNING", "w1"),
        ("VERIFYING", "w1"),
        ("CLEANUP", "w1"),
    ],
)
async def test_a_server_killed_in_a_phase_resumes_it_and_the_task_completes(tmp_path, phase, taker):
    remote, paused = pause_in(phase, tmp_path)
    # A short lease only where another process must wait it out: renewals come every 2 s.
    first = ServerProcess(tmp_path, "w1", lease_seconds=3 if taker == "w2" else 30)
    second = ServerProcess(tmp_path, taker, lease_seconds=30)
    try:
        client = await first.start()
        task = await create(client, remote, auto_approve=True)
        await wait_for(client, task["id"], lambda t: t["phase"] in (phase, *ENDED), 30)
        deadline = time.monotonic() + 30
        while not paused():
            assert time.monotonic() < deadline, f"the task never paused in {phase}"
            await asyncio.sleep(0.05)
        assert (await client.get(f"/tasks/{task['id']}")).json()["phase"] == phase
        await first.stop(signal.SIGKILL)

        client = await second.start()
        task = await wait_for(client, task["id"], lambda t: t["phase"] in ENDED, 40)
        assert (task["status"], task["error"]) == ("completed", None), task
        assert await phase_events(second.url, task["id"]) == PHASES
        assert "def multiply" in git("show", f"{task['branch']}:calc.py", cwd=remote)
    finally:
        await first.stop()
        await second.stop()
        (remote / "released").write_text("")
        end_agent_left_behind(tmp_path / "markers" / "once")
