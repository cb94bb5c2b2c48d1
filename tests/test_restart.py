"""Restart recovery: the real server process killed (-9 included) in a phase and at a gate."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
import websockets

from tests.conftest import AGENT_SCRIPT, API_KEY

ONCE_AGENT = """
default_agent = "once"
[agents.once]
kind = "command"
command = ["{python}", "{script}"]
env = {{ AGENT_MODE = "good", AGENT_SLEEP_IN = "implement", AGENT_SLEEP_ONCE = "{marker}" }}
writable_paths = ["{marker_dir}"]
"""


class ServerProcess:
    """`nimbus serve --port 0` as a child process in its own process group."""

    def __init__(self, root: Path, worker_id: str, lease_seconds: float = 30) -> None:
        self.root = root
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(root),
            "NIMBUS_DATA_DIR": str(root / "data"),
            "NIMBUS_API_KEY": API_KEY,
            "NIMBUS_CONFIG": str(root / "agents.toml"),
            "NIMBUS_POLL_SECONDS": "0.1",
            "NIMBUS_WORKER_ID": worker_id,
            "NIMBUS_LEASE_SECONDS": str(lease_seconds),
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.client: httpx2.AsyncClient | None = None
        self.url = ""

    async def start(self) -> httpx2.AsyncClient:
        """Start the server; the client it returns is closed with the process."""
        log = open(self.root / "server.log", "ab")  # noqa: ASYNC230 - handed to the child
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "serve",
            "--port",
            "0",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        assert line.startswith(b"Nimbus listening on "), line
        self.url = line.decode().split()[-1]
        client = httpx2.AsyncClient(base_url=self.url, headers={"X-API-Key": API_KEY}, timeout=10)
        self.client = client
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx2.TransportError):
                if (await client.get("/healthz")).status_code == 200:
                    return client
            assert time.monotonic() < deadline, "server did not come up"
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.client is not None:
            await self.client.aclose()
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        await asyncio.wait_for(self.proc.wait(), 30)


@pytest.fixture
async def processes(tmp_path) -> AsyncIterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for process in started:
        await process.stop()
    # No agent outlives the server that started it, even a killed one (the sandbox's
    # die-with-parent). The pid the agent wrote is its own PID namespace's: never signal it.
    marker = f"AGENT_SLEEP_ONCE={tmp_path / 'once'}".encode()
    for _ in range(50):
        left = agents_with(marker)
        if not left:
            break
        await asyncio.sleep(0.1)
    assert not left, f"agents left running: {left}"


def agents_with(marker: bytes) -> list[int]:
    """Host pids of the processes whose environment holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


@pytest.fixture
def root(tmp_path, remote) -> Path:
    (tmp_path / "agents.toml").write_text(
        ONCE_AGENT.format(
            python=sys.executable,
            script=AGENT_SCRIPT,
            marker=tmp_path / "once",
            marker_dir=tmp_path,
        )
    )
    return tmp_path


async def start(processes: list, root: Path, worker_id: str = "w1", **kw) -> httpx2.AsyncClient:
    process = ServerProcess(root, worker_id, **kw)
    processes.append(process)
    return await process.start()


async def agent_sleeping(root: Path, timeout: float = 60) -> None:
    """Until the agent has written its pid to the marker and gone to sleep in IMPLEMENTING."""
    marker = root / "once"
    for _ in range(int(timeout / 0.05)):
        if marker.exists() and marker.read_text():
            return
        await asyncio.sleep(0.05)
    pytest.fail("the agent never reached IMPLEMENTING")


async def wait_for(client: httpx2.AsyncClient, task_id: str, done, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        task = (await client.get(f"/tasks/{task_id}")).json()
        if done(task):
            return task
        assert time.monotonic() < deadline, task
        await asyncio.sleep(0.05)


async def create(client: httpx2.AsyncClient, remote: Path, **fields) -> dict:
    repo = await client.post("/repos/", json={"workspace_id": "ws-default", "url": str(remote)})
    body = {"workspace_id": "ws-default", "repo_id": repo.json()["id"], "description": "Multiply"}
    response = await client.post("/tasks/", json={**body, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_task_killed_mid_phase_resumes_that_phase_after_restart(processes, root, remote):
    client = await start(processes, root)
    task = await create(client, remote, auto_approve=True)
    await wait_for(client, task["id"], lambda t: t["phase"] == "IMPLEMENTING")
    await agent_sleeping(root)
    await processes[-1].stop(signal.SIGKILL)

    # The same worker id takes its own task back at once, not after the 30 s lease.
    client = await start(processes, root)
    task = await wait_for(client, task["id"], lambda t: t["phase"] in ("DONE", "FAILED"), 15)
    assert task["status"] == "completed", task
    events = await _events(processes[-1].url, task["id"])
    phases = [e["phase"] for e in events if e["event_type"] == "phase"]
    assert phases == [
        "QUEUED",
        "CLONING",
        "INDEXING",
        "PLANNING",
        "IMPLEMENTING",
        "VERIFYING",
        "REVIEWING",
        "CLEANUP",
        "DONE",
    ]


async def test_a_task_at_a_gate_keeps_waiting_across_a_kill(processes, root, remote):
    client = await start(processes, root)
    task = await create(client, remote)
    await wait_for(client, task["id"], lambda t: t["approval"] == "plan")
    await processes[-1].stop(signal.SIGKILL)

    client = await start(processes, root)
    waiting = (await client.get(f"/tasks/{task['id']}")).json()
    assert (waiting["status"], waiting["approval"]) == ("awaiting_approval", "plan")
    await asyncio.sleep(0.5)
    assert (await client.get(f"/tasks/{task['id']}")).json()["phase"] == "AWAITING_APPROVAL"
    (root / "once").write_text("")  # let the agent through without sleeping
    assert (await client.post(f"/tasks/{task['id']}/approve")).status_code == 200
    await wait_for(client, task["id"], lambda t: t["approval"] == "diff")
    await client.post(f"/tasks/{task['id']}/approve-diff")
    done = await wait_for(client, task["id"], lambda t: t["phase"] in ("DONE", "FAILED"))
    assert done["status"] == "completed"


async def test_another_process_takes_over_once_the_lease_expires(processes, root, remote):
    client = await start(processes, root, "w1", lease_seconds=2)
    task = await create(client, remote, auto_approve=True)
    await agent_sleeping(root)
    await processes[-1].stop(signal.SIGKILL)

    client = await start(processes, root, "w2", lease_seconds=2)
    task = await wait_for(client, task["id"], lambda t: t["phase"] in ("DONE", "FAILED"))
    assert task["status"] == "completed"


async def test_a_graceful_stop_hands_running_tasks_back_at_once(processes, root, remote):
    client = await start(processes, root, "w1", lease_seconds=600)
    task = await create(client, remote, auto_approve=True)
    await agent_sleeping(root)
    await processes[-1].stop(signal.SIGTERM)

    # A different worker id: only a released lease lets it start before 600 s.
    client = await start(processes, root, "w2", lease_seconds=600)
    task = await wait_for(client, task["id"], lambda t: t["phase"] in ("DONE", "FAILED"), 30)
    assert task["status"] == "completed"


async def _events(url: str, task_id: str) -> list[dict]:
    ws_url = url.replace("http://", "ws://") + f"/tasks/{task_id}/ws"
    async with websockets.connect(ws_url, additional_headers={"X-API-Key": API_KEY}) as ws:
        return [json.loads(message) async for message in ws]
