"""The built-in model agent (`kind = "model"`): a language model working through tools."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import replace

import httpx2

from bot.agents.base import AgentOutput, AgentRequest, parse_plan, parse_review
from bot.agents.config import AgentSpec
from bot.agents.prompts import render_prompt, render_system
from bot.agents.tools import TOOL_SPECS, CloneTools, ToolError
from bot.errors import AgentError
from bot.model import anthropic, openai
from bot.model.client import ModelClient, ModelEndpoint
from bot.model.types import Message, ModelReply, ToolCall, ToolSpec
from bot.repo_config import path_matches
from bot.runner import EnvPolicy, Runner
from bot.sandbox import Confinement
from bot.settings import Settings
from bot.testresults import trim_output

_COMMAND_HINT = (
    "or configure a command agent in the TOML file named by NIMBUS_CONFIG, for example"
    ' [agents.aider] kind = "command" command = ["aider", "--yes-always", "--message",'
    ' "{prompt}"] with default_agent = "aider"'
)
_READ_ONLY = ("list_files", "read_file", "search")
RUN_TESTS = ToolSpec(
    name="run_tests",
    description="Run the repository's test command in the working tree; returns the exit code"
    " and the end of the output.",
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
)
# A tool result longer than this is cut: the model pays for every character, every step.
_MAX_RESULT = 20_000
# The same call made this many times in a row is pointed out, then stops the conversation.
_REPEAT_WARN, _REPEAT_STOP = 3, 6
# The tools that change files, and how a person following the task reads them.
_WRITES = {"edit_file": "editing", "create_file": "writing"}
# Replies that the model may give without touching a file before an edit phase gives up on it.
_NUDGES = 1


def endpoint_for(
    name: str, spec: AgentSpec, settings: Settings, environ: Mapping[str, str]
) -> ModelEndpoint:
    """Where this agent's model is; AgentError naming every missing setting."""
    provider = spec.provider or settings.model_provider
    model = spec.model or settings.model
    wire = {"openai": openai, "anthropic": anthropic}.get(provider or "")
    base_url = spec.base_url or settings.model_base_url or (wire.DEFAULT_BASE_URL if wire else "")
    api_key = environ.get(spec.api_key_env) if spec.api_key_env else settings.model_api_key
    missing = []
    if wire is None:
        missing.append("NIMBUS_MODEL_PROVIDER (openai or anthropic)")
    if not model:
        missing.append("NIMBUS_MODEL")
    # Local servers (Ollama, vLLM, llama.cpp) need no key; the providers' own APIs do.
    if wire is not None and base_url == wire.DEFAULT_BASE_URL and not api_key:
        missing.append(spec.api_key_env or "NIMBUS_MODEL_API_KEY")
    if missing:
        raise AgentError(f"agent '{name}' needs a model: set {', '.join(missing)}; {_COMMAND_HINT}")
    assert provider is not None and model is not None
    return ModelEndpoint(
        provider=provider,
        model=model,
        base_url=base_url,
        api_key=api_key,
        timeout=settings.model_timeout,
        max_retries=settings.model_max_retries,
        retry_base=settings.model_retry_base,
    )


def _tool_specs(names: tuple[str, ...] | None = None) -> list[ToolSpec]:
    return [
        ToolSpec(s["name"], s["description"], s["parameters"])
        for s in TOOL_SPECS
        if names is None or s["name"] in names
    ]


class _Conversation:
    """One phase's exchange with the model: tool calls answered until it replies in words."""

    def __init__(
        self,
        agent: ModelAgent,
        client: ModelClient,
        request: AgentRequest,
        tools: list[ToolSpec],
    ) -> None:
        self.agent = agent
        self.client = client
        self.request = request
        self.tools = tools
        self.names = {t.name for t in tools}
        self.system = render_system(request, [t.name for t in tools])
        self.messages: list[Message] = []
        self.clone = CloneTools(
            request.workdir,
            protected=lambda p: any(path_matches(p, g) for g in request.protected_paths),
            protected_patterns=request.protected_paths,
            max_read_lines=250,
        )
        self.changed_files = 0
        self.steps = 0
        self._last_call: str | None = None
        self._repeats = 0

    async def ask(self, text: str, *, editing: bool = False) -> str | None:
        """Send `text`; the model's final answer, or None when it ran out of steps or repeats."""
        self.messages.append(Message("user", text))
        nudges = 0
        while self.steps < self.agent.max_steps:
            self.steps += 1
            self.request.meter.check()
            reply = self._with_ids(
                await self.client.complete(self.system, self.messages, self.tools)
            )
            self.request.meter.add(reply.usage)
            self.messages.append(Message("assistant", reply.text, reply.tool_calls))
            if not reply.tool_calls:
                if editing and self.changed_files == 0 and nudges < _NUDGES:
                    nudges += 1
                    self.messages.append(Message("user", _NOTHING_CHANGED))
                    continue
                return reply.text
            stop = False
            for call in reply.tool_calls:
                result, failed, stop = await self._answer(call)
                self.messages.append(Message("tool", result, tool_call_id=call.id, is_error=failed))
            if stop:
                await self.request.log("the model kept repeating the same tool call: stopped")
                return None
        await self.request.log(f"the model used all {self.agent.max_steps} of its steps")
        return None

    def _with_ids(self, reply: ModelReply) -> ModelReply:
        # Some local servers leave tool call ids empty; every result must name its call.
        calls = tuple(
            call if call.id else replace(call, id=f"call_{self.steps}_{n}")
            for n, call in enumerate(reply.tool_calls)
        )
        return replace(reply, tool_calls=calls)

    async def _answer(self, call: ToolCall) -> tuple[str, bool, bool]:
        """The tool's result for the model, whether it failed, and whether to stop."""
        key = f"{call.name} {call.raw_arguments if call.arguments is None else call.arguments}"
        self._repeats = self._repeats + 1 if key == self._last_call else 1
        self._last_call = key
        if call.name not in self.names:
            return (
                f"there is no tool {call.name!r}; the tools are {', '.join(self.names)}",
                True,
                False,
            )
        if call.arguments is None:
            return (
                f"your call to {call.name} could not be read: {call.problem}; call it again with"
                " a JSON object of arguments",
                True,
                False,
            )
        try:
            result, failed = await self._run(call.name, call.arguments), False
        except ToolError as exc:
            result, failed = str(exc), True
        if len(result) > _MAX_RESULT:
            result = result[:_MAX_RESULT] + "\n[… cut: ask for less at a time]"
        if self._repeats >= _REPEAT_WARN:
            result += (
                f"\n[You have made this same call {self._repeats} times in a row and get the"
                " same answer: change your approach or finish.]"
            )
        return result, failed, self._repeats >= _REPEAT_STOP

    async def _run(self, name: str, arguments: dict) -> str:
        if name == "run_tests":
            await self.request.log("model: running the tests")
            return await self.agent.run_tests(self.request)
        if name in _WRITES:
            await self.request.log(f"model: {_WRITES[name]} {arguments.get('path')}")
        result = await asyncio.to_thread(self.clone.call, name, arguments)
        if name in _WRITES:
            self.changed_files += 1
        return result


_NOTHING_CHANGED = (
    "You have not changed any file yet. Use edit_file or create_file to make the change, then"
    " answer with a one-sentence summary and no tool call."
)
_PLAN_AGAIN = (
    "I could not read a plan from your answer ({error}). Answer again with JSON only, without"
    ' calling a tool: {{"plan": [{{"title": "...", "files": ["..."], "detail": "..."}}]}}'
)


class ModelAgent:
    """Plans, implements, fixes and reviews by talking to a model with tools."""

    def __init__(
        self,
        spec: AgentSpec,
        settings: Settings,
        runner: Runner,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.settings = settings
        self.runner = runner
        self.environ = dict(os.environ if environ is None else environ)
        self.max_steps = spec.max_steps or settings.agent_max_steps

    async def run(self, request: AgentRequest) -> AgentOutput:
        endpoint = endpoint_for(self.name, self.spec, self.settings, self.environ)
        async with httpx2.AsyncClient() as http:
            client = ModelClient(endpoint, http)
            output = await self._phase(client, request)
        await request.log(
            f"model {endpoint.model}: {client.calls} request{'s' if client.calls != 1 else ''};"
            f" task total {request.meter.input_tokens} input and"
            f" {request.meter.output_tokens} output tokens"
        )
        return output

    async def _phase(self, client: ModelClient, request: AgentRequest) -> AgentOutput:
        prompt = render_prompt(request)
        if request.phase == "plan":
            talk = _Conversation(self, client, request, _tool_specs(_READ_ONLY))
            answer = await talk.ask(prompt)
            try:
                return AgentOutput(plan=parse_plan(self._answered(answer, request)))
            except AgentError as exc:
                answer = await talk.ask(_PLAN_AGAIN.format(error=exc))
                try:
                    return AgentOutput(plan=parse_plan(self._answered(answer, request)))
                except AgentError as again:
                    raise AgentError(f"after one retry, {again}") from None
        if request.phase == "review":
            talk = _Conversation(self, client, request, _tool_specs(_READ_ONLY))
            answer = await talk.ask(prompt)
            return AgentOutput(review=parse_review(self._answered(answer, request)))
        tools = _tool_specs()
        if request.test_command:
            tools.append(RUN_TESTS)
        talk = _Conversation(self, client, request, tools)
        summary = await talk.ask(prompt, editing=True)
        if summary:
            await request.log(f"model: {summary.strip().splitlines()[0][:300]}")
        return AgentOutput()

    def _answered(self, answer: str | None, request: AgentRequest) -> str:
        if answer is None:
            raise AgentError(
                f"agent '{self.name}' gave no answer in {request.phase} within its"
                f" {self.max_steps} steps"
            )
        return answer

    async def run_tests(self, request: AgentRequest) -> str:
        """The `run_tests` tool: the repository's test command, as VERIFYING runs it."""
        if not request.test_command:
            return "this repository has no test command"
        result = await self.runner.run(
            ["sh", "-c", request.test_command],
            cwd=request.workdir,
            timeout=self.settings.test_timeout,
            env=EnvPolicy(home=request.task_dir / "home", extra={"CI": "true"}),
            confinement=Confinement(request.workdir),
        )
        verdict = "timed out" if result.timed_out else f"exit code {result.exit_code}"
        return f"{verdict}\n{trim_output(result.output, 6000)}"
