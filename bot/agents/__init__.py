"""Agents: the configured ones by name, and the default."""

from __future__ import annotations

from bot.agents.base import Agent
from bot.agents.command import CommandAgent
from bot.agents.config import AgentConfig
from bot.agents.model import ModelAgent
from bot.runner import Runner
from bot.settings import Settings


class Agents:
    """The agents of the server's configuration."""

    def __init__(self, config: AgentConfig, settings: Settings, runner: Runner) -> None:
        self.config = config
        self._agents: dict[str, Agent] = {}
        for name, spec in config.agents.items():
            if spec.kind == "command":
                self._agents[name] = CommandAgent(spec, runner, settings.agent_timeout)
            else:
                self._agents[name] = ModelAgent(spec, settings, runner)

    @property
    def names(self) -> list[str]:
        return sorted(self._agents)

    def has(self, name: str | None) -> bool:
        return name is None or name in self._agents

    def get(self, name: str | None) -> Agent:
        return self._agents[name or self.config.default_agent]
