"""What a phase works with: the services, the task, and how it reports back."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from bot.agents import Agents
from bot.agents.base import AgentRequest, UsageMeter
from bot.errors import PhaseError
from bot.events import TaskEvents
from bot.forge import Forge, Forges
from bot.git import Git
from bot.models import NewEvent, Repo, Task
from bot.repo_config import RepoConfig, parse_repo_config
from bot.runner import Runner
from bot.settings import Settings
from bot.skills import Skills
from bot.store import Store
from phases.machine import Trigger


@dataclass(frozen=True)
class Services:
    """The services below the phase machine (DESIGN §1, layer 4)."""

    settings: Settings
    store: Store
    events: TaskEvents
    runner: Runner
    git: Git
    forges: Forges
    agents: Agents
    skills: Skills
    # The GitHub App's client (bot.github.client.GitHubApp) when the App is configured.
    github: Any = None


@dataclass(frozen=True)
class Step:
    """A finished phase: the trigger it fires, the task changes and events to persist with it."""

    trigger: Trigger
    changes: dict[str, Any] = field(default_factory=dict)
    events: list[NewEvent] = field(default_factory=list)


class LeaseLost(Exception):
    """Another worker holds the task now; this one must stop without writing."""


@dataclass(frozen=True)
class PhaseRun:
    """One run of one phase for one task."""

    task: Task
    repo: Repo
    services: Services
    worker: str

    @property
    def task_dir(self) -> Path:
        return self.services.settings.tasks_dir / self.task.id

    @property
    def workdir(self) -> Path:
        return self.task_dir / "repo"

    @property
    def home(self) -> Path:
        return self.task_dir / "home"

    @property
    def git(self) -> Git:
        return self.services.git

    @property
    def forge(self) -> Forge:
        return self.services.forges.for_repo(self.repo)

    @cached_property
    def config(self) -> RepoConfig:
        """The repository's configuration as INDEXING read it."""
        config, _ = parse_repo_config(self.task.state.get("config_text"))
        return config

    def require_clone(self) -> Path:
        if not (self.workdir / ".git").is_dir():
            raise PhaseError(
                f"the task's clone is missing from {self.workdir}; retry the task to start over"
            )
        return self.workdir

    async def remove_task_dir(self) -> None:
        # In a thread: a large clone takes long enough to delete to stall the event loop.
        await asyncio.to_thread(shutil.rmtree, self.task_dir, ignore_errors=True)

    async def save_state(self, state: dict[str, Any]) -> None:
        """Record progress inside a phase, so that a rerun can skip what is done."""
        saved = await self.services.events.change(
            self.task.id,
            expect={"lease_owner": self.worker, "phase": self.task.phase},
            changes={"state": state},
        )
        if saved is None:
            raise LeaseLost(self.task.id)

    async def log(self, message: str) -> None:
        await self.services.events.log(self.task.id, message)

    def event(self, event_type: str, **fields: Any) -> NewEvent:
        return self.services.events.event(event_type, **fields)

    @cached_property
    def meter(self) -> UsageMeter:
        """Tokens spent by the task so far, counted on by this phase's agent."""
        return UsageMeter(
            input_tokens=self.task.usage.get("input_tokens", 0),
            output_tokens=self.task.usage.get("output_tokens", 0),
            budget=self.services.settings.max_tokens_per_task,
        )

    def agent_request(self, phase: str, **extra: Any) -> AgentRequest:
        return AgentRequest(
            phase=phase,
            task_id=self.task.id,
            description=self.task.description,
            workdir=self.workdir,
            task_dir=self.task_dir,
            context=self.task.state.get("context", ""),
            skill=self.task.state.get("skill"),
            plan=self.task.plan,
            protected_paths=self.config.protected_paths,
            test_command=self.task.state.get("test_command"),
            meter=self.meter,
            log=self.log,
            **extra,
        )
