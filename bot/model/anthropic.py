"""Anthropic's Messages API wire format."""

from __future__ import annotations

import json
from typing import Any

from bot.model.types import Message, ModelReply, ToolCall, ToolSpec, Usage

DEFAULT_BASE_URL = "https://api.anthropic.com"
# https://docs.anthropic.com/en/api/versioning
API_VERSION = "2023-06-01"


def endpoint(base_url: str) -> str:
    return base_url.rstrip("/") + "/v1/messages"


def headers(api_key: str | None) -> dict[str, str]:
    out = {"anthropic-version": API_VERSION}
    if api_key:
        out["x-api-key"] = api_key
    return out


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        arguments = call.arguments if call.arguments is not None else {"_raw": call.raw_arguments}
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
    return blocks


def request_body(
    model: str, system: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int
) -> dict[str, Any]:
    """A Messages request: https://docs.anthropic.com/en/api/messages

    Roles must alternate starting with the user, and tool results travel in user turns: neutral
    messages of the same Anthropic role are merged into one turn.
    """
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message) or [{"type": "text", "text": "(empty)"}]
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "system": system,
        "messages": turns,
    }
    if tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": t.parameters}
            for t in tools
        ]
    return body


def parse_reply(data: dict[str, Any]) -> ModelReply:
    texts, calls = [], []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            texts.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            arguments = block.get("input")
            calls.append(
                ToolCall(
                    id=str(block.get("id") or ""),
                    name=str(block.get("name") or ""),
                    arguments=arguments if isinstance(arguments, dict) else None,
                    raw_arguments=json.dumps(arguments),
                    problem=None if isinstance(arguments, dict) else "input must be an object",
                )
            )
    usage = data.get("usage") or {}
    return ModelReply(
        text="\n".join(texts),
        tool_calls=tuple(calls),
        usage=Usage(int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)),
        stop_reason=str(data.get("stop_reason") or ""),
    )


def error_message(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or data["error"])
    return str(data)[:500]
