"""Reading what agents answer, and the server's agent configuration (DESIGN §4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.agents.base import parse_plan, parse_review
from bot.agents.config import (
    BUILTIN,
    DEFAULT_CONFIG,
    AgentSpec,
    load_agent_config,
    parse_agent_config,
)
from bot.errors import AgentError, ConfigError


def step(title: str, files: list[str] | None = None, detail: str = "") -> dict[str, object]:
    return {"title": title, "files": files or [], "detail": detail}


def test_plan_of_strings():
    output = json.dumps({"plan": ["Add multiply()", "  Test it  "]})
    assert parse_plan(output) == [step("Add multiply()"), step("Test it")]


def test_plan_of_step_objects():
    output = json.dumps(
        {
            "plan": [
                {"title": "Add multiply()", "files": ["calc.py"], "detail": "a * b"},
                {"step": "Document it", "files": "README.md"},
                {"description": "Test it", "files": ["tests/test_calc.py", 3], "detail": [1]},
            ]
        }
    )
    assert parse_plan(output) == [
        step("Add multiply()", ["calc.py"], "a * b"),
        step("Document it", ["README.md"]),
        step("Test it", ["tests/test_calc.py"], "[1]"),
    ]


def test_plan_items_without_a_title_are_dropped():
    output = json.dumps({"plan": ["", 7, {"files": ["x"]}, {"title": "  "}, "Keep me"]})
    assert parse_plan(output) == [step("Keep me")]


def test_plan_json_on_its_own_line_after_chatter():
    output = 'Sure! I looked at the repository.\n{"plan": ["Add multiply()"]}\n'
    assert parse_plan(output) == [step("Add multiply()")]


def test_pretty_printed_plan_json_after_chatter():
    body = json.dumps({"plan": [{"title": "Add multiply()", "files": ["calc.py"]}]}, indent=2)
    output = f"Here is my plan:\n\n{body}\n\nLet me know."
    assert parse_plan(output) == [step("Add multiply()", ["calc.py"])]


def test_plan_as_a_markdown_list():
    output = "Plan:\n\n1. Add multiply()\n2) Test it\n- [ ] Update docs\n* [x] Lint\n+ Ship\n"
    titles = [s["title"] for s in parse_plan(output)]
    assert titles == ["Add multiply()", "Test it", "Update docs", "Lint", "Ship"]


def test_markdown_plan_is_used_when_json_has_no_plan():
    output = '{"thoughts": "easy"}\n- Add multiply()\n'
    assert parse_plan(output) == [step("Add multiply()")]


@pytest.mark.parametrize("plan", [[], ["", "  "], [{"files": ["a.py"]}]])
def test_empty_plan_is_an_agent_error(plan):
    with pytest.raises(AgentError, match="plan has no steps"):
        parse_plan(json.dumps({"plan": plan}))


def test_garbage_is_an_agent_error_that_says_what_was_expected():
    with pytest.raises(AgentError) as caught:
        parse_plan("I am sorry, I cannot do that.")
    message = str(caught.value)
    assert 'expected JSON {"plan": [...]} or a markdown list' in message
    assert "I am sorry, I cannot do that." in message


def test_no_output_is_an_agent_error():
    with pytest.raises(AgentError, match=r"got: \(nothing\)"):
        parse_plan("  \n")


def test_agent_error_quotes_only_the_start_of_long_garbage():
    with pytest.raises(AgentError) as caught:
        parse_plan("x" * 5000)
    assert len(str(caught.value)) < 500


def test_review_json():
    output = json.dumps(
        {
            "summary": "Looks fine.",
            "comments": [{"path": "calc.py", "line": 3, "body": "Name it `product`?"}],
        }
    )
    assert parse_review(output) == {
        "summary": "Looks fine.",
        "comments": [
            {"path": "calc.py", "line": 3, "body": "Name it `product`?", "blocking": False}
        ],
        "blocking": False,
    }


def test_review_json_after_chatter():
    output = 'Reviewing now.\n{"summary": "ok", "comments": []}'
    assert parse_review(output) == {"summary": "ok", "comments": [], "blocking": False}


def test_invalid_review_comments_are_dropped():
    comments = [
        "not an object",
        {"line": 1, "body": "no path"},
        {"path": "a.py", "line": 1},
        {"path": "a.py", "line": 1, "body": 5},
        {"path": "a.py", "line": 2, "body": "kept"},
    ]
    review = parse_review(json.dumps({"summary": "s", "comments": comments}))
    assert review["comments"] == [{"path": "a.py", "line": 2, "body": "kept", "blocking": False}]


@pytest.mark.parametrize("line", [0, -3, "4", True, 1.5, None])
def test_review_comment_without_a_usable_line_is_about_the_file(line):
    review = parse_review(json.dumps({"comments": [{"path": "a.py", "line": line, "body": "b"}]}))
    assert review["comments"][0]["line"] is None
    assert review["summary"] == ""


def test_blocking_comment_makes_the_review_blocking():
    comments = [
        {"path": "a.py", "line": 1, "body": "nit"},
        {"path": "a.py", "line": 2, "body": "this breaks callers", "blocking": True},
        {"path": "a.py", "line": 3, "body": "truthy is not true", "blocking": "yes"},
    ]
    review = parse_review(json.dumps({"summary": "s", "comments": comments}))
    assert [c["blocking"] for c in review["comments"]] == [False, True, False]
    assert review["blocking"] is True


def test_review_marked_blocking_at_the_top():
    assert parse_review('{"summary": "no", "blocking": true}')["blocking"] is True
    assert parse_review('{"summary": "no", "blocking": "yes"}')["blocking"] is False


def test_plain_text_review_is_the_summary():
    text = "  The change looks right.\nOne nit: naming.  \n"
    assert parse_review(text) == {
        "summary": "The change looks right.\nOne nit: naming.",
        "comments": [],
        "blocking": False,
    }


AIDER_CONFIG = """
default_agent = "aider"

[agents.builtin]
kind = "model"

[agents.aider]
kind = "command"
command = ["aider", "--yes-always", "--message", "{prompt}"]
env = { AIDER_MODEL = "sonnet" }
pass_env = ["ANTHROPIC_API_KEY"]
writable_paths = ["/tmp/aider-cache"]
timeout = 600
"""


def test_valid_agent_configuration():
    config = parse_agent_config(AIDER_CONFIG, "agents.toml")
    assert config.default_agent == "aider"
    assert config.agents == {
        "builtin": AgentSpec("builtin", "model"),
        "aider": AgentSpec(
            name="aider",
            kind="command",
            command=("aider", "--yes-always", "--message", "{prompt}"),
            env={"AIDER_MODEL": "sonnet"},
            pass_env=("ANTHROPIC_API_KEY",),
            writable_paths=("/tmp/aider-cache",),
            timeout=600.0,
        ),
    }


def test_builtin_agent_is_always_present():
    config = parse_agent_config(
        'default_agent = "mine"\n[agents.mine]\nkind = "command"\ncommand = ["./agent"]\n', "a.toml"
    )
    assert config.agents[BUILTIN] == AgentSpec(BUILTIN, "model")
    assert set(config.agents) == {"mine", BUILTIN}


def test_empty_configuration_is_the_builtin_agent():
    assert parse_agent_config("", "a.toml") == DEFAULT_CONFIG
    assert DEFAULT_CONFIG.default_agent == BUILTIN


def test_configuration_file_absent_means_the_default():
    assert load_agent_config(None) == DEFAULT_CONFIG


def test_unreadable_configuration_file_names_the_setting(tmp_path: Path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="NIMBUS_CONFIG") as caught:
        load_agent_config(missing)
    assert str(missing) in str(caught.value)


def test_configuration_file_is_read(tmp_path: Path):
    path = tmp_path / "agents.toml"
    path.write_text(AIDER_CONFIG)
    assert load_agent_config(path).default_agent == "aider"


def test_invalid_toml_names_the_file():
    with pytest.raises(ConfigError, match=r"agents\.toml is not valid TOML"):
        parse_agent_config("[agents.x\nkind=", "agents.toml")


def test_unknown_kind_names_the_agent_and_the_kind():
    with pytest.raises(ConfigError) as caught:
        parse_agent_config('[agents.gpt]\nkind = "llm"\n', "agents.toml")
    message = str(caught.value)
    assert "agents.toml" in message
    assert "[agents.gpt]" in message
    assert "'llm'" in message


def test_missing_kind_is_refused():
    with pytest.raises(ConfigError, match=r"\[agents\.x\]: kind must be"):
        parse_agent_config("[agents.x]\ncommand = ['a']\n", "a.toml")


def test_command_agent_without_command_is_refused():
    with pytest.raises(ConfigError, match=r"\[agents\.aider\] command must be a list of strings"):
        parse_agent_config('[agents.aider]\nkind = "command"\n', "a.toml")


def test_command_agent_with_empty_command_is_refused():
    with pytest.raises(ConfigError, match=r"\[agents\.aider\]: command must name a program"):
        parse_agent_config('[agents.aider]\nkind = "command"\ncommand = []\n', "a.toml")


@pytest.mark.parametrize("env", ["env = { A = 1 }", 'env = "A=1"', "env = ['A']"])
def test_env_that_is_not_a_table_of_strings_is_refused(env):
    text = f'[agents.x]\nkind = "command"\ncommand = ["a"]\n{env}\n'
    with pytest.raises(ConfigError, match=r"\[agents\.x\] env must be a table of strings"):
        parse_agent_config(text, "a.toml")


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('pass_env = "HOME"', "pass_env"),
        ("writable_paths = [1]", "writable_paths"),
        ("timeout = 0", "timeout"),
        ("timeout = -5", "timeout"),
        ('timeout = "60"', "timeout"),
        ("timeout = true", "timeout"),
    ],
)
def test_other_wrong_values_name_the_key(line, key):
    text = f'[agents.x]\nkind = "command"\ncommand = ["a"]\n{line}\n'
    with pytest.raises(ConfigError, match=rf"\[agents\.x\] {key}"):
        parse_agent_config(text, "a.toml")


def test_agent_that_is_not_a_table_is_refused():
    with pytest.raises(ConfigError, match=r"\[agents\.x\] must be a table"):
        parse_agent_config("[agents]\nx = 1\n", "a.toml")


def test_default_agent_not_defined_names_it_and_the_agents_that_exist():
    text = 'default_agent = "claude"\n[agents.aider]\nkind = "command"\ncommand = ["aider"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_agent_config(text, "agents.toml")
    message = str(caught.value)
    assert "'claude'" in message
    assert "aider" in message
    assert BUILTIN in message
