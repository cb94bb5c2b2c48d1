"""Shared fixtures: real git repositories, agent configurations, and the real server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from app import create_app
from bot.cli import _listen
from bot.settings import Settings

API_KEY = "test-bootstrap-key-0123456789"

# Repository commands find the test toolchain (pytest, the scripted agents' Python) on PATH: the
# sandbox keeps what PATH names reachable, wherever it lives.
_TOOLCHAIN = str(Path(sys.executable).parent)
if _TOOLCHAIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([_TOOLCHAIN, os.environ.get("PATH", "")])
AGENT_SCRIPT = Path(__file__).parent / "agents" / "scripted_agent.py"
TEST_COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider"
# For tests that need a repository but not its tests: a test command that passes at once.
FAST_CONFIG = "test_command: 'true'\n"
# The test clients' own loggers: records a test leaves out when it checks what the server logged.
CLIENT_LOGGERS = ("httpx2", "httpcore2", "websockets.client")

# name -> environment of the scripted agent (tests/agents/scripted_agent.py)
AGENTS: dict[str, dict[str, str]] = {
    "good": {"AGENT_MODE": "good"},
    "fixer": {"AGENT_MODE": "fix-loop"},
    "never": {"AGENT_MODE": "never-fixed"},
    "blocking": {"AGENT_MODE": "blocking-review"},
    "garbage": {"AGENT_MODE": "garbage"},
    "markdown": {"AGENT_MODE": "markdown"},
    "nothing": {"AGENT_MODE": "nothing"},
    "protected": {"AGENT_MODE": "protected"},
    "fails": {"AGENT_MODE": "good", "AGENT_FAIL_IN": "implement"},
    "hangs": {"AGENT_MODE": "good", "AGENT_SLEEP_IN": "implement"},
    "slow": {"AGENT_MODE": "good", "AGENT_SLEEP_IN": "implement", "AGENT_SLEEP": "1"},
    "sleeper": {"AGENT_MODE": "good", "AGENT_SLEEP_IN": "implement"},
    "reviewer": {"AGENT_MODE": "per-file-review"},
}


def git(*args: str, cwd: Path) -> str:
    """Run git for a test's own set-up (not through Nimbus)."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def new_repository(work: Path, files: dict[str, str]) -> None:
    """A git repository at `work` whose one commit holds `files`, on branch main."""
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    commit_all(work)


def commit_all(work: Path) -> None:
    """Make `work` a git repository whose one commit, on main, holds what is in it."""
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial", cwd=work)


def bare_clone(work: Path) -> Path:
    """A bare clone of `work` beside it (`remote.git`), standing in for the remote."""
    bare = work.parent / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=work.parent)
    return bare


def make_repo(
    root: Path,
    *,
    files: dict[str, str] | None = None,
    config: str | None = f"test_command: {TEST_COMMAND}\n",
) -> Path:
    """A small Python project with passing tests, pushed to a bare repository; returns the bare."""
    work = root / "work"
    work.mkdir(parents=True)
    contents = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/__init__.py": "",
        "tests/test_calc.py": (
            "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
        ),
        "conftest.py": "",
        **({".github/nimbus.yml": config} if config is not None else {}),
        **(files or {}),
    }
    new_repository(work, contents)
    return bare_clone(work)


# What the tests tell the scripted agent through the environment.
PASSED_TO_AGENTS = ["AGENT_TRACE", "AGENT_FAIL_ON_PATH", "AGENT_FAR_COMMENT", "AGENT_SAY_FILE"]


def write_agents(path: Path, default: str = "good", timeout: float = 60) -> Path:
    """The scripted agents; inside the sandbox they may write their traces beside the file."""
    lines = [f'default_agent = "{default}"']
    for name, env in AGENTS.items():
        agent_timeout = 2 if name == "hangs" else timeout
        pairs = ", ".join(f'{k} = "{v}"' for k, v in env.items())
        lines += [
            f"[agents.{name}]",
            'kind = "command"',
            f'command = ["{sys.executable}", "{AGENT_SCRIPT}"]',
            f"timeout = {agent_timeout}",
            f"env = {{ {pairs} }}",
            f"pass_env = {json.dumps(PASSED_TO_AGENTS)}",
            f"writable_paths = {json.dumps([str(path.parent)])}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """A bare git repository holding a small project whose tests pass."""
    return make_repo(tmp_path / "repo")


def make_settings(root: Path, **overrides: object) -> Settings:
    """A test server's settings, its data and agents under `root`."""
    return Settings(
        data_dir=root / "data",
        api_key=API_KEY,
        config_path=write_agents(root / "agents.toml"),
        poll_seconds=0.1,
        lease_seconds=30,
        git_timeout=30,
        test_timeout=60,
        setup_timeout=60,
        worker_id="test-worker",
    ).with_overrides(**overrides)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@dataclass
class Server:
    """The real app under uvicorn on a loopback port, with a client that sends the API key."""

    url: str
    client: httpx2.AsyncClient
    settings: Settings
    app: Any

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    async def register(self, url: Path | str) -> str:
        response = await self.client.post(
            "/repos/", json={"workspace_id": "ws-default", "url": str(url)}
        )
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    async def create_task(self, repo_id: str, description: str = "Add multiply", **fields: Any):
        body = {"workspace_id": "ws-default", "repo_id": repo_id, "description": description}
        response = await self.client.post("/tasks/", json={**body, **fields})
        assert response.status_code == 201, response.text
        return response.json()

    async def task(self, task_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/tasks/{task_id}/")
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_for(
        self,
        task_id: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 60,
    ) -> dict[str, Any]:
        """Poll the task until `done(task)` holds; fail with the task's last state otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            task = await self.task(task_id)
            if done(task):
                return task
            if time.monotonic() > deadline:
                pytest.fail(f"task did not get there in {timeout}s: {task}")
            await asyncio.sleep(0.05)

    async def until_gate(self, task_id: str, gate: str) -> dict[str, Any]:
        task = await self.wait_for(
            task_id, lambda t: t["approval"] == gate or t["phase"] in ("DONE", "FAILED")
        )
        assert task["approval"] == gate, task
        return task

    async def until_ended(self, task_id: str) -> dict[str, Any]:
        return await self.wait_for(task_id, lambda t: t["phase"] in ("DONE", "FAILED"))

    async def events(self, task_id: str) -> list[dict[str, Any]]:
        store = self.app.state.services.store
        return [e.to_json() for e in await store.events_after(task_id, 0, limit=10_000)]


@asynccontextmanager
async def servers() -> AsyncIterator[Callable[[Settings], Awaitable[Server]]]:
    """Start real servers on loopback ports with given settings; all stop when the block ends."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], httpx2.AsyncClient]] = []

    async def start(settings: Settings) -> Server:
        app = create_app(settings)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, ws="websockets-sansio", lifespan="on"
        )
        server = uvicorn.Server(config)
        sock = _listen("127.0.0.1", 0)
        port = sock.getsockname()[1]
        job = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not server.started:
            if job.done():
                job.result()
            assert time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}"
        client = httpx2.AsyncClient(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30)
        running.append((server, job, client))
        return Server(url=url, client=client, settings=settings, app=app)

    try:
        yield start
    finally:
        for server, job, client in running:
            await client.aclose()
            server.should_exit = True
            await asyncio.wait_for(job, 30)


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[[Settings], Awaitable[Server]]]:
    """Start servers with given settings; all are shut down at the end of the test."""
    async with servers() as start:
        yield start


@pytest.fixture
async def server(start_server: Callable[..., Any], settings: Settings) -> Server:
    return await start_server(settings)
