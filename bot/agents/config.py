"""The server's agent configuration: the TOML file named by `NIMBUS_CONFIG` (DESIGN §4)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.errors import ConfigError

BUILTIN = "builtin"


@dataclass(frozen=True)
class AgentSpec:
    name: str
    kind: str
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    pass_env: tuple[str, ...] = ()
    writable_paths: tuple[str, ...] = ()
    # Command agents reach their model over the network unless the configuration says not to.
    network: bool = True
    timeout: float | None = None
    # kind = "model": each falls back to the NIMBUS_MODEL_* settings.
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_steps: int | None = None


@dataclass(frozen=True)
class AgentConfig:
    default_agent: str
    agents: dict[str, AgentSpec]


DEFAULT_CONFIG = AgentConfig(BUILTIN, {BUILTIN: AgentSpec(BUILTIN, "model")})


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _spec(name: str, table: Any, source: str) -> AgentSpec:
    where = f"{source}: [agents.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    kind = table.get("kind")
    if kind not in ("model", "command"):
        raise ConfigError(f'{where}: kind must be "model" or "command", got {kind!r}')
    command: tuple[str, ...] = ()
    if kind == "command":
        command = _strings(f"{where} command", table.get("command"))
        if not command:
            raise ConfigError(f"{where}: command must name a program to run")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
        raise ConfigError(f"{where} env must be a table of strings")
    timeout = table.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ConfigError(f"{where} timeout must be a positive number of seconds")
    model_fields: dict[str, Any] = {}
    for key in ("provider", "model", "base_url", "api_key_env"):
        value = table.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where} {key} must be a string")
        model_fields[key] = value
    if model_fields["provider"] not in (None, "openai", "anthropic"):
        raise ConfigError(f'{where} provider must be "openai" or "anthropic"')
    network = table.get("network", True)
    if not isinstance(network, bool):
        raise ConfigError(f"{where} network must be true or false")
    max_steps = table.get("max_steps")
    if max_steps is not None and (
        isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1
    ):
        raise ConfigError(f"{where} max_steps must be a positive whole number")
    return AgentSpec(
        name=name,
        kind=kind,
        max_steps=max_steps,
        **model_fields,
        command=command,
        env=dict(env),
        pass_env=_strings(f"{where} pass_env", table.get("pass_env", [])),
        writable_paths=_strings(f"{where} writable_paths", table.get("writable_paths", [])),
        network=network,
        timeout=float(timeout) if timeout is not None else None,
    )


def parse_agent_config(text: str, source: str) -> AgentConfig:
    """Parse the TOML text; errors name the file and the key at fault."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    tables = data.get("agents", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{source}: [agents] must be a table of agents")
    agents = {name: _spec(name, table, source) for name, table in tables.items()}
    agents.setdefault(BUILTIN, AgentSpec(BUILTIN, "model"))
    default = data.get("default_agent", BUILTIN)
    if default not in agents:
        raise ConfigError(
            f"{source}: default_agent {default!r} is not one of the agents: {', '.join(agents)}"
        )
    return AgentConfig(default, agents)


def load_agent_config(path: Path | None) -> AgentConfig:
    if path is None:
        return DEFAULT_CONFIG
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"NIMBUS_CONFIG names {path}, which cannot be read: {exc}") from None
    return parse_agent_config(text, str(path))
