"""The fake model servers speak each provider's wire format and catch malformed requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.fakes.models import (
    Drop,
    Fail,
    FakeAnthropic,
    FakeOpenAI,
    Hang,
    Reply,
    ToolCall,
    running,
)

READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file of the repository.",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
}
READ_FILE_ANTHROPIC = {
    "name": "read_file",
    "description": "Read a file of the repository.",
    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
}


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with running(FakeOpenAI()) as fake:
        yield fake


@pytest.fixture
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with running(FakeAnthropic()) as fake:
        yield fake


async def chat(
    fake: FakeOpenAI, body: dict[str, Any], *, key: str | None = None, timeout: float = 5
) -> httpx2.Response:
    """POST a chat completion the way an OpenAI client does."""
    headers = {"Authorization": f"Bearer {key or fake.api_key}"}
    async with httpx2.AsyncClient(timeout=timeout) as client:
        return await client.post(f"{fake.url}/chat/completions", json=body, headers=headers)


async def message(
    fake: FakeAnthropic,
    body: dict[str, Any],
    *,
    key: str | None = None,
    version: str | None = "2023-06-01",
    timeout: float = 5,
) -> httpx2.Response:
    """POST to the Messages API the way an Anthropic client does."""
    headers = {"x-api-key": key or fake.api_key or ""}
    if version is not None:
        headers["anthropic-version"] = version
    async with httpx2.AsyncClient(timeout=timeout) as client:
        return await client.post(f"{fake.url}/v1/messages", json=body, headers=headers)


def ask(text: str = "Add multiply", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": text}], **fields}


def ask_claude(text: str = "Add multiply", **fields: Any) -> dict[str, Any]:
    body = {"model": "claude-test", "max_tokens": 1024, **fields}
    return {"messages": [{"role": "user", "content": text}], **body}


async def test_openai_text_reply_has_the_real_shape(openai: FakeOpenAI) -> None:
    openai.script(Reply("Here is the plan.", input_tokens=11, output_tokens=5))
    assert openai.url.endswith("/v1")
    body = ask(
        max_tokens=100,
        temperature=0.2,
        messages=[
            {"role": "system", "content": "You are Nimbus."},
            {"role": "user", "content": [{"type": "text", "text": "Add multiply"}]},
        ],
    )

    response = await chat(openai, body)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["id"].startswith("chatcmpl-")
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "gpt-test"
    [choice] = data["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "Here is the plan."
    assert "tool_calls" not in choice["message"]
    assert data["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    assert openai.requests == [body]
    assert openai.headers[0]["authorization"] == "Bearer sk-test-fake"
    assert openai.problems == []


async def test_openai_tool_call_round_trip_is_accepted(openai: FakeOpenAI) -> None:
    openai.script(Reply(tool_calls=[ToolCall("read_file", {"path": "calc.py"})]), Reply("Done."))

    first = await chat(openai, ask(tools=[READ_FILE], tool_choice="auto"))

    assert first.status_code == 200, first.text
    [choice] = first.json()["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call["id"].startswith("call_")
    assert call["type"] == "function"
    assert call["function"]["name"] == "read_file"
    assert json.loads(call["function"]["arguments"]) == {"path": "calc.py"}

    history = [
        {"role": "user", "content": "Add multiply"},
        choice["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "def add(a, b): ..."},
    ]
    second = await chat(openai, ask(messages=history, tools=[READ_FILE]))

    assert second.status_code == 200, second.text
    assert second.json()["choices"][0]["message"]["content"] == "Done."
    assert openai.requests[1]["messages"][-1]["role"] == "tool"
    assert openai.problems == []


async def test_openai_malformed_arguments_are_sent_verbatim(openai: FakeOpenAI) -> None:
    openai.script(Reply(tool_calls=[ToolCall("read_file", '{"path": "calc.py"', id="call_1")]))

    response = await chat(openai, ask(tools=[READ_FILE]))

    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "read_file", "arguments": '{"path": "calc.py"'},
    }


async def test_openai_reply_can_depend_on_the_request(openai: FakeOpenAI) -> None:
    openai.script(lambda request: Reply(f"you said: {request['messages'][-1]['content']}"))

    response = await chat(openai, ask("hello"))

    assert response.json()["choices"][0]["message"]["content"] == "you said: hello"


@pytest.mark.parametrize(
    ("fail", "kind", "code"),
    [
        (Fail(429, retry_after=0.5), "tokens", "rate_limit_exceeded"),
        (Fail(500), "server_error", None),
        (Fail(503), "server_error", None),
        (Fail(429, kind="insufficient_quota"), "insufficient_quota", "insufficient_quota"),
    ],
)
async def test_openai_failures_use_the_real_error_body(
    openai: FakeOpenAI, fail: Fail, kind: str, code: str | None
) -> None:
    openai.script(fail, Reply("after"))

    response = await chat(openai, ask())

    assert response.status_code == fail.status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == (kind, code)
    assert error["message"]
    if fail.retry_after is None:
        assert "retry-after" not in response.headers
    else:
        assert response.headers["retry-after"] == "0.5"
    assert (await chat(openai, ask())).status_code == 200
    assert openai.problems == []


async def test_openai_wrong_key_is_401_and_keeps_the_script(openai: FakeOpenAI) -> None:
    openai.script(Reply("unused"))

    response = await chat(openai, ask(), key="sk-wrong")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert openai.remaining == 1
    assert openai.problems == []


async def test_openai_unknown_model_is_404(openai: FakeOpenAI) -> None:
    openai.script(Reply("unused"))

    response = await chat(openai, {**ask(), "model": "gpt-nonexistent"})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "gpt-nonexistent" in error["message"]
    assert openai.remaining == 1


async def test_openai_without_a_key_accepts_any_client() -> None:
    async with running(FakeOpenAI(api_key=None, models=None)) as fake:
        fake.script(Reply("ok"))
        async with httpx2.AsyncClient() as client:
            body = {**ask(), "model": "llama3"}
            response = await client.post(f"{fake.url}/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert fake.problems == []


async def test_drop_is_a_transport_error_not_a_response(openai: FakeOpenAI) -> None:
    openai.script(Drop(), Reply("back"))

    with pytest.raises(httpx2.TransportError):
        await chat(openai, ask())

    assert (await chat(openai, ask())).json()["choices"][0]["message"]["content"] == "back"
    assert openai.problems == []


async def test_hang_outlasts_a_short_client_timeout(openai: FakeOpenAI) -> None:
    openai.script(Hang(30), Hang(0.05, then=Reply("slow but there")))

    with pytest.raises(httpx2.TimeoutException):
        await chat(openai, ask(), timeout=0.2)

    response = await chat(openai, ask(), timeout=5)
    assert response.json()["choices"][0]["message"]["content"] == "slow but there"


def assistant_calls(*ids: str) -> dict[str, Any]:
    calls = [
        {"id": i, "type": "function", "function": {"name": "read_file", "arguments": "{}"}}
        for i in ids
    ]
    return {"role": "assistant", "content": None, "tool_calls": calls}


USER = {"role": "user", "content": "Add multiply"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            ask(messages=[USER, {"role": "tool", "tool_call_id": "call_x", "content": "x"}]),
            "must be a response to a preceding message with 'tool_calls'",
        ),
        (
            ask(
                messages=[
                    USER,
                    assistant_calls("call_a", "call_b"),
                    {"role": "tool", "tool_call_id": "call_a", "content": "x"},
                    USER,
                ]
            ),
            "missing: call_b",
        ),
        (ask(messages=[USER, assistant_calls("call_a")]), "without response messages: call_a"),
        (
            ask(
                messages=[
                    USER,
                    {
                        **assistant_calls("c"),
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": {}},
                            }
                        ],
                    },
                ]
            ),
            "arguments: must be a string",
        ),
        (ask(messages=[{"role": "robot", "content": "hi"}]), "messages[0].role"),
        (ask(messages=[{"role": "user"}]), "messages[0].content: required"),
        (ask(messages=[]), "messages: must be a non-empty list"),
        ({"messages": [USER]}, "model: must be a non-empty string"),
        (ask(stream=True), "stream: must be absent or false"),
        (ask(max_tokens=0), "max_tokens: must be an integer >= 1"),
        (ask(temperature=3), "temperature"),
        (ask(foo=1), "Unrecognized request argument supplied: foo"),
        (ask(tool_choice="auto"), "only allowed when tools are specified"),
        (
            ask(tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]),
            "parameters: must be a schema of type 'object'",
        ),
        (ask(tools=[{"name": "f", "parameters": {"type": "object"}}]), "type 'function'"),
    ],
)
async def test_openai_malformed_requests_are_400_and_recorded(
    openai: FakeOpenAI, body: dict[str, Any], expected: str
) -> None:
    openai.script(Reply("unused"))

    response = await chat(openai, body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert expected in response.json()["error"]["message"]
    assert len(openai.problems) >= 1
    assert any(expected in problem for problem in openai.problems), openai.problems
    assert openai.problems[0].startswith("request 1: ")
    assert openai.remaining == 1


async def test_openai_wrong_path_is_404_and_a_problem(openai: FakeOpenAI) -> None:
    async with httpx2.AsyncClient() as client:
        response = await client.post(f"{openai.url}/completions", json=ask())

    assert response.status_code == 404
    assert openai.problems == ["POST /v1/completions: not the endpoint (POST /v1/chat/completions)"]


async def test_openai_exhausted_script_is_500_and_a_problem(openai: FakeOpenAI) -> None:
    openai.script(Reply("only one"))
    await chat(openai, ask())

    response = await chat(openai, ask())

    assert response.status_code == 500
    assert "script exhausted" in response.json()["error"]["message"]
    assert openai.problems == ["request 2: script exhausted"]


async def test_anthropic_text_reply_has_the_real_shape(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply("Here is the plan.", input_tokens=11, output_tokens=5))
    body = ask_claude(system=[{"type": "text", "text": "You are Nimbus."}], temperature=0.5)

    response = await message(anthropic, body)

    assert response.status_code == 200, response.text
    data = response.json()
    assert data["id"].startswith("msg_")
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["model"] == "claude-test"
    assert data["content"] == [{"type": "text", "text": "Here is the plan."}]
    assert data["stop_reason"] == "end_turn"
    assert data["stop_sequence"] is None
    assert data["usage"]["input_tokens"] == 11
    assert data["usage"]["output_tokens"] == 5
    assert anthropic.requests == [body]
    assert anthropic.headers[0]["x-api-key"] == "sk-ant-test-fake"
    assert anthropic.headers[0]["anthropic-version"] == "2023-06-01"
    assert anthropic.problems == []


async def test_anthropic_tool_use_round_trip_is_accepted(anthropic: FakeAnthropic) -> None:
    anthropic.script(
        Reply("Let me look.", tool_calls=[ToolCall("read_file", {"path": "calc.py"})]),
        Reply("Done."),
    )

    first = await message(anthropic, ask_claude(tools=[READ_FILE_ANTHROPIC]))

    assert first.status_code == 200, first.text
    data = first.json()
    assert data["stop_reason"] == "tool_use"
    text, use = data["content"]
    assert text == {"type": "text", "text": "Let me look."}
    assert use["type"] == "tool_use"
    assert use["id"].startswith("toolu_")
    assert (use["name"], use["input"]) == ("read_file", {"path": "calc.py"})

    history = [
        {"role": "user", "content": "Add multiply"},
        {"role": "assistant", "content": data["content"]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use["id"], "content": "def add(a, b): ..."},
                {"type": "text", "text": "Carry on."},
            ],
        },
    ]
    second = await message(anthropic, ask_claude(messages=history, tools=[READ_FILE_ANTHROPIC]))

    assert second.status_code == 200, second.text
    assert second.json()["content"] == [{"type": "text", "text": "Done."}]
    assert anthropic.problems == []


@pytest.mark.parametrize(
    ("arguments", "sent"),
    [
        ('{"path": "calc.py"', {"_raw": '{"path": "calc.py"'}),
        ('["not", "an", "object"]', {"_raw": '["not", "an", "object"]'}),
        ('{"path": "calc.py"}', {"path": "calc.py"}),
    ],
)
async def test_anthropic_string_arguments_become_an_object(
    anthropic: FakeAnthropic, arguments: str, sent: dict[str, Any]
) -> None:
    anthropic.script(Reply(tool_calls=[ToolCall("read_file", arguments, id="toolu_1")]))

    response = await message(anthropic, ask_claude(tools=[READ_FILE_ANTHROPIC]))

    assert response.json()["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": sent}
    ]


@pytest.mark.parametrize(
    ("fail", "kind"),
    [
        (Fail(429, retry_after=2), "rate_limit_error"),
        (Fail(500), "api_error"),
        (Fail(529), "overloaded_error"),
        (Fail(529, message="Overloaded, try later", retry_after=0.25), "overloaded_error"),
    ],
)
async def test_anthropic_failures_use_the_real_error_body(
    anthropic: FakeAnthropic, fail: Fail, kind: str
) -> None:
    anthropic.script(fail)

    response = await message(anthropic, ask_claude())

    assert response.status_code == fail.status
    data = response.json()
    assert set(data) == {"type", "error", "request_id"}
    assert data["type"] == "error"
    assert data["error"]["type"] == kind
    assert data["error"]["message"] == (fail.message or data["error"]["message"])
    if fail.retry_after is not None:
        assert float(response.headers["retry-after"]) == fail.retry_after
    assert anthropic.problems == []


async def test_anthropic_wrong_key_is_401(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply("unused"))

    response = await message(anthropic, ask_claude(), key="sk-ant-wrong")

    assert response.status_code == 401
    assert response.json()["error"] == {
        "type": "authentication_error",
        "message": "invalid x-api-key",
    }
    assert anthropic.remaining == 1
    assert anthropic.problems == []


async def test_anthropic_unknown_model_is_404(anthropic: FakeAnthropic) -> None:
    response = await message(anthropic, {**ask_claude(), "model": "claude-nonexistent"})

    assert response.status_code == 404
    assert response.json()["error"] == {
        "type": "not_found_error",
        "message": "model: claude-nonexistent",
    }


async def test_anthropic_drop_and_hang(anthropic: FakeAnthropic) -> None:
    anthropic.script(Drop(), Hang(30), Reply("fine"))

    with pytest.raises(httpx2.TransportError):
        await message(anthropic, ask_claude())
    with pytest.raises(httpx2.TimeoutException):
        await message(anthropic, ask_claude(), timeout=0.2)
    assert (await message(anthropic, ask_claude())).status_code == 200
    assert anthropic.problems == []


def tool_use(id_: str = "toolu_a") -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": "read_file", "input": {}}


def tool_result(id_: str = "toolu_a") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": id_, "content": "x"}


CLAUDE_USER = {"role": "user", "content": "Add multiply"}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            ask_claude(messages=[{"role": "assistant", "content": "Hi"}, CLAUDE_USER]),
            "the first message must use the user role",
        ),
        ({"model": "claude-test", "messages": [CLAUDE_USER]}, "max_tokens: Field required"),
        (ask_claude(max_tokens="100"), "max_tokens: must be an integer"),
        (ask_claude(messages=[CLAUDE_USER, CLAUDE_USER]), "roles must alternate"),
        (ask_claude(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (
            ask_claude(
                messages=[
                    CLAUDE_USER,
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": [tool_result("toolu_z")]},
                ]
            ),
            "unexpected tool_use_id found in tool_result blocks: toolu_z",
        ),
        (
            ask_claude(
                messages=[CLAUDE_USER, {"role": "assistant", "content": [tool_use()]}, CLAUDE_USER]
            ),
            "tool_use ids were found without tool_result blocks immediately after: toolu_a",
        ),
        (
            ask_claude(
                messages=[
                    CLAUDE_USER,
                    {"role": "assistant", "content": [tool_use()]},
                    {"role": "user", "content": [{"type": "text", "text": "first"}, tool_result()]},
                ]
            ),
            "Did not find 1 tool_result block(s) at the beginning of this message",
        ),
        (
            ask_claude(messages=[{"role": "user", "content": [tool_use()]}]),
            "tool_use blocks are not allowed in user messages",
        ),
        (
            ask_claude(
                messages=[
                    CLAUDE_USER,
                    {"role": "assistant", "content": [{**tool_use(), "input": "{}"}]},
                    {"role": "user", "content": [tool_result()]},
                ]
            ),
            "messages.1.content.0.input: must be an object",
        ),
        (
            ask_claude(messages=[{"role": "user", "content": [{"type": "text", "text": ""}]}]),
            "text content blocks must be non-empty",
        ),
        (ask_claude(system=[{"type": "text"}]), "system.0.text"),
        (ask_claude(tools=[{"name": "read_file"}]), "input_schema: required"),
        (ask_claude(tools=[READ_FILE]), "tools.0"),
        (ask_claude(stream=True), "stream: must be absent or false"),
        (ask_claude(temperature=1.5), "temperature"),
        (ask_claude(tool_choice={"type": "tool", "name": "nope"}), "tool_choice.name"),
        (ask_claude(foo=1), "foo: Extra inputs are not permitted"),
    ],
)
async def test_anthropic_malformed_requests_are_400_and_recorded(
    anthropic: FakeAnthropic, body: dict[str, Any], expected: str
) -> None:
    anthropic.script(Reply("unused"))

    response = await message(anthropic, body)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert expected in response.json()["error"]["message"]
    assert any(expected in problem for problem in anthropic.problems), anthropic.problems
    assert anthropic.remaining == 1


async def test_anthropic_version_header_is_required(anthropic: FakeAnthropic) -> None:
    anthropic.script(Reply("unused"))

    response = await message(anthropic, ask_claude(), version=None)

    assert response.status_code == 400
    assert anthropic.problems == ["request 1: anthropic-version: header is required"]


async def test_anthropic_exhausted_script_is_500_and_a_problem(anthropic: FakeAnthropic) -> None:
    response = await message(anthropic, ask_claude())

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "api_error"
    assert "script exhausted" in response.json()["error"]["message"]
    assert anthropic.problems == ["request 1: script exhausted"]


async def test_both_fakes_list_their_models(openai: FakeOpenAI, anthropic: FakeAnthropic) -> None:
    async with httpx2.AsyncClient() as client:
        listed = await client.get(
            f"{openai.url}/models", headers={"Authorization": "Bearer sk-test-fake"}
        )
        claude = await client.get(
            f"{anthropic.url}/v1/models",
            headers={"x-api-key": "sk-ant-test-fake", "anthropic-version": "2023-06-01"},
        )

    assert [m["id"] for m in listed.json()["data"]] == ["gpt-test"]
    assert [m["id"] for m in claude.json()["data"]] == ["claude-test"]


async def test_truncated_replies_say_so_in_each_format(
    openai: FakeOpenAI, anthropic: FakeAnthropic
) -> None:
    openai.script(Reply("Half a", truncated=True))
    anthropic.script(Reply("Half a", truncated=True))

    assert (await chat(openai, ask())).json()["choices"][0]["finish_reason"] == "length"
    assert (await message(anthropic, ask_claude())).json()["stop_reason"] == "max_tokens"


async def test_a_broken_script_entry_is_500_and_a_problem(openai: FakeOpenAI) -> None:
    openai.script(lambda request: request["missing"], lambda request: "not an item")

    first = await chat(openai, ask())
    second = await chat(openai, ask())

    assert (first.status_code, second.status_code) == (500, 500)
    assert openai.problems == [
        "request 1: the script gave KeyError('missing'), not an item",
        "request 2: the script gave 'not an item', not an item",
    ]


async def test_stopping_drops_a_hanging_request_at_once() -> None:
    fake = FakeAnthropic()
    await fake.start()
    fake.script(Hang(30))
    waiting = asyncio.create_task(message(fake, ask_claude(), timeout=30))
    for _ in range(500):
        if fake.requests:
            break
        await asyncio.sleep(0.01)

    started = time.monotonic()
    await fake.stop()

    assert time.monotonic() - started < 1
    with pytest.raises(httpx2.TransportError):
        await waiting
    assert fake.problems == []
