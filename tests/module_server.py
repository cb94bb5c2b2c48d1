"""The real server on a loopback port for a whole test module, as conftest's `start_server` runs it.

For modules whose many small tests only need one server: starting one per test would cost them
most of their time. Tests using it run on the module's event loop
(`pytestmark = pytest.mark.asyncio(loop_scope="module")`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import uvicorn

from app import create_app
from bot.cli import _listen
from bot.settings import Settings
from tests.conftest import API_KEY, Server, write_agents


def module_settings(root: Path, **overrides: object) -> Settings:
    """The settings conftest's `settings` fixture gives, under `root`."""
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


@asynccontextmanager
async def servers() -> AsyncIterator[Callable[[Settings], Awaitable[Server]]]:
    """Start servers with given settings; all are shut down when the block ends."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], httpx2.AsyncClient]] = []

    async def start(settings: Settings) -> Server:
        app = create_app(settings)
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, ws="websockets-sansio", lifespan="on"
        )
        server = uvicorn.Server(config)
        sock = _listen("127.0.0.1", 0)
        job = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not server.started:
            if job.done():
                job.result()
            assert time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
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
