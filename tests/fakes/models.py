"""Fake OpenAI and Anthropic model servers on loopback, scripted per test, checking what they get.

Each fake is a real HTTP server (uvicorn on 127.0.0.1) that speaks the provider's wire format:
OpenAI's chat completions (`POST {url}/chat/completions`, `url` ends in `/v1`) or Anthropic's
Messages API (`POST {url}/v1/messages`). A test scripts the answers, in order, with neutral items:

- `Reply(text, tool_calls=[ToolCall(name, arguments)])`: a completion; `arguments` given as a str
  is sent verbatim to OpenAI (to simulate malformed JSON); Anthropic's `tool_use.input` is always an
  object, so there a str that is not a JSON object is sent as `{"_raw": str}`;
- `Fail(status, retry_after=None)`: the provider's own error body, with `retry-after` when set;
- `Drop()`: the connection is closed without an answer (the client sees a transport error);
- `Hang(seconds)`: nothing is sent for that long (for client timeouts), then `then` is answered;
- a callable `(request_json) -> item`, for answers that depend on what was asked.

Every request is recorded in `requests` (parsed JSON bodies) and `headers` (lower-case names), and
checked against the real API's rules. Each violation goes into `problems` and the request is
answered 400 with the provider's error body, so a broken client fails loudly; tests end with
`assert fake.problems == []`. A wrong API key is answered 401 and an unknown model 404, as the real
services do; neither is a problem, and neither, nor a 400, uses up a scripted item. A request that
finds the script exhausted is answered 500 ("script exhausted") and recorded as a problem.

Usage::

    from tests.fakes.models import FakeOpenAI, Reply, ToolCall, running

    async def test_the_agent_reads_a_file_then_answers() -> None:
        async with running(FakeOpenAI()) as fake:
            fake.script(Reply(tool_calls=[ToolCall("read_file", {"path": "a.py"})]), Reply("done"))
            ...  # point the client at fake.url with fake.api_key and model "gpt-test"
        assert fake.problems == []
        assert fake.requests[1]["messages"][-1]["role"] == "tool"

Both also answer `GET /v1/models` with the accepted models. Stopping a fake drops any request
still hanging. Deliberate limits: no streaming (`stream: true` is a problem), one choice (`n` must
be 1), and the Anthropic fake wants strictly alternating turns, which the real API would merge.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import string
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn

from bot.cli import _listen

JSON = dict[str, Any]


@dataclass
class ToolCall:
    """A tool call in a scripted reply; `id` is generated in the provider's style when None."""

    name: str
    arguments: dict[str, Any] | str
    id: str | None = None


@dataclass
class Reply:
    """A successful completion: text, tool calls, or both."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 100
    output_tokens: int = 20
    truncated: bool = False  # finish_reason "length" / stop_reason "max_tokens"


@dataclass
class Fail:
    """An HTTP error in the provider's body; message and error type default by status."""

    status: int
    retry_after: float | None = None
    message: str | None = None
    kind: str | None = None


@dataclass
class Drop:
    """Close the connection without sending anything."""


@dataclass
class Hang:
    """Send nothing for `seconds` (or until the client gives up), then answer `then`."""

    seconds: float
    then: Reply | Fail | Drop = field(default_factory=lambda: Reply("late reply"))


Item = Reply | Fail | Drop | Hang
Entry = Item | Callable[[JSON], Item]
F = TypeVar("F", bound="FakeModelServer")


@dataclass
class _Answer:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _alnum(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _extra(obj: JSON, allowed: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(set(obj) - allowed):
        problems.append(f"{where}.{key}: Extra inputs are not permitted")


def _object_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "object"


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class _Uvicorn(uvicorn.Server):
    """uvicorn that stops when told rather than on its 0.1 s ticks, since fakes start per test."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopping = asyncio.Event()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # sets the Date and Server headers
        while not self.should_exit and not self.stopping.is_set():  # should_exit: Ctrl-C
            with suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # closes idle keep-alive connections, others after answering
        deadline = time.monotonic() + 2
        while self.server_state.connections or self.server_state.tasks:
            if time.monotonic() > deadline:
                for task in self.server_state.tasks:
                    task.cancel()
                break
            await asyncio.sleep(0.002)


async def serve_on_loopback(app: Any, what: str) -> tuple[_Uvicorn, asyncio.Task[None], str]:
    """Serve an ASGI app on a free 127.0.0.1 port: the server, its task and its base URL."""
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http="h11",
        interface="asgi3",
        proxy_headers=False,
        ws="none",
    )
    server = _Uvicorn(config)
    sock = _listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    job = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        if job.done():
            job.result()
        assert time.monotonic() < deadline, f"{what} did not start"
        await asyncio.sleep(0.01)
    return server, job, f"http://127.0.0.1:{port}"


async def stop_serving(server: _Uvicorn | None, job: asyncio.Task[None] | None) -> None:
    """Shut down what `serve_on_loopback` started (nothing if it never started)."""
    if server is not None and job is not None:
        server.stopping.set()
        await asyncio.wait_for(job, 10)


class FakeModelServer:
    """What both fakes share: the server, the script, the records; subclasses speak the wire."""

    endpoint = ""
    request_id_header = ""

    def __init__(self, api_key: str | None, models: Iterable[str] | None) -> None:
        self.api_key = api_key
        self.models: set[str] | None = None if models is None else set(models)
        self.requests: list[JSON] = []
        self.headers: list[dict[str, str]] = []
        self.problems: list[str] = []
        self.url = ""
        self._script: deque[Entry] = deque()
        self._server: _Uvicorn | None = None
        self._job: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def script(self, *items: Entry) -> None:
        """Append answers, used one per accepted request."""
        self._script.extend(items)

    @property
    def remaining(self) -> int:
        """How many scripted answers are still unused."""
        return len(self._script)

    async def start(self) -> str:
        """Serve on a free loopback port; returns the base URL a client is configured with."""
        self._closing = asyncio.Event()
        self._server, self._job, root = await serve_on_loopback(self._app, "fake model server")
        self.url = self._base_url(root)
        return self.url

    async def stop(self) -> None:
        """Release hanging requests and shut the server down."""
        self._closing.set()
        await stop_serving(self._server, self._job)

    async def _app(
        self, scope: JSON, receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        answer = await self._handle(scope, receive, headers, body)
        if answer is None:
            return
        data = json.dumps(answer.body).encode()
        extra = {self.request_id_header: f"req_{_alnum(24)}", **answer.headers}
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    *((k.encode(), v.encode()) for k, v in extra.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def _handle(
        self, scope: JSON, receive: Callable[..., Any], headers: dict[str, str], body: bytes
    ) -> _Answer | None:
        method, path = scope["method"], scope["path"]
        if method == "GET" and path == "/v1/models":
            return self._authenticate(headers) or _Answer(200, self._model_list())
        if (method, path) != ("POST", self.endpoint):
            self.problems.append(f"{method} {path}: not the endpoint (POST {self.endpoint})")
            return self._error(404, f"Invalid URL ({method} {path})")
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        self.requests.append(request if isinstance(request, dict) else {})
        self.headers.append(headers)
        number = len(self.requests)
        denied = self._authenticate(headers)
        if denied is not None:
            return denied
        problems = self._header_problems(headers)
        if not headers.get("content-type", "").startswith("application/json"):
            problems.append("content-type: must be application/json")
        if isinstance(request, dict):
            problems += self._body_problems(request)
        else:
            problems.append("body: not a JSON object")
        if problems:
            self.problems += [f"request {number}: {problem}" for problem in problems]
            return self._error(400, "; ".join(problems))
        assert isinstance(request, dict)
        if self.models is not None and request["model"] not in self.models:
            return self._unknown_model(request["model"])
        if not self._script:
            self.problems.append(f"request {number}: script exhausted")
            return self._error(500, f"script exhausted: nothing scripted for request {number}")
        entry = self._script.popleft()
        try:
            item = entry(request) if callable(entry) else entry
        except Exception as exc:
            item = exc
        if not isinstance(item, Reply | Fail | Drop | Hang):
            self.problems.append(f"request {number}: the script gave {item!r}, not an item")
            return self._error(500, f"the script gave {item!r}, not an item")
        return await self._perform(item, request, scope, receive)

    async def _perform(
        self, item: Item, request: JSON, scope: JSON, receive: Callable[..., Any]
    ) -> _Answer | None:
        if isinstance(item, Reply):
            return _Answer(200, self._completion(item, request))
        if isinstance(item, Fail):
            answer = self._error(item.status, item.message, item.kind)
            if item.retry_after is not None:
                answer.headers["retry-after"] = _seconds(item.retry_after)
            return answer
        if isinstance(item, Drop):
            if not await self._drop(scope):
                self.problems.append(f"Drop: found no connection for client {scope['client']}")
            return None
        if await self._hang(item.seconds, receive):
            return await self._perform(item.then, request, scope, receive)
        await self._drop(scope)  # the fake is stopping: leave no client waiting for it
        return None

    async def _drop(self, scope: JSON) -> bool:
        # An ASGI app cannot close its connection: returning without a response makes uvicorn
        # answer 500. So close the transport of the connection that carries this request, and
        # let uvicorn notice the disconnection before the app returns.
        assert self._server is not None
        client = tuple(scope.get("client") or ())
        for connection in list(self._server.server_state.connections):
            if tuple(getattr(connection, "client", None) or ()) == client:
                connection.transport.close()
                for _ in range(5):
                    await asyncio.sleep(0)
                return True
        return False

    async def _hang(self, seconds: float, receive: Callable[..., Any]) -> bool:
        """Wait; False when the client left or the fake is stopping first."""
        waits = [
            asyncio.ensure_future(asyncio.sleep(seconds)),
            asyncio.ensure_future(self._closing.wait()),
            asyncio.ensure_future(receive()),  # http.disconnect, once the client gives up
        ]
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[0] in done

    def _base_url(self, root: str) -> str:
        raise NotImplementedError

    def _authenticate(self, headers: dict[str, str]) -> _Answer | None:
        raise NotImplementedError

    def _header_problems(self, headers: dict[str, str]) -> list[str]:
        return []

    def _body_problems(self, body: JSON) -> list[str]:
        raise NotImplementedError

    def _error(self, status: int, message: str | None = None, kind: str | None = None) -> _Answer:
        raise NotImplementedError

    def _unknown_model(self, model: str) -> _Answer:
        raise NotImplementedError

    def _completion(self, reply: Reply, request: JSON) -> JSON:
        raise NotImplementedError

    def _model_list(self) -> JSON:
        raise NotImplementedError


@asynccontextmanager
async def running(fake: F) -> AsyncIterator[F]:
    """Start the fake for the block and stop it after."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


# https://platform.openai.com/docs/api-reference/chat/create
OPENAI_PARAMS = {
    "model", "messages", "tools", "tool_choice", "parallel_tool_calls", "temperature", "top_p",
    "max_tokens", "max_completion_tokens", "stream", "stream_options", "stop", "n", "seed",
    "response_format", "user", "presence_penalty", "frequency_penalty", "logprobs",
    "top_logprobs", "logit_bias", "metadata", "store", "reasoning_effort", "service_tier",
    "prompt_cache_key", "safety_identifier", "verbosity",
}  # fmt: skip
OPENAI_MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    "assistant": {"role", "content", "name", "tool_calls", "refusal"},
    "tool": {"role", "content", "tool_call_id"},
}
OPENAI_PART_TYPES = {
    "system": {"text"},
    "developer": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
    "tool": {"text"},
}
# status -> (error.type, error.code, message), as the real service answers them
OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", None, "You are not allowed to sample from this model."),
    404: ("invalid_request_error", None, "Not found."),
    429: ("tokens", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def _openai_content(role: str, content: Any, where: str, problems: list[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        problems.append(f"{where}.content: must be a string or a non-empty list of parts")
        return
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in OPENAI_PART_TYPES[role]:
            problems.append(f"{where}.content[{j}]: invalid part type {kind!r} for role {role}")
        elif kind == "text" and not isinstance(part.get("text"), str):
            problems.append(f"{where}.content[{j}].text: must be a string")


def _openai_tool_calls(calls: Any, where: str, problems: list[str]) -> list[str]:
    """Check an assistant message's tool_calls; returns their ids."""
    if not isinstance(calls, list) or not calls:
        problems.append(f"{where}.tool_calls: must be a non-empty list")
        return []
    ids = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if not isinstance(call, dict):
            problems.append(f"{at}: must be an object")
            continue
        _extra(call, {"id", "type", "function"}, at, problems)
        if not isinstance(call.get("id"), str) or not call["id"]:
            problems.append(f"{at}.id: must be a non-empty string")
        else:
            ids.append(call["id"])
        if call.get("type") != "function":
            problems.append(f"{at}.type: must be 'function'")
        function = call.get("function")
        if not isinstance(function, dict):
            problems.append(f"{at}.function: must be an object")
            continue
        _extra(function, {"name", "arguments"}, f"{at}.function", problems)
        if not isinstance(function.get("name"), str):
            problems.append(f"{at}.function.name: must be a string")
        if not isinstance(function.get("arguments"), str):
            problems.append(f"{at}.function.arguments: must be a string (JSON text)")
    return ids


def _openai_messages(messages: list[Any], problems: list[str]) -> None:
    seen: set[str] = set()
    pending: list[str] = []  # tool_call ids of the last assistant message still unanswered
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"{where}: must be an object")
            continue
        role = message.get("role")
        if role not in OPENAI_MESSAGE_FIELDS:
            problems.append(f"{where}.role: {role!r} is not one of {sorted(OPENAI_MESSAGE_FIELDS)}")
            continue
        if pending and role != "tool":
            problems.append(
                f"{where}: an assistant message with 'tool_calls' must be followed by tool "
                f"messages responding to each 'tool_call_id'; missing: {', '.join(pending)}"
            )
            pending = []
        _extra(message, OPENAI_MESSAGE_FIELDS[role], where, problems)
        content = message.get("content")
        if role == "assistant":
            calls = message.get("tool_calls")
            if calls is not None:
                ids = _openai_tool_calls(calls, where, problems)
                problems += [f"{where}: duplicate tool call id {c!r}" for c in ids if c in seen]
                seen.update(ids)
                pending = list(ids)
            if content is not None:
                _openai_content(role, content, where, problems)
            elif calls is None:
                problems.append(f"{where}.content: required unless tool_calls is set")
        elif "content" not in message:
            problems.append(f"{where}.content: required for role {role}")
        else:
            _openai_content(role, content, where, problems)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                problems.append(f"{where}.tool_call_id: must be a string")
            elif call_id in pending:
                pending.remove(call_id)
            else:
                problems.append(
                    f"{where}: messages with role 'tool' must be a response to a preceding "
                    f"message with 'tool_calls' (no pending call {call_id!r})"
                )
    if pending:
        problems.append(f"messages: tool_call ids without response messages: {', '.join(pending)}")


def _openai_tools(body: JSON, problems: list[str]) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list) or not tools:
            problems.append("tools: must be a non-empty list")
            tools = []
        for i, tool in enumerate(tools):
            where = f"tools[{i}]"
            if not isinstance(tool, dict) or tool.get("type") != "function":
                problems.append(f"{where}: must be an object with type 'function'")
                continue
            _extra(tool, {"type", "function"}, where, problems)
            function = tool.get("function")
            if not isinstance(function, dict):
                problems.append(f"{where}.function: must be an object")
                continue
            fields = {"name", "description", "parameters", "strict"}
            _extra(function, fields, f"{where}.function", problems)
            name = function.get("name")
            if not isinstance(name, str) or not TOOL_NAME.match(name):
                problems.append(f"{where}.function.name: must match {TOOL_NAME.pattern}")
            else:
                names.add(name)
            if "description" in function and not isinstance(function["description"], str):
                problems.append(f"{where}.function.description: must be a string")
            if "parameters" in function and not _object_schema(function["parameters"]):
                problems.append(f"{where}.function.parameters: must be a schema of type 'object'")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if tools is None:
        problems.append("tool_choice: only allowed when tools are specified")
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if choice.get("type") != "function" or name not in names:
            problems.append(f"tool_choice: {choice!r} does not name one of the tools")
    elif choice not in ("none", "auto", "required"):
        problems.append(f"tool_choice: {choice!r} is not none, auto, required or a function")


def openai_problems(body: JSON) -> list[str]:
    """What the real chat-completions endpoint would reject (or the fake cannot serve) in a body."""
    problems: list[str] = []
    for key in sorted(set(body) - OPENAI_PARAMS):
        problems.append(f"Unrecognized request argument supplied: {key}")
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: must be a non-empty string")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages: must be a non-empty list")
    else:
        _openai_messages(messages, problems)
    _openai_tools(body, problems)
    for key, low, high in (("temperature", 0, 2), ("top_p", 0, 1)):
        value = body.get(key)
        if value is not None and not (_is_number(value) and low <= value <= high):
            problems.append(f"{key}: must be a number in [{low}, {high}]")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and not (_is_int(value) and value >= 1):
            problems.append(f"{key}: must be an integer >= 1")
    if body.get("stream") not in (None, False):
        problems.append("stream: must be absent or false (the fake does not stream)")
    if body.get("n") not in (None, 1):
        problems.append("n: must be 1 (the fake answers one choice)")
    return problems


class FakeOpenAI(FakeModelServer):
    """An OpenAI-compatible chat-completions server."""

    endpoint = "/v1/chat/completions"
    request_id_header = "x-request-id"

    def __init__(
        self, api_key: str | None = "sk-test-fake", models: Iterable[str] | None = ("gpt-test",)
    ) -> None:
        """`api_key=None` accepts any or no key (a local server); `models=None` accepts any."""
        super().__init__(api_key, models)

    def _base_url(self, root: str) -> str:
        return f"{root}/v1"

    def _authenticate(self, headers: dict[str, str]) -> _Answer | None:
        # https://platform.openai.com/docs/api-reference/authentication
        if self.api_key is None:
            return None
        given = headers.get("authorization")
        if given is None:
            message = "You didn't provide an API key. Use an Authorization header with Bearer auth."
            return self._error(401, message, code=None)
        if given != f"Bearer {self.api_key}":
            key = given.removeprefix("Bearer ")
            return self._error(401, f"Incorrect API key provided: {key[:3]}***{key[-2:]}.")
        return None

    def _body_problems(self, body: JSON) -> list[str]:
        return openai_problems(body)

    def _error(
        self,
        status: int,
        message: str | None = None,
        kind: str | None = None,
        code: str | None = "default",
    ) -> _Answer:
        # https://platform.openai.com/docs/guides/error-codes
        fallback = ("invalid_request_error", None, f"HTTP {status}")
        if status >= 500:
            fallback = ("server_error", None, f"HTTP {status}")
        type_, default_code, default_message = OPENAI_ERRORS.get(status, fallback)
        if kind is not None:
            type_ = default_code = kind
        error = {
            "message": message or default_message,
            "type": type_,
            "param": None,
            "code": default_code if code == "default" else code,
        }
        return _Answer(status, {"error": error})

    def _unknown_model(self, model: str) -> _Answer:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return self._error(404, message, code="model_not_found")

    def _completion(self, reply: Reply, request: JSON) -> JSON:
        calls = [
            {
                "id": call.id or f"call_{secrets.token_hex(12)}",
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.arguments
                    if isinstance(call.arguments, str)
                    else json.dumps(call.arguments),
                },
            }
            for call in reply.tool_calls
        ]
        message: JSON = {"role": "assistant", "content": reply.text, "refusal": None}
        if calls:
            message["tool_calls"] = calls
        finish = "length" if reply.truncated else "tool_calls" if calls else "stop"
        return {
            "id": f"chatcmpl-{_alnum(29)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": {
                "prompt_tokens": reply.input_tokens,
                "completion_tokens": reply.output_tokens,
                "total_tokens": reply.input_tokens + reply.output_tokens,
            },
            "system_fingerprint": None,
        }

    def _model_list(self) -> JSON:
        models = sorted(self.models or ())
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": created, "owned_by": "fake"} for m in models
            ],
        }


# https://docs.anthropic.com/en/api/messages
ANTHROPIC_PARAMS = {
    "model", "max_tokens", "messages", "system", "tools", "tool_choice", "temperature", "top_p",
    "top_k", "stop_sequences", "stream", "metadata", "thinking", "service_tier",
}  # fmt: skip
ANTHROPIC_BLOCK_FIELDS = {
    "text": {"type", "text", "cache_control", "citations"},
    "image": {"type", "source", "cache_control"},
    "tool_use": {"type", "id", "name", "input", "cache_control"},
    "tool_result": {"type", "tool_use_id", "content", "is_error", "cache_control"},
}
ANTHROPIC_BLOCK_ROLES = {
    "text": {"user", "assistant"},
    "image": {"user"},
    "tool_use": {"assistant"},
    "tool_result": {"user"},
}
# https://docs.anthropic.com/en/api/errors
ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "This request would exceed your organization's rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}
TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def _anthropic_text_blocks(
    blocks: Any, where: str, problems: list[str], kinds: tuple[str, ...] = ("text",)
) -> None:
    if not isinstance(blocks, list):
        problems.append(f"{where}: must be a string or a list of {' or '.join(kinds)} blocks")
        return
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        if not isinstance(block, dict) or block.get("type") not in kinds:
            problems.append(f"{at}: must be a {' or '.join(kinds)} block")
            continue
        _extra(block, ANTHROPIC_BLOCK_FIELDS[block["type"]], at, problems)
        if block["type"] == "text" and not (isinstance(block.get("text"), str) and block["text"]):
            problems.append(f"{at}.text: text content blocks must be non-empty")


def _anthropic_block(block: Any, role: str, at: str, problems: list[str]) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in ANTHROPIC_BLOCK_FIELDS:
        problems.append(f"{at}: unsupported block type {kind!r}")
        return
    if role not in ANTHROPIC_BLOCK_ROLES[kind]:
        problems.append(f"{at}: {kind} blocks are not allowed in {role} messages")
    _extra(block, ANTHROPIC_BLOCK_FIELDS[kind], at, problems)
    if kind == "text" and not (isinstance(block.get("text"), str) and block["text"]):
        problems.append(f"{at}.text: text content blocks must be non-empty")
    elif kind == "tool_use":
        if not isinstance(block.get("id"), str) or not TOOL_USE_ID.match(block["id"]):
            problems.append(f"{at}.id: must match {TOOL_USE_ID.pattern}")
        if not isinstance(block.get("name"), str):
            problems.append(f"{at}.name: must be a string")
        if not isinstance(block.get("input"), dict):
            problems.append(f"{at}.input: must be an object")
    elif kind == "tool_result":
        if not isinstance(block.get("tool_use_id"), str):
            problems.append(f"{at}.tool_use_id: must be a string")
        content = block.get("content")
        if content is not None and not isinstance(content, str):
            _anthropic_text_blocks(content, f"{at}.content", problems, ("text", "image"))
        if "is_error" in block and not isinstance(block["is_error"], bool):
            problems.append(f"{at}.is_error: must be a boolean")


def _anthropic_messages(messages: list[Any], problems: list[str]) -> None:
    seen: set[str] = set()
    uses: list[str] = []  # tool_use ids of the previous (assistant) message
    previous = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            problems.append(f"{where}.role: must be 'user' or 'assistant'")
            previous, uses = None, []
            continue
        _extra(message, {"role", "content"}, where, problems)
        role, content = message["role"], message.get("content")
        if i == 0 and role != "user":
            problems.append(f"{where}.role: the first message must use the user role")
        elif previous == role:
            problems.append(f"{where}.role: roles must alternate between user and assistant")
        last_assistant = role == "assistant" and i == len(messages) - 1
        blocks: list[Any] = []
        if isinstance(content, str):
            if not content and not last_assistant:
                problems.append(f"{where}.content: must be non-empty")
        elif isinstance(content, list):
            if not content and not last_assistant:
                problems.append(f"{where}.content: must be non-empty")
            blocks = content
            for j, block in enumerate(blocks):
                _anthropic_block(block, role, f"{where}.content.{j}", problems)
        else:
            problems.append(f"{where}.content: must be a string or a list of content blocks")
        kinds = [b.get("type") if isinstance(b, dict) else None for b in blocks]
        results = [
            b.get("tool_use_id") for b, k in zip(blocks, kinds, strict=True) if k == "tool_result"
        ]
        if uses:
            leading = next((n for n, k in enumerate(kinds) if k != "tool_result"), len(kinds))
            if role != "user" or leading < len(uses):
                problems.append(
                    f"{where}: Did not find {len(uses)} tool_result block(s) at the beginning of "
                    "this message. Messages following tool_use blocks must begin with a "
                    "matching number of tool_result blocks."
                )
            missing = [u for u in uses if u not in results]
            if missing:
                problems.append(
                    f"{where}: tool_use ids were found without tool_result blocks immediately "
                    f"after: {', '.join(missing)}"
                )
        unexpected = [r for r in results if r not in uses]
        if unexpected:
            problems.append(
                f"{where}: unexpected tool_use_id found in tool_result blocks: "
                f"{', '.join(map(str, unexpected))}. Each tool_result block must have a "
                "corresponding tool_use block in the previous message."
            )
        uses = [b.get("id") for b, k in zip(blocks, kinds, strict=True) if k == "tool_use"]
        problems += [f"{where}: tool_use ids must be unique: {u}" for u in uses if u in seen]
        seen.update(u for u in uses if isinstance(u, str))
        previous = role
    if uses:
        problems.append(
            f"messages: tool_use ids were found without tool_result blocks after: {uses}"
        )


def _anthropic_tools(body: JSON, problems: list[str]) -> None:
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None and not isinstance(tools, list):
        problems.append("tools: must be a list")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        where = f"tools.{i}"
        if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
            problems.append(f"{where}: must be a custom tool object (server tools: not faked)")
            continue
        fields = {"type", "name", "description", "input_schema", "cache_control"}
        _extra(tool, fields, where, problems)
        name = tool.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            problems.append(f"{where}.name: must match {TOOL_NAME.pattern}")
        elif name in names:
            problems.append(f"{where}.name: tool names must be unique: {name}")
        else:
            names.add(name)
        if "description" in tool and not isinstance(tool["description"], str):
            problems.append(f"{where}.description: must be a string")
        if not _object_schema(tool.get("input_schema")):
            problems.append(f"{where}.input_schema: required, a schema of type 'object'")
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind not in ("auto", "any", "tool", "none"):
        problems.append(f"tool_choice: {choice!r} is not auto, any, tool or none")
    elif kind == "tool" and choice.get("name") not in names:
        problems.append(f"tool_choice.name: {choice.get('name')!r} is not one of the tools")


def anthropic_problems(body: JSON) -> list[str]:
    """What the real Messages API would reject (or the fake cannot serve) in a body."""
    problems: list[str] = []
    _extra(body, ANTHROPIC_PARAMS, "body", problems)
    if not isinstance(body.get("model"), str) or not body["model"]:
        problems.append("model: Field required (a non-empty string)")
    if "max_tokens" not in body:
        problems.append("max_tokens: Field required")
    elif not (_is_int(body["max_tokens"]) and body["max_tokens"] >= 1):
        problems.append("max_tokens: must be an integer >= 1")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        _anthropic_text_blocks(system, "system", problems)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append("messages: Field required (a non-empty list)")
    else:
        _anthropic_messages(messages, problems)
    _anthropic_tools(body, problems)
    for key, low, high in (("temperature", 0, 1), ("top_p", 0, 1)):
        value = body.get(key)
        if value is not None and not (_is_number(value) and low <= value <= high):
            problems.append(f"{key}: must be a number in [{low}, {high}]")
    if "top_k" in body and not _is_int(body["top_k"]):
        problems.append("top_k: must be an integer")
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        problems.append("stop_sequences: must be a list of strings")
    if body.get("stream") not in (None, False):
        problems.append("stream: must be absent or false (the fake does not stream)")
    return problems


def _tool_input(arguments: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


class FakeAnthropic(FakeModelServer):
    """An Anthropic Messages API server."""

    endpoint = "/v1/messages"
    request_id_header = "request-id"

    def __init__(
        self,
        api_key: str | None = "sk-ant-test-fake",
        models: Iterable[str] | None = ("claude-test",),
    ) -> None:
        """`api_key=None` accepts any or no key; `models=None` accepts any model."""
        super().__init__(api_key, models)

    def _base_url(self, root: str) -> str:
        return root

    def _authenticate(self, headers: dict[str, str]) -> _Answer | None:
        if self.api_key is None:
            return None
        given = headers.get("x-api-key")
        if given is None:
            return self._error(401, "x-api-key header is required")
        if given != self.api_key:
            return self._error(401, "invalid x-api-key")
        return None

    def _header_problems(self, headers: dict[str, str]) -> list[str]:
        # https://docs.anthropic.com/en/api/versioning
        version = headers.get("anthropic-version")
        if version is None:
            return ["anthropic-version: header is required"]
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", version):
            return [f"anthropic-version: {version!r} is not a version date like 2023-06-01"]
        return []

    def _body_problems(self, body: JSON) -> list[str]:
        return anthropic_problems(body)

    def _error(self, status: int, message: str | None = None, kind: str | None = None) -> _Answer:
        fallback = ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
        type_, default_message = ANTHROPIC_ERRORS.get(status, fallback)
        error = {"type": kind or type_, "message": message or default_message}
        return _Answer(status, {"type": "error", "error": error, "request_id": f"req_{_alnum(24)}"})

    def _unknown_model(self, model: str) -> _Answer:
        return self._error(404, f"model: {model}")

    def _completion(self, reply: Reply, request: JSON) -> JSON:
        content: list[JSON] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [
            {
                "type": "tool_use",
                "id": call.id or f"toolu_01{_alnum(22)}",
                "name": call.name,
                "input": _tool_input(call.arguments),
            }
            for call in reply.tool_calls
        ]
        stop = "max_tokens" if reply.truncated else "tool_use" if reply.tool_calls else "end_turn"
        return {
            "id": f"msg_01{_alnum(22)}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def _model_list(self) -> JSON:
        models = sorted(self.models or ())
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in models
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
