"""The `nimbus` command run as a real process: workspaces, keys, settings, and `serve`."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_KEY = "cli-bootstrap-key-0123456789"


def clean_env(data_dir: Path, **more: str) -> dict[str, str]:
    """The test runner's environment without any NIMBUS_* of its own, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    return {**env, "NIMBUS_DATA_DIR": str(data_dir), **more}


def nimbus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return clean_env(tmp_path / "data")


def test_workspace_create_prints_its_id_and_list_shows_it(env):
    created = nimbus("workspace", "create", "--name", "team-a", env=env)
    assert created.returncode == 0, created.stderr
    workspace = created.stdout.strip()
    assert re.fullmatch(r"ws-[0-9a-f]+", workspace), created.stdout

    listed = nimbus("workspace", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert ["ws-default", "default"] in rows
    assert [workspace, "team-a"] in rows


def test_key_create_prints_the_key_once_and_a_note_apart(env):
    workspace = nimbus("workspace", "create", "--name", "x", env=env).stdout.strip()
    made = nimbus("key", "create", "--workspace", workspace, env=env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert made.stdout == key + "\n"
    assert len(key) >= 32 and not re.search(r"\s", key)
    assert workspace in made.stderr and "once" in made.stderr
    assert key not in made.stderr

    another = nimbus("key", "create", "--workspace", workspace, env=env).stdout.strip()
    assert another and another != key


def test_key_for_an_unknown_workspace_exits_2_saying_what_to_do(env):
    made = nimbus("key", "create", "--workspace", "ws-nope", env=env)
    assert made.returncode == 2
    assert made.stdout == ""
    assert "ws-nope" in made.stderr
    assert "nimbus workspace create" in made.stderr


@pytest.mark.parametrize(
    ("variable", "value", "commands"),
    [
        ("NIMBUS_PORT", "abc", (("workspace", "list"), ("serve", "--port", "0"))),
        ("NIMBUS_ALLOW_LOCAL_REPOS", "maybe", (("key", "create", "--workspace", "ws-default"),)),
    ],
)
def test_malformed_setting_exits_2_naming_the_variable(tmp_path, variable, value, commands):
    env = clean_env(tmp_path / "data", **{variable: value})
    for args in commands:
        done = nimbus(*args, env=env)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert variable in done.stderr and value in done.stderr
        assert "Traceback" not in done.stderr
        assert done.stdout == ""


def read_line(stream, deadline: float) -> str:
    """One line from a pipe, or a failure once `deadline` (monotonic) has passed."""
    line = b""
    fd = stream.fileno()
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"no complete line in time; got {line!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            pytest.fail(f"the process closed its output; got {line!r}")
        line += chunk
    return line.decode()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`nimbus serve --port 0` as its own process group; yields its URL and environment."""
    env = clean_env(tmp_path / "data", NIMBUS_API_KEY=BOOTSTRAP_KEY, NIMBUS_LOG_LEVEL="warning")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        first = read_line(process.stdout, time.monotonic() + 20)
        match = re.fullmatch(r"Nimbus listening on (http://127\.0\.0\.1:(\d+))\n", first)
        assert match and match[2] != "0", first
        yield match[1], env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        process.stdout.close()


def test_keys_made_by_the_cli_work_on_the_running_server(serve):
    url, env = serve
    workspace = nimbus("workspace", "create", "--name", "team-b", env=env).stdout.strip()
    key = nimbus("key", "create", "--workspace", workspace, env=env).stdout.strip()
    assert key

    with httpx2.Client(base_url=url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/tasks/").status_code == 401
        assert client.get("/tasks/", headers={"X-API-Key": key + "x"}).status_code == 401

        mine = client.get("/tasks/", headers={"X-API-Key": key})
        assert (mine.status_code, mine.json()) == (200, {"tasks": [], "next_cursor": None})
        scoped = client.get(
            "/tasks/", params={"workspace_id": workspace}, headers={"X-API-Key": key}
        )
        assert scoped.status_code == 200
        foreign = client.get(
            "/tasks/", params={"workspace_id": "ws-default"}, headers={"X-API-Key": key}
        )
        assert foreign.status_code == 404

        bootstrap = client.get(
            "/tasks/", params={"workspace_id": "ws-default"}, headers={"X-API-Key": BOOTSTRAP_KEY}
        )
        assert (bootstrap.status_code, bootstrap.json()["tasks"]) == (200, [])
        other = client.get(
            "/tasks/", params={"workspace_id": workspace}, headers={"X-API-Key": BOOTSTRAP_KEY}
        )
        assert other.status_code == 404
