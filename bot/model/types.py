"""Provider-neutral messages, tool calls and replies; each provider module translates them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for; `arguments` is None when its JSON could not be read."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""
    problem: str | None = None


@dataclass(frozen=True)
class Message:
    """One turn of the conversation (the system prompt travels separately)."""

    role: Literal["user", "assistant", "tool"]
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class ModelReply:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
