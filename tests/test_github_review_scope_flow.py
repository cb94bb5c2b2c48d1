"""PR reviews end to end: the head checkout, chunks in a budget, check runs, pause and resume."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.conftest import write_agents
from tests.fakes.models import Fail, FakeOpenAI, Reply, ToolCall, running
from tests.test_github_flow import FILES, github_world
from tests.test_github_reviews import KEY, MULTIPLY, PR_URL, pull_request_event, registered
from tests.test_github_webhooks import SECRET
from tests.test_model_agent import tool_results, with_model


def source(n: int, lines: int = 30) -> str:
    return "".join(f"value_{n}_{i} = {i}\n" for i in range(lines))


# Six source files, a test, a lock file, a vendored file, a deleted file (deletion only).
LARGE_PR = {
    **{f"src/mod{n}.py": source(n) for n in range(6)},
    "tests/test_mod.py": source(99, 10),
    "package-lock.json": json.dumps({"packages": {f"p{i}": i for i in range(400)}}, indent=1),
    "vendor/lib/util.py": source(77),
    "tests/test_calc.py": None,
}


@pytest.fixture
def agent_trace(tmp_path, monkeypatch):
    """What each run of the scripted agent saw (its environment is read when the server starts)."""
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv("AGENT_TRACE", str(trace))
    return trace


@pytest.fixture
def fail_on_mod5(monkeypatch):
    """The scripted reviewer fails on the chunk holding src/mod5.py."""
    monkeypatch.setenv("AGENT_FAIL_ON_PATH", "src/mod5.py")


@pytest.fixture
def leaky_agent(tmp_path, monkeypatch):
    """The scripted reviewer writes the server's webhook secret into its summary."""
    words = tmp_path / "words.txt"
    words.write_text(f"by the way: {SECRET}")
    monkeypatch.setenv("AGENT_SAY_FILE", str(words))


@pytest.fixture
async def world(tmp_path, start_server, settings, agent_trace):
    """octo-org/hello with PR #1 (LARGE_PR) and the per-file reviewer as the default agent.

    Each source file's diff is 146 tokens: a chunk holds four; the budget takes the sources and the
    test (945) but not the vendored file as well (1,105).
    """
    async with github_world(
        tmp_path,
        start_server,
        settings,
        auto_review=True,
        config_path=write_agents(tmp_path / "review-agents.toml", default="reviewer"),
        review_budget_tokens=1_000,
        review_chunk_tokens=600,
    ) as made:
        made.commit_files("feature", LARGE_PR, new=True)
        made.github.add_pull("octo-org", "hello", "feature", title="Split the module")
        await registered(made)
        yield made


def seen(trace) -> list[dict]:
    return [json.loads(line) for line in trace.read_text().splitlines()]


async def review(world, **body) -> dict:
    response = await world.server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL, **body}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200, response.text
    return response.json()


def checks(world) -> list:
    return [r for r in world.github.check_runs.values() if r.name == "Nimbus review"]


async def test_a_large_pr_is_reviewed_in_chunks_source_first(world, agent_trace):
    result = await review(world)
    # Chunks are reviewed concurrently: the trace's order is the order they finished in.
    calls = sorted(seen(agent_trace), key=lambda call: "part 2 of 2" in call["prompt"])
    assert result["chunks"] == len(calls) == 2
    reviewed = {c["path"] for c in result["comments"]}
    assert reviewed == {f"src/mod{n}.py" for n in range(6)} | {"tests/test_mod.py"}
    # The agent works in a checkout of the PR head.
    assert "src/mod0.py" in calls[0]["files"] and "tests/test_calc.py" not in calls[0]["files"]
    assert "part 1 of 2" in calls[0]["prompt"] and "part 2 of 2" in calls[1]["prompt"]
    left_out = {entry["path"]: entry["reason"] for entry in result["not_reviewed"]}
    assert left_out == {
        "package-lock.json": "over the review's token budget",
        "vendor/lib/util.py": "over the review's token budget",
        "tests/test_calc.py": "only lines removed",
    }
    assert result["files"] == 10 and result["reviewed_files"] == 7
    summary = result["summary"]
    assert summary.startswith("Read 4 files.\n\nRead 3 files.\n\n### Not reviewed")
    assert (
        "Over the review's token budget (2 files):\n- `vendor/lib/util.py`\n- `package-lock.json`"
    ) in summary
    assert "Only lines removed (1 file):\n- `tests/test_calc.py`" in summary
    assert world.github.reviews == {} and checks(world) == []  # post: false posts nothing
    document = (await world.server.client.get("/openapi.json")).json()
    jsonschema.validate(result, document["components"]["schemas"]["Review"])


async def test_a_chunk_whose_agent_fails_is_named_and_the_rest_is_posted(fail_on_mod5, world):
    result = await review(world, post=True)
    (posted,) = world.github.reviews.values()
    assert {c["path"] for c in result["comments"]} == {f"src/mod{n}.py" for n in range(4)}
    failed = [e["path"] for e in result["not_reviewed"] if "agent failed" in e["reason"]]
    assert failed == ["src/mod4.py", "src/mod5.py", "tests/test_mod.py"]
    assert "The agent failed on its part" in posted.body and "`src/mod5.py`" in posted.body


async def test_a_secret_in_the_agents_words_never_reaches_the_pr(leaky_agent, world):
    result = await review(world, post=True)
    (posted,) = world.github.reviews.values()
    assert SECRET not in posted.body and SECRET not in json.dumps(result)
    assert "by the way: ***" in posted.body


async def test_a_pr_with_too_many_files_is_refused_by_the_api_and_skipped_in_a_check(
    tmp_path, start_server, settings
):
    async with github_world(
        tmp_path, start_server, settings, auto_review=True, review_max_files=5
    ) as world:
        world.commit_files("feature", LARGE_PR, new=True)
        world.github.add_pull("octo-org", "hello", "feature")
        await registered(world)
        response = await world.server.client.post(
            "/tasks/review/", json={"pr_url": PR_URL}, headers={"X-API-Key": KEY}
        )
        assert response.status_code == 422
        assert "10 files changed, more than the 5" in response.json()["error"]
        await pull_request_event(world, "opened")
        assert world.github.reviews == {}
        (check,) = checks(world)
        assert (check.status, check.conclusion) == ("completed", "neutral")
        assert check.output["title"].startswith("Review skipped: too large: 10 files changed")
        assert "NIMBUS_REVIEW_MAX_FILES" in check.output["summary"]


async def test_an_automatic_review_ends_in_a_successful_check(world):
    await pull_request_event(world, "opened")
    (posted,) = world.github.reviews.values()
    (check,) = checks(world)
    assert check.head_sha == (await world.get("/repos/octo-org/hello/pulls/1"))["head"]["sha"]
    assert (check.status, check.conclusion) == ("completed", "success")
    assert check.output["title"] == "Reviewed 7 of 10 files, 7 comments"
    assert f"/pull/1#pullrequestreview-{posted.id}" in check.output["summary"]


async def test_a_push_of_more_files_than_compare_lists_is_reviewed_whole(world, agent_trace):
    await pull_request_event(world, "opened")
    # 300 new files since the reviewed head: compare lists no more, so it cannot be trusted.
    world.commit_files("feature", {f"gen/f{i}.txt": f"v{i}\n" for i in range(300)})
    await pull_request_event(world, "synchronize")
    assert len(world.github.reviews) == 2
    second = seen(agent_trace)[2:]  # the first review made two requests
    shown = "".join(call["prompt"] for call in second)
    assert "src/mod0.py" in shown and "gen/f0.txt" in shown  # the whole PR, not only the push


async def test_paused_reviews_skip_pushes_in_a_neutral_check_until_resumed(world):
    await world.comment(1, "/nimbus pause")
    assert "Automatic reviews are paused" in world.bodies(1)[-1]
    await pull_request_event(world, "opened")
    assert world.github.reviews == {}
    (check,) = checks(world)
    assert check.conclusion == "neutral"
    assert "paused on this pull request (by @alice)" in check.output["title"]
    assert "/nimbus resume" in check.output["summary"]

    # Asking explicitly still reviews a paused PR.
    await world.comment(1, "/nimbus review")
    assert len(world.github.reviews) == 1

    await world.comment(1, "/nimbus resume")
    assert "on again" in world.bodies(1)[-1]
    world.commit_on("feature", "src/mod0.py", source(0) + "extra = 1\n")
    await pull_request_event(world, "synchronize")
    assert len(world.github.reviews) == 2


async def test_pause_on_an_issue_says_it_is_for_pull_requests(world):
    issue = world.github.add_issue("octo-org", "hello", "Bug", "")
    await world.comment(issue.number, "/nimbus pause")
    assert world.bodies(issue.number)[-1] == (
        "`/nimbus pause` works on pull requests, not on issues."
    )


async def test_a_github_rate_limit_is_a_neutral_check_and_a_later_ask_reviews(world):
    world.github.fail_next("GET", "/repos/octo-org/hello/pulls/1/files*", 403)
    await pull_request_event(world, "opened")
    assert world.github.reviews == {}
    (check,) = checks(world)
    assert check.conclusion == "neutral"
    assert check.output["title"].startswith("Review skipped: rate limited by GitHub")
    await world.comment(1, "/nimbus review")  # the same head: not counted as reviewed
    assert len(world.github.reviews) == 1


BASE = "".join(f"line_{i} = {i}\n" for i in range(1, 61))
OLD = "".join(f"name_{i} = {i}\n" for i in range(1, 21))


async def test_multi_hunk_and_renamed_files_are_anchored_and_far_lines_summarised(
    tmp_path, start_server, settings, agent_trace, monkeypatch
):
    monkeypatch.setenv("AGENT_FAR_COMMENT", "1")
    files = {**FILES, "src/long.py": BASE, "src/old_name.py": OLD}
    agents = write_agents(tmp_path / "review-agents.toml", default="reviewer")
    async with github_world(tmp_path, start_server, settings, files, config_path=agents) as world:
        changed = BASE.replace("line_5 = 5\n", "line_5 = 50\n").replace(
            "line_50 = ", "line_50 = 1 + "
        )
        renamed = OLD.replace("name_10 = 10\n", "name_10 = 100\n")
        world.commit_files(
            "feature",
            {"src/long.py": changed, "src/old_name.py": None, "src/new_name.py": renamed},
            new=True,
        )
        world.github.add_pull("octo-org", "hello", "feature")
        await registered(world)
        result = await review(world, post=True)
        (posted,) = world.github.reviews.values()
    placed = [(c.path, c.line) for c in world.github.review_comments.values()]
    # One comment on the first line of each hunk: two in long.py, one in the renamed file.
    assert sorted(placed) == [("src/long.py", 2), ("src/long.py", 47), ("src/new_name.py", 7)]
    assert result["files"] == 2
    assert "### Comments on lines outside the diff\n\n- src/long.py:100000 — far" in posted.body


@pytest.fixture
async def model_world(tmp_path, start_server, settings):
    """PR #1 (multiply added) reviewed by the built-in model agent against a fake OpenAI."""
    async with running(FakeOpenAI()) as fake:
        agents = write_agents(tmp_path / "model-agents.toml", default="builtin")
        overrides = with_model(settings, fake, config_path=agents, auto_review=True)
        async with github_world(tmp_path, start_server, overrides) as made:
            made.commit_on("feature", "calc.py", MULTIPLY, new=True)
            made.github.add_pull("octo-org", "hello", "feature", title="Add multiply")
            await registered(made)
            yield made, fake
        assert fake.problems == []


async def test_the_model_agent_reads_files_of_the_pr_head(model_world):
    world, fake = model_world
    answer = {"summary": "multiply is fine", "comments": [{"path": "calc.py", "line": 5,
              "body": "consider a docstring"}]}  # fmt: skip
    fake.script(
        Reply(tool_calls=[ToolCall("read_file", {"path": "calc.py"})]),
        Reply(json.dumps(answer)),
    )
    result = await review(world)
    assert "def multiply(a, b):" in tool_results(fake.requests[1])[0]
    assert result["comments"][0]["body"] == "consider a docstring"
    assert result["usage"] == {"input_tokens": 200, "output_tokens": 40}


async def test_a_model_rate_limit_is_a_neutral_check_and_the_api_says_try_later(model_world):
    world, fake = model_world
    fake.script(*[Fail(429, retry_after=0)] * 4)  # every attempt (3 retries)
    response = await world.server.client.post(
        "/tasks/review/", json={"pr_url": PR_URL}, headers={"X-API-Key": KEY}
    )
    assert response.status_code == 503
    assert "rate limited by the model provider" in response.json()["error"]
    fake.script(*[Fail(429, retry_after=0)] * 4)
    await pull_request_event(world, "opened")
    (check,) = checks(world)
    assert check.conclusion == "neutral"
    assert check.output["title"].startswith("Review skipped: rate limited by the model provider")
    assert "`/nimbus review` asks again." in check.output["summary"]
    assert world.github.reviews == {}
