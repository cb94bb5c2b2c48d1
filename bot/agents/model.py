"""The built-in model agent (`kind = "model"`): until its client lands, it says how to proceed."""

from __future__ import annotations

from bot.agents.base import AgentOutput, AgentRequest
from bot.errors import AgentError
from bot.settings import Settings

_MODEL_VARIABLES = (
    "NIMBUS_MODEL_PROVIDER",
    "NIMBUS_MODEL",
    "NIMBUS_MODEL_BASE_URL",
    "NIMBUS_MODEL_API_KEY",
)
_COMMAND_HINT = (
    "configure a command agent in the TOML file named by NIMBUS_CONFIG, for example "
    '[agents.aider] kind = "command" command = ["aider", "--yes-always", "--message", "{prompt}"]'
    ' with default_agent = "aider", or pick one per task with agent_name'
)


class ModelAgent:
    """Nimbus's own agent; this release has no model client yet, so it fails at PLANNING."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings

    async def run(self, request: AgentRequest) -> AgentOutput:
        missing = [
            var
            for var, value in zip(
                _MODEL_VARIABLES,
                (
                    self.settings.model_provider,
                    self.settings.model,
                    self.settings.model_base_url,
                    self.settings.model_api_key,
                ),
                strict=True,
            )
            if not value
        ]
        if missing:
            raise AgentError(
                f"agent '{self.name}' needs a model: set {', '.join(missing)}; or {_COMMAND_HINT}"
            )
        raise AgentError(
            f"agent '{self.name}': the built-in model agent is not part of this Nimbus release"
            f" yet; {_COMMAND_HINT}"
        )
