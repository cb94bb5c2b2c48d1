"""The built-in model agent, end to end: real tasks on real repositories, fake model servers."""

from __future__ import annotations

import json

import pytest

from tests.conftest import git
from tests.fakes.models import Drop, Fail, FakeAnthropic, FakeOpenAI, Reply, ToolCall, running

PLAN = {"plan": [{"title": "Add multiply()", "files": ["calc.py"], "detail": "a * b"}]}
TEST = "from calc import multiply\n\n\ndef test_multiply():\n    assert multiply(3, 4) == 12\n"


def edit_multiply(body: str = "a * b") -> ToolCall:
    return ToolCall(
        "edit_file",
        {
            "path": "calc.py",
            "search": "    return a + b\n",
            "replace": f"    return a + b\n\n\ndef multiply(a, b):\n    return {body}\n",
        },
    )


def plan_reply() -> Reply:
    return Reply(json.dumps(PLAN))


def implement_replies(body: str = "a * b") -> list[Reply]:
    return [
        Reply("Let me look.", tool_calls=[ToolCall("read_file", {"path": "calc.py"})]),
        Reply(tool_calls=[edit_multiply(body)]),
        Reply(
            tool_calls=[
                ToolCall("create_file", {"path": "tests/test_multiply.py", "content": TEST})
            ]
        ),
        Reply("Added multiply() with a test."),
    ]


def review_reply(blocking: bool = False) -> Reply:
    comment = {"path": "calc.py", "line": 5, "body": "fine", "blocking": blocking}
    return Reply(json.dumps({"summary": "Looks right.", "comments": [comment]}))


def tool_results(request: dict) -> list[str]:
    """The tool results a request carries, in either provider's format."""
    found = []
    for message in request["messages"]:
        if message["role"] == "tool":
            found.append(message["content"])
        elif isinstance(message.get("content"), list):
            found += [
                block["content"] for block in message["content"] if block["type"] == "tool_result"
            ]
    return found


@pytest.fixture
async def openai():
    async with running(FakeOpenAI()) as fake:
        yield fake
    assert fake.problems == []


@pytest.fixture
async def anthropic():
    async with running(FakeAnthropic()) as fake:
        yield fake
    assert fake.problems == []


@pytest.fixture(params=["openai", "anthropic"])
async def either(request):
    """Each provider in turn."""
    fake = FakeOpenAI() if request.param == "openai" else FakeAnthropic()
    async with running(fake):
        yield fake
    assert fake.problems == []


def with_model(settings, fake, **more):
    provider = "anthropic" if isinstance(fake, FakeAnthropic) else "openai"
    return settings.with_overrides(
        model_provider=provider,
        model="claude-test" if provider == "anthropic" else "gpt-test",
        model_base_url=fake.url,
        model_api_key=fake.api_key,
        model_retry_base=0.01,
        model_max_retries=3,
        **more,
    )


async def run_task(start_server, settings, remote, **fields):
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, agent_name="builtin", auto_approve=True, **fields)
    return server, await server.until_ended(task["id"])


async def test_a_task_succeeds_first_time(either, start_server, settings, remote):
    fake = either
    provider = "anthropic" if isinstance(fake, FakeAnthropic) else "openai"
    fake.script(plan_reply(), *implement_replies(), review_reply())
    server, task = await run_task(start_server, with_model(settings, fake), remote)
    assert task["status"] == "completed", task
    assert task["plan"][0]["title"] == "Add multiply()"
    assert task["usage"] == {"input_tokens": 600, "output_tokens": 120}
    assert "return a * b" in git("show", f"nimbus/{task['id']}:calc.py", cwd=remote)
    assert fake.remaining == 0
    first = fake.requests[0]
    tools = [t["function"]["name"] if provider == "openai" else t["name"] for t in first["tools"]]
    assert tools == ["list_files", "read_file", "search"]  # planning only reads
    implement = fake.requests[1]
    names = {
        t["function"]["name"] if provider == "openai" else t["name"] for t in implement["tools"]
    }
    assert {"edit_file", "create_file", "run_tests"} <= names
    assert "def add(a, b):" in tool_results(fake.requests[2])[0]
    logs = [e["message"] for e in await server.events(task["id"]) if e["event_type"] == "log"]
    assert "model: editing calc.py" in logs
    assert "model: writing tests/test_multiply.py" in logs


async def test_failing_tests_are_fixed_with_the_failure_in_the_prompt(
    openai, start_server, settings, remote
):
    def fix(request: dict) -> Reply:
        prompt = request["messages"][1]["content"]
        assert "test_multiply" in prompt and "assert 7 == 12" in prompt
        assert "+    return a + b" in prompt  # the current diff
        return Reply(
            tool_calls=[
                ToolCall(
                    "edit_file",
                    {
                        "path": "calc.py",
                        "search": "def multiply(a, b):\n    return a + b",
                        "replace": "def multiply(a, b):\n    return a * b",
                    },
                )
            ]
        )

    openai.script(plan_reply(), *implement_replies("a + b"), fix, Reply("Fixed."), review_reply())
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    assert task["fix_attempts"] == 1
    assert task["verification"]["passed"] is True


async def test_bad_tool_calls_are_fed_back_and_the_task_goes_on(
    openai, start_server, settings, remote
):
    openai.script(
        plan_reply(),
        Reply(
            tool_calls=[
                ToolCall("edit_file", '{"path": "calc.py", "search": '),
                ToolCall("launch_missiles", {}),
                ToolCall("read_file", {"path": "../../etc/passwd"}),
                ToolCall(
                    "create_file", {"path": ".github/workflows/evil.yml", "content": "on: push"}
                ),
            ]
        ),
        *implement_replies()[1:],
        review_reply(),
    )
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    bad, missing, outside, protected = tool_results(openai.requests[2])
    assert "could not be read" in bad and "JSON" in bad
    assert "there is no tool 'launch_missiles'" in missing
    assert "outside" in outside
    assert "protected" in protected


async def test_a_search_that_misses_is_reported_then_corrected(
    openai, start_server, settings, remote
):
    miss = ToolCall("edit_file", {"path": "calc.py", "search": "return a - b", "replace": "x"})
    openai.script(plan_reply(), Reply(tool_calls=[miss]), *implement_replies()[1:], review_reply())
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    (result,) = tool_results(openai.requests[2])
    assert "not found" in result
    assert "return a + b" in result  # the closest region is shown to correct the search


async def test_a_rate_limit_is_waited_out(openai, start_server, settings, remote):
    openai.script(Fail(429, retry_after=0.05), plan_reply(), *implement_replies(), review_reply())
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    assert len(openai.requests) == 7


async def test_a_provider_that_keeps_failing_ends_the_task_clearly(
    openai, start_server, settings, remote
):
    openai.script(*[Fail(500)] * 4)
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "failed"
    assert task["error"].startswith("PLANNING: the openai model 'gpt-test' at http://127.0.0.1:")
    assert "kept failing after 4 attempts; last: HTTP 500" in task["error"]


async def test_the_token_budget_ends_the_task(openai, start_server, settings, remote):
    openai.script(plan_reply(), *implement_replies(), review_reply())
    _, task = await run_task(
        start_server, with_model(settings, openai, max_tokens_per_task=250), remote
    )
    assert task["status"] == "failed"
    assert task["error"].startswith("IMPLEMENTING: the task used 360 tokens")
    assert "NIMBUS_MAX_TOKENS_PER_TASK" in task["error"]
    assert task["usage"] == {"input_tokens": 300, "output_tokens": 60}


async def test_a_wrong_key_names_the_setting(openai, start_server, settings, remote):
    settings = with_model(settings, openai).with_overrides(model_api_key="sk-wrong")
    _, task = await run_task(start_server, settings, remote)
    assert "refused the API key (HTTP 401" in task["error"]
    assert "NIMBUS_MODEL_API_KEY" in task["error"]
    assert "sk-wrong" not in task["error"]


async def test_an_unknown_model_names_the_setting(openai, start_server, settings, remote):
    settings = with_model(settings, openai).with_overrides(model="gpt-nope")
    _, task = await run_task(start_server, settings, remote)
    assert "was not found (HTTP 404" in task["error"]
    assert "NIMBUS_MODEL" in task["error"]


async def test_a_plan_in_prose_gets_one_retry(openai, start_server, settings, remote):
    openai.script(
        Reply("I would add a multiply function."),
        plan_reply(),
        *implement_replies(),
        review_reply(),
    )
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    assert "could not read a plan" in openai.requests[1]["messages"][-1]["content"]


async def test_a_plan_that_stays_unreadable_fails_clearly(openai, start_server, settings, remote):
    openai.script(Reply("Sure, let me think."), Reply("Still thinking."))
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["error"].startswith("PLANNING: after one retry, could not read a plan")


async def test_the_same_call_over_and_over_is_stopped(openai, start_server, settings, remote):
    again = Reply(tool_calls=[ToolCall("read_file", {"path": "calc.py"})])
    openai.script(plan_reply(), *[again] * 6)
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["error"] == "IMPLEMENTING: the agent finished implement without changing any file"
    assert "same call 3 times" in tool_results(openai.requests[4])[-1]
    assert openai.remaining == 0


async def test_prose_instead_of_edits_is_nudged_once(openai, start_server, settings, remote):
    openai.script(
        plan_reply(),
        Reply("I will now add the function."),
        *implement_replies()[1:],
        review_reply(),
    )
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    assert "You have not changed any file yet" in openai.requests[2]["messages"][-1]["content"]


async def test_a_blocking_review_goes_back_to_fixing_once(openai, start_server, settings, remote):
    openai.script(
        plan_reply(),
        *implement_replies(),
        review_reply(blocking=True),
        Reply(
            tool_calls=[
                ToolCall(
                    "edit_file",
                    {
                        "path": "calc.py",
                        "search": "    return a * b\n",
                        "replace": "    return a * b  # product\n",
                    },
                )
            ]
        ),
        Reply("Done."),
        review_reply(),
    )
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
    assert "# product" in git("show", f"nimbus/{task['id']}:calc.py", cwd=remote)


async def test_a_dropped_connection_is_retried(openai, start_server, settings, remote):
    openai.script(Drop(), plan_reply(), *implement_replies(), review_reply())
    _, task = await run_task(start_server, with_model(settings, openai), remote)
    assert task["status"] == "completed", task
