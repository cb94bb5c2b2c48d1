"""The ASGI app: `create_app(settings)` wires settings to the store, forge, agents and worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from bot.agents import Agents
from bot.agents.config import load_agent_config
from bot.api import EXCEPTION_HANDLERS, RequestLog, routes
from bot.api.auth import DEFAULT_WORKSPACE
from bot.errors import ConfigError
from bot.events import TaskEvents
from bot.forge import Forges
from bot.forge.git_remote import GitRemoteForge
from bot.forge.github import GitHubForge
from bot.git import Git
from bot.github.client import GitHubApp
from bot.github.deliveries import DeliveryWorker
from bot.index.build import close_pool
from bot.redact import Redactor, redact_logs
from bot.runner import Runner
from bot.sandbox import Limits, Sandbox
from bot.settings import Settings
from bot.skills import Skills
from bot.store.sqlite import SqliteStore
from phases.context import Services
from phases.worker import Worker


def build_services(settings: Settings) -> Services:
    """Every service, built from settings; nothing is opened or started yet."""
    agent_config = load_agent_config(settings.config_path)
    # Model keys named by agents (api_key_env) are secrets as much as Nimbus's own.
    agent_keys = [
        os.environ[spec.api_key_env]
        for spec in agent_config.agents.values()
        if spec.api_key_env and os.environ.get(spec.api_key_env)
    ]
    secrets = (*settings.secrets, *agent_keys)
    redactor = Redactor(secrets)
    redact_logs(redactor)
    runner = Runner(secrets=secrets, sandbox=_sandbox(settings))
    store = SqliteStore(settings.db_path)
    git = Git(
        runner,
        redactor,
        home=settings.data_dir / "git-home",
        timeout=settings.git_timeout,
        author=settings.git_author,
        server_home=os.environ.get("HOME"),
    )
    github = _github_app(settings)
    return Services(
        settings=settings,
        store=store,
        events=TaskEvents(store, redactor),
        runner=runner,
        git=git,
        forges=Forges(GitRemoteForge(git), GitHubForge(github, git, store) if github else None),
        github=github,
        agents=Agents(agent_config, settings, runner),
        skills=Skills(settings.server_skills_dir),
    )


def create_app(settings: Settings | None = None, *, run_worker: bool = True) -> Starlette:
    """The Nimbus ASGI app; `settings` default to the environment's."""
    settings = settings or Settings.from_env()
    services = build_services(settings)
    worker = Worker(services)
    deliveries = DeliveryWorker(services, services.github)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await services.runner.check_sandbox()
        if settings.sandbox == "bwrap" and not services.runner.isolated:
            raise ConfigError(
                "NIMBUS_SANDBOX=bwrap, but commands cannot be isolated:"
                f" {services.runner.isolation}"
            )
        await services.store.open()
        await services.store.ensure_workspace(DEFAULT_WORKSPACE, "default")
        if run_worker:
            await worker.start()
            await deliveries.start()
        try:
            yield
        finally:
            if run_worker:
                await deliveries.stop()
                await worker.stop()
            if services.github is not None:
                await services.github.http.aclose()
            await asyncio.to_thread(close_pool)
            await services.store.close()
            if services.runner.sandbox is not None:
                services.runner.sandbox.close()

    app = Starlette(
        routes=routes(),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(RequestLog)],
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.worker = worker
    app.state.deliveries = deliveries
    return app


def _sandbox(settings: Settings) -> Sandbox:
    """The sandbox of repository commands: everything of Nimbus's own is hidden from them."""
    database = settings.db_path
    hidden = [
        settings.data_dir,
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
        *(p for p in (settings.github_private_key_path, settings.config_path) if p),
        *_app_files_beside(settings.github_private_key_path),
    ]
    limits = Limits(
        memory_mb=settings.sandbox_memory_mb,
        file_mb=settings.sandbox_file_mb,
        processes=settings.sandbox_processes,
    )
    home = os.environ.get("HOME")
    return Sandbox(settings.sandbox, hidden, limits, server_home=Path(home) if home else None)


def _app_files_beside(key: Path | None) -> list[Path]:
    """The App's other files where its key lies (`nimbus github register` writes them there)."""
    if key is None or not key.parent.is_dir():
        return []
    return [
        p
        for p in key.parent.iterdir()
        if p.suffix in (".pem", ".env", ".key") or p.name.startswith("nimbus-github")
    ]


def _github_app(settings: Settings) -> GitHubApp | None:
    """The App's client, when the server has the App's credentials."""
    if not (settings.github_app_id and settings.github_private_key):
        return None
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, connect=10.0))
    return GitHubApp(
        settings.github_app_id, settings.github_private_key, settings.github_api_url, http
    )


class _EnvApp:
    """`app.app`: built from the environment on first use, so importing this module does nothing."""

    def __init__(self) -> None:
        self._app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = create_app()
        await self._app(scope, receive, send)


app = _EnvApp()
