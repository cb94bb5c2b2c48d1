"""The clone is hostile (DESIGN §7): its hooks, fsmonitor and symlinks get nothing from Nimbus.

Hooks and `core.fsmonitor` are planted in the task's clone while it waits at the plan gate, the
way a repository's code would plant them wherever it can write `.git` (and its test command tries
to as well): each leaves a marker outside the clone when run. The sanity check shows the same
planting does run under plain git, so an absent marker means Nimbus's git did not run it.

Symlinks in the repository lead to the App's private key, the database and the data folder; the
fake model asks the file tools to read, list and search through them, and a command agent commits
new ones. None of what they point at may reach the model, an event, the task, the diff or the
pushed branch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import Settings
from tests.conftest import API_KEY, TEST_COMMAND, bare_clone, commit_all, git
from tests.fakes.github import FakeGitHub
from tests.fakes.models import FakeOpenAI, Reply, ToolCall, running

# Every client-side hook git runs for the operations Nimbus uses (clone, checkout, reset, add,
# commit, diff, push) and a few more.
HOOKS = (
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "post-checkout",
    "post-merge",
    "post-rewrite",
    "pre-push",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
    "push-to-checkout",
)
CANARY = "CANARY-of-the-data-folder-3d9f7a1c"


def marker_script(marker: Path, name: str) -> str:
    return f'#!/bin/sh\necho "{name} ran in $PWD" >> "{marker}"\n'


def write_hooks(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in HOOKS:
        hook = folder / name
        hook.write_text(marker_script(marker, name))
        hook.chmod(0o755)


def plant(git_dir: Path, evil: Path) -> Path:
    """Hooks in `.git/hooks`, and config naming other hooks and an fsmonitor; the marker file."""
    marker = evil / "ran.log"
    write_hooks(git_dir / "hooks", marker)
    write_hooks(evil / "hooks", marker)
    fsmonitor = evil / "fsmonitor"
    fsmonitor.write_text(marker_script(marker, "fsmonitor"))
    fsmonitor.chmod(0o755)
    included = evil / "included.config"
    included.write_text(f"[core]\n\thooksPath = {evil / 'hooks'}\n\tfsmonitor = {fsmonitor}\n")
    with (git_dir / "config").open("a") as config:
        config.write(
            f"[core]\n\thooksPath = {evil / 'hooks'}\n\tfsmonitor = {fsmonitor}\n"
            f"[include]\n\tpath = {included}\n"
            f'[includeIf "gitdir:/"]\n\tpath = {included}\n'
        )
    return marker


def plain_git(*args: str, cwd: Path) -> None:
    """git as a person runs it: hooks and fsmonitor enabled."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "A",
        "GIT_AUTHOR_EMAIL": "a@example.com",
        "GIT_COMMITTER_NAME": "A",
        "GIT_COMMITTER_EMAIL": "a@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=30)


def hostile_repository(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """A bare repository whose one commit holds `files` (some executable); symlinks as `->`."""
    work = root / "work"
    work.mkdir(parents=True)
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("->"):
            path.symlink_to(text[2:])
        else:
            path.write_text(text)
        if name in executable:
            path.chmod(0o755)
    commit_all(work)
    return bare_clone(work)


BASE = {
    "calc.py": "def add(a, b):\n    return a + b\n",
    "tests/__init__.py": "",
    "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n",
    "conftest.py": "",
}


def test_the_planted_hooks_and_fsmonitor_do_run_under_plain_git(tmp_path):
    """The sanity check: the planting below is not inert by itself."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("a\n")
    plain_git("init", "-q", "-b", "main", cwd=work)
    marker = plant(work / ".git", tmp_path / "evil")
    (work / "a.txt").write_text("b\n")
    plain_git("add", "-A", cwd=work)
    plain_git("commit", "-q", "-m", "x", cwd=work)
    ran = marker.read_text()
    for name in ("fsmonitor", "pre-commit", "commit-msg", "post-commit", "reference-transaction"):
        assert f"{name} ran" in ran


async def test_hooks_and_fsmonitor_in_the_clone_never_run_in_nimbuss_git(server, tmp_path):
    """Planted before IMPLEMENTING: then come reset, clean, add, diff, checkout, commit, push."""
    evil = tmp_path / "evil"
    marker = evil / "ran.log"
    # The repository's own attempts: hook files in the tree, and a test command that copies
    # them into .git and names an fsmonitor (in the sandbox .git is read-only: it fails there).
    planter = (
        f"mkdir -p .git/hooks && cp .githooks/* .git/hooks/ && git config core.fsmonitor"
        f" {evil / 'fsmonitor'} && git config core.hooksPath {evil / 'hooks'}"
    )
    test_command = json.dumps(f"({planter}) 2>/dev/null; {TEST_COMMAND}")
    files = {
        **BASE,
        ".github/workflows/ci.yml": "on: [push]\n",
        ".github/nimbus.yml": f"test_command: {test_command}\n",
        **{f".githooks/{name}": marker_script(marker, f"in-tree {name}") for name in HOOKS},
    }
    executable = tuple(f".githooks/{name}" for name in HOOKS)
    remote = hostile_repository(tmp_path / "repo", files, executable)
    repo_id = await server.register(remote)
    # "protected" rewrites .github/workflows/ci.yml: Nimbus checks the file out again.
    task = await server.create_task(repo_id, "Add multiply", agent_name="protected")
    await server.until_gate(task["id"], "plan")
    clone = server.settings.tasks_dir / task["id"] / "repo"
    assert plant(clone / ".git", evil) == marker
    await server.client.post(f"/tasks/{task['id']}/approve")
    await server.until_gate(task["id"], "diff")
    await server.client.post(f"/tasks/{task['id']}/approve-diff")
    task = await server.until_ended(task["id"])

    assert task["status"] == "completed", task
    events = await server.events(task["id"])
    logs = [e["message"] for e in events if e["event_type"] == "log"]
    assert "refused changes to protected paths: .github/workflows/ci.yml" in logs
    branch = f"nimbus/{task['id']}"
    assert "def multiply" in git("show", f"{branch}:calc.py", cwd=remote)
    assert git("show", f"{branch}:.github/workflows/ci.yml", cwd=remote) == "on: [push]"
    assert not marker.exists(), marker.read_text()


@pytest.fixture
def secrets_at_hand(tmp_path) -> dict[str, Path]:
    """The server's own files that a repository's symlinks point at."""
    key = tmp_path / "app-key.pem"
    key.write_text(FakeGitHub().private_key_pem)
    data = tmp_path / "data"
    data.mkdir()
    (data / "canary.txt").write_text(CANARY + "\n")
    return {"key": key, "data": data, "db": data / "nimbus.db"}


def hostile_settings(at_hand: dict[str, Path], **env: str) -> Settings:
    """The server as its environment configures it, with the App key read from its file."""
    return Settings.from_env(
        {
            "NIMBUS_DATA_DIR": str(at_hand["data"]),
            "NIMBUS_API_KEY": API_KEY,
            "NIMBUS_POLL_SECONDS": "0.1",
            "NIMBUS_WORKER_ID": "test-worker",
            "NIMBUS_TEST_TIMEOUT": "60",
            "NIMBUS_GITHUB_APP_ID": "4242",
            "NIMBUS_GITHUB_PRIVATE_KEY_PATH": str(at_hand["key"]),
            "NIMBUS_GITHUB_WEBHOOK_SECRET": "hostile-webhook-secret-8c2e",
            **env,
        }
    )


def symlinks(at_hand: dict[str, Path]) -> dict[str, str]:
    # The clone is <data>/tasks/<task>/repo: three levels up is the data folder.
    return {
        "app-key.pem": f"->{at_hand['key']}",
        "docs/key.txt": f"->../../../../../{at_hand['key'].name}",
        "nimbus.db": f"->{at_hand['db']}",
        "data": f"->{at_hand['data']}",
        "data-rel": "->../../..",
        "canary.txt": "->../../../canary.txt",
        ".nimbus/skills/house.md": f"->{at_hand['key']}",
        "gitdir": "->.git",
    }


def secret_texts(at_hand: dict[str, Path]) -> list[str]:
    """What must never come out: the key's lines, its header, the canary."""
    pem = at_hand["key"].read_text()
    lines = [line for line in pem.splitlines() if "-----" not in line]
    return ["PRIVATE KEY-----", CANARY, *lines]


def found_in(texts: list[str], at_hand: dict[str, Path]) -> list[str]:
    return [s[:40] for s in secret_texts(at_hand) if any(s in t for t in texts)]


def tool_results(requests: list[dict]) -> list[str]:
    """Each tool result the model was sent, once (every request repeats the earlier ones)."""
    by_call = {
        m["tool_call_id"]: m["content"]
        for request in requests
        for m in request["messages"]
        if m["role"] == "tool"
    }
    return list(by_call.values())


async def test_file_tools_never_follow_a_symlink_out_of_the_clone(
    start_server, tmp_path, secrets_at_hand
):
    at_hand = secrets_at_hand
    # Only tests/: collecting through the link loops (data-rel holds the clone) never ends.
    config = f"test_command: {TEST_COMMAND} tests\n"
    remote = hostile_repository(
        tmp_path / "repo", {**BASE, ".github/nimbus.yml": config, **symlinks(at_hand)}
    )
    linked = ["app-key.pem", "docs/key.txt", "nimbus.db", "data/canary.txt"]
    linked += ["data-rel/canary.txt", "canary.txt", ".nimbus/skills/house.md"]
    reads = [ToolCall("read_file", {"path": path}) for path in linked]
    looks = [
        ToolCall("list_files", {"path": "data"}),
        ToolCall("list_files", {"path": "data-rel"}),
        ToolCall("list_files", {}),
        ToolCall("search", {"pattern": "PRIVATE KEY"}),
        ToolCall("search", {"pattern": "CANARY"}),
        ToolCall("search", {"pattern": "CANARY", "path": "data"}),
    ]
    hook = marker_script(tmp_path / "ran.log", "pre-commit")
    into_git = [
        ToolCall("read_file", {"path": "gitdir/config"}),
        ToolCall("create_file", {"path": "gitdir/hooks/pre-commit", "content": hook}),
    ]
    edit = ToolCall(
        "edit_file",
        {
            "path": "calc.py",
            "search": "    return a + b\n",
            "replace": "    return a + b\n\n\ndef multiply(a, b):\n    return a * b\n",
        },
    )

    def echo_plan(request: dict) -> Reply:
        step = {"title": "Add multiply()", "files": ["calc.py"], "detail": json.dumps(request)}
        return Reply(json.dumps({"plan": [step]}))

    def echo_review(request: dict) -> Reply:
        return Reply(json.dumps({"summary": json.dumps(request), "comments": []}))

    async with running(FakeOpenAI()) as model:
        model.script(
            Reply("Reading.", tool_calls=reads[:4]),
            Reply("More.", tool_calls=reads[4:] + looks),
            echo_plan,
            Reply(tool_calls=[*reads[:2], *into_git, edit]),
            lambda request: Reply(json.dumps(request)),
            echo_review,
        )
        settings = hostile_settings(
            at_hand,
            NIMBUS_MODEL_PROVIDER="openai",
            NIMBUS_MODEL="gpt-test",
            NIMBUS_MODEL_BASE_URL=model.url,
            NIMBUS_MODEL_API_KEY=model.api_key or "",
        )
        server = await start_server(settings)
        repo_id = await server.register(remote)
        task = await server.create_task(repo_id, auto_approve=True)
        task = await server.until_ended(task["id"])
    assert model.problems == []
    assert task["status"] == "completed", task

    results = tool_results(model.requests)
    refused = [r for r in results if "outside the repository" in r]
    # Seven reads, two listings and one scoped search in planning, two reads in implementing.
    assert len(refused) == 12, results
    assert len([r for r in results if "inside .git, which the tools do not touch" in r]) == 2
    assert not (tmp_path / "ran.log").exists()
    sent = [json.dumps(request) for request in model.requests]
    events = [json.dumps(e) for e in await server.events(task["id"])]
    diff = (await server.client.get(f"/tasks/{task['id']}/diff")).text
    pushed = git("log", "--all", "-p", cwd=remote)
    outputs = [*sent, *events, json.dumps(task), diff, pushed]
    assert found_in(outputs, at_hand) == []
    assert "def multiply" in diff and "app-key.pem" not in diff


SYMLINKING_AGENT = r"""
import json
import os
import sys
from pathlib import Path

KEY, DATA = sys.argv[1], sys.argv[2]
phase = os.environ["NIMBUS_PHASE"]
if phase == "plan":
    print(json.dumps({"plan": ["Add multiply()"]}))
elif phase == "implement":
    calc = Path("calc.py")
    calc.write_text(calc.read_text() + "\n\ndef multiply(a, b):\n    return a * b\n")
    os.symlink(KEY, "leaked-key.pem")
    os.symlink(DATA, "leaked-data")
    os.symlink(os.path.join(DATA, "canary.txt"), "tests/fixture.txt")
    os.remove("conftest.py")
    os.symlink(KEY, "conftest.py")
elif phase == "review":
    print(json.dumps({"summary": "Looks fine.", "comments": []}))
"""


async def test_symlinks_an_agent_makes_are_committed_as_links_not_as_what_they_point_at(
    start_server, tmp_path, secrets_at_hand
):
    at_hand = secrets_at_hand
    script = tmp_path / "symlinking_agent.py"
    script.write_text(SYMLINKING_AGENT)
    agents = tmp_path / "agents.toml"
    argv = [sys.executable, str(script), str(at_hand["key"]), str(at_hand["data"])]
    agents.write_text(
        f'default_agent = "linker"\n[agents.linker]\nkind = "command"\n'
        f"command = {json.dumps(argv)}\ntimeout = 60\n"
    )
    # A test command that imports nothing: conftest.py becomes a link to the key.
    config = "test_command: echo no tests to run\n"
    remote = hostile_repository(
        tmp_path / "repo", {**BASE, ".github/nimbus.yml": config, **symlinks(at_hand)}
    )
    server = await start_server(hostile_settings(at_hand, NIMBUS_CONFIG=str(agents)))
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, auto_approve=True)
    skilled = await server.create_task(repo_id, skill_name="house", auto_approve=True)
    task = await server.until_ended(task["id"])
    skilled = await server.until_ended(skilled["id"])

    assert task["status"] == "completed", task["error"]
    branch = f"nimbus/{task['id']}"
    modes = git("ls-tree", "-r", branch, cwd=remote)
    for name in ("leaked-key.pem", "leaked-data", "tests/fixture.txt", "conftest.py"):
        assert "120000 blob" in next(line for line in modes.splitlines() if line.endswith(name))
    assert git("cat-file", "-p", f"{branch}:leaked-key.pem", cwd=remote) == str(at_hand["key"])
    # A repository skill that is a link out of the clone is not one.
    assert skilled["error"].startswith("INDEXING: skill 'house' is neither in the repository")

    diff = (await server.client.get(f"/tasks/{task['id']}/diff")).text
    assert "new file mode 120000" in diff
    events = [json.dumps(e) for t in (task, skilled) for e in await server.events(t["id"])]
    pushed = git("log", "--all", "-p", cwd=remote)
    outputs = [*events, json.dumps(task), json.dumps(skilled), diff, pushed]
    assert found_in(outputs, at_hand) == []
