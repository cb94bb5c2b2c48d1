"""`.github/nimbus.yml`: defaults, merging, and errors that name the key (DESIGN §5)."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.repo_config import AutoReview, RepoConfig, parse_repo_config, path_matches


def parse(text: str | None) -> RepoConfig:
    config, warnings = parse_repo_config(text)
    assert warnings == []
    return config


def test_defaults():
    config = RepoConfig()
    assert config.test_command is None
    assert config.setup_command is None
    assert config.max_fix_attempts == 3
    assert config.protected_paths == (".github/workflows/**",)
    assert config.branch_prefix == "nimbus/"
    assert config.draft_pr is True
    assert config.auto_review == AutoReview(enabled=False)
    assert config.setup_network is True


@pytest.mark.parametrize("text", [None, "", "   \n", "# only a comment\n", "~\n"])
def test_absent_or_empty_file_gives_the_defaults(text):
    assert parse(text) == RepoConfig()


def test_given_settings_are_merged_over_the_defaults():
    config = parse("test_command: make check\nmax_fix_attempts: 1\ndraft_pr: false\n")
    assert config == RepoConfig(test_command="make check", max_fix_attempts=1, draft_pr=False)


def test_every_setting_can_be_set():
    config = parse(
        """
test_command: "  pytest -x  "
setup_command: pip install -e .
max_fix_attempts: 0
protected_paths: [secrets/**, "*.pem"]
branch_prefix: bot/
draft_pr: false
setup_network: false
auto_review:
  enabled: true
  drafts: true
  ignore_authors: [dependabot]
  paths_ignore: [docs/**]
"""
    )
    assert config == RepoConfig(
        test_command="pytest -x",
        setup_command="pip install -e .",
        max_fix_attempts=0,
        protected_paths=("secrets/**", "*.pem"),
        branch_prefix="bot/",
        draft_pr=False,
        setup_network=False,
        auto_review=AutoReview(True, True, ("dependabot",), ("docs/**",)),
    )
    assert config.to_json()["auto_review"]["ignore_authors"] == ("dependabot",)


def test_blank_or_null_test_command_means_detect_one():
    assert parse("test_command: '   '\n").test_command is None
    assert parse("test_command: null\n").test_command is None


def test_a_single_protected_path_may_be_written_as_text():
    assert parse("protected_paths: infra/**\n").protected_paths == ("infra/**",)


def test_empty_protected_paths_protects_nothing():
    config = parse("protected_paths: []\n")
    assert not config.is_protected(".github/workflows/ci.yml")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("test_command: 5", "test_command"),
        ("test_command: [pytest]", "test_command"),
        ("setup_command: {a: 1}", "setup_command"),
        ("max_fix_attempts: three", "max_fix_attempts"),
        ("max_fix_attempts: '3'", "max_fix_attempts"),
        ("max_fix_attempts: true", "max_fix_attempts"),
        ("max_fix_attempts: 2.5", "max_fix_attempts"),
        ("max_fix_attempts: -1", "max_fix_attempts"),
        ("max_fix_attempts: 21", "max_fix_attempts"),
        ("max_fix_attempts: null", "max_fix_attempts"),
        ("protected_paths: 5", "protected_paths"),
        ("protected_paths: [a, 1]", "protected_paths"),
        ("protected_paths: {a: b}", "protected_paths"),
        ("branch_prefix: 7", "branch_prefix"),
        ("branch_prefix: null", "branch_prefix"),
        ("draft_pr: 'yes please'", "draft_pr"),
        ("draft_pr: 1", "draft_pr"),
        ("draft_pr: null", "draft_pr"),
        ("setup_network: 0", "setup_network"),
        ("auto_review: sometimes", "auto_review"),
        ("auto_review: [a]", "auto_review"),
        ("auto_review: {enabled: maybe}", "auto_review.enabled"),
        ("auto_review: {drafts: 1}", "auto_review.drafts"),
        ("auto_review: {ignore_authors: 5}", "auto_review.ignore_authors"),
        ("auto_review: {paths_ignore: [docs, 3]}", "auto_review.paths_ignore"),
    ],
)
def test_wrong_type_error_names_the_key(text, key):
    with pytest.raises(ConfigError) as caught:
        parse_repo_config(text + "\n")
    message = str(caught.value)
    assert f"`{key}`" in message
    assert ".github/nimbus.yml" in message


def test_invalid_yaml_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\.github/nimbus\.yml is not valid YAML"):
        parse_repo_config("test_command: [unclosed\n")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str")])
def test_file_that_is_not_a_mapping_is_refused(text, kind):
    with pytest.raises(ConfigError, match=f"must be a mapping of settings, got {kind}"):
        parse_repo_config(text)


def test_unknown_settings_are_warned_about_and_the_rest_still_applies():
    config, warnings = parse_repo_config("tset_command: pytest\nzzz: 1\ndraft_pr: false\n")
    assert config == RepoConfig(draft_pr=False)
    assert warnings == [
        ".github/nimbus.yml: unknown setting `tset_command` ignored",
        ".github/nimbus.yml: unknown setting `zzz` ignored",
    ]


def test_unknown_keys_that_yaml_reads_as_non_text_are_warned_about():
    """YAML 1.1 reads `on:` as the boolean true, as in a copied workflow file."""
    config, warnings = parse_repo_config("on: push\nretries: 2\n")
    assert config == RepoConfig()
    assert len(warnings) == 2
    assert any("`retries`" in w for w in warnings)


def test_auto_review_true_turns_it_on_with_defaults():
    assert parse("auto_review: true\n").auto_review == AutoReview(enabled=True)


def test_auto_review_false_keeps_it_off():
    assert parse("auto_review: false\n").auto_review == AutoReview(enabled=False)


def test_auto_review_mapping_turns_it_on_unless_it_says_otherwise():
    assert parse("auto_review: {}\n").auto_review == AutoReview(enabled=True)
    config = parse("auto_review:\n  enabled: false\n  drafts: true\n")
    assert config.auto_review == AutoReview(enabled=False, drafts=True)


def test_auto_review_lists_may_be_single_strings():
    config = parse("auto_review: {ignore_authors: renovate, paths_ignore: '*.md'}\n")
    assert config.auto_review.ignore_authors == ("renovate",)
    assert config.auto_review.paths_ignore == ("*.md",)


@pytest.mark.parametrize(
    "path",
    [
        ".github/workflows/ci.yml",
        ".github/workflows/nested/deploy.yaml",
        ".github/workflows",
    ],
)
def test_workflows_are_protected_by_default(path):
    assert RepoConfig().is_protected(path)


@pytest.mark.parametrize(
    "path",
    [
        ".github/nimbus.yml",
        ".github/workflows-old/ci.yml",
        ".github/workflowsci.yml",
        "src/.github/workflows/ci.yml",
        "README.md",
    ],
)
def test_other_paths_are_not_protected_by_default(path):
    assert not RepoConfig().is_protected(path)


def test_path_patterns():
    assert path_matches("infra/prod/main.tf", "infra/**")
    assert path_matches("key.pem", "*.pem")
    assert not path_matches("infrastructure/x", "infra/**")
    assert not path_matches("key.pem.txt", "*.pem")
    assert path_matches("Makefile", "Makefile")
