"""The OpenAI chat-completions wire format (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM)."""

from __future__ import annotations

import json
from typing import Any

from bot.model.types import Message, ModelReply, ToolCall, ToolSpec, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"


def endpoint(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def headers(api_key: str | None) -> dict[str, str]:
    # https://platform.openai.com/docs/api-reference/authentication
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments
                    if call.arguments is None
                    else json.dumps(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    return out


def request_body(
    model: str, system: str, messages: list[Message], tools: list[ToolSpec], max_tokens: int
) -> dict[str, Any]:
    """A chat-completions request: https://platform.openai.com/docs/api-reference/chat/create"""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": system}, *map(_message, messages)],
        "max_tokens": max_tokens,
    }
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                },
            }
            for t in tools
        ]
    return body


def _tool_call(raw: dict[str, Any]) -> ToolCall:
    function = raw.get("function") or {}
    arguments = function.get("arguments")
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    parsed: dict[str, Any] | None = None
    problem = None
    try:
        value = json.loads(text) if text.strip() else {}
        if isinstance(value, dict):
            parsed = value
        else:
            problem = "the arguments must be a JSON object"
    except ValueError as exc:
        problem = f"the arguments are not valid JSON ({exc})"
    return ToolCall(
        id=str(raw.get("id") or ""),
        name=str(function.get("name") or ""),
        arguments=parsed,
        raw_arguments=text,
        problem=problem,
    )


def parse_reply(data: dict[str, Any]) -> ModelReply:
    """The assistant's message of the first choice, and the usage."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    usage = data.get("usage") or {}
    return ModelReply(
        text=message.get("content") or "",
        tool_calls=tuple(_tool_call(c) for c in message.get("tool_calls") or []),
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
        stop_reason=str(choice.get("finish_reason") or ""),
    )


def error_message(data: Any) -> str:
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return str(data["error"].get("message") or data["error"])
    return str(data)[:500]
