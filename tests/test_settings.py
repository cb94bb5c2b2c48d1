"""Server settings read once from `NIMBUS_*` variables; bad values name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.settings import DEFAULT_GIT_AUTHOR, Settings, is_loopback


def test_defaults(tmp_path: Path):
    settings = Settings.from_env({"NIMBUS_DATA_DIR": str(tmp_path)})
    assert settings.data_dir == tmp_path
    assert settings.db_path == tmp_path / "nimbus.db"
    assert settings.tasks_dir == tmp_path / "tasks"
    assert settings.server_skills_dir == tmp_path / "skills"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.api_key is None
    assert settings.max_concurrent_tasks == 4
    assert settings.lease_seconds == 60.0
    assert settings.poll_seconds == 1.0
    assert settings.config_path is None
    assert settings.allow_local_repos is None
    assert settings.git_author == DEFAULT_GIT_AUTHOR == "Nimbus <nimbus@localhost>"
    assert (settings.git_timeout, settings.setup_timeout) == (300.0, 900.0)
    assert (settings.test_timeout, settings.agent_timeout) == (900.0, 1800.0)
    assert settings.model_provider is settings.model is settings.model_api_key is None
    assert settings.log_level == "info"
    assert settings.secrets == ()


def test_data_dir_has_a_default_outside_the_environment_given():
    assert Settings.from_env({}).data_dir.name == "nimbus"


def test_every_setting_is_read(tmp_path: Path):
    settings = Settings.from_env(
        {
            "NIMBUS_DATA_DIR": str(tmp_path / "d"),
            "NIMBUS_DATABASE_PATH": str(tmp_path / "x.db"),
            "NIMBUS_HOST": "0.0.0.0",
            "NIMBUS_PORT": "9000",
            "NIMBUS_API_KEY": "  key-123456  ",
            "NIMBUS_MAX_CONCURRENT_TASKS": "2",
            "NIMBUS_LEASE_SECONDS": "30",
            "NIMBUS_POLL_SECONDS": "0.25",
            "NIMBUS_CONFIG": str(tmp_path / "agents.toml"),
            "NIMBUS_SKILLS_DIR": str(tmp_path / "skills"),
            "NIMBUS_GIT_AUTHOR": "Bot <bot@example.com>",
            "NIMBUS_TEST_TIMEOUT": "120.5",
            "NIMBUS_WORKER_ID": "worker-a",
            "NIMBUS_MODEL_PROVIDER": "anthropic",
            "NIMBUS_MODEL": "claude",
            "NIMBUS_MODEL_BASE_URL": "https://api.example.com",
            "NIMBUS_LOG_LEVEL": "DEBUG",
        }
    )
    assert settings.db_path == tmp_path / "x.db"
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.api_key == "key-123456"
    assert settings.max_concurrent_tasks == 2
    assert (settings.lease_seconds, settings.poll_seconds) == (30.0, 0.25)
    assert settings.config_path == tmp_path / "agents.toml"
    assert settings.server_skills_dir == tmp_path / "skills"
    assert settings.git_author == "Bot <bot@example.com>"
    assert settings.test_timeout == 120.5
    assert settings.worker_name == "worker-a"
    assert (settings.model_provider, settings.model) == ("anthropic", "claude")
    assert settings.log_level == "debug"


def test_blank_values_mean_unset():
    settings = Settings.from_env({"NIMBUS_API_KEY": "   ", "NIMBUS_PORT": "", "NIMBUS_HOST": " "})
    assert (settings.api_key, settings.port, settings.host) == (None, 8000, "127.0.0.1")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NIMBUS_PORT", "http"),
        ("NIMBUS_PORT", "80.5"),
        ("NIMBUS_PORT", "-1"),
        ("NIMBUS_MAX_CONCURRENT_TASKS", "four"),
        ("NIMBUS_MAX_CONCURRENT_TASKS", "0"),
        ("NIMBUS_LEASE_SECONDS", "1m"),
        ("NIMBUS_LEASE_SECONDS", "0.5"),
        ("NIMBUS_POLL_SECONDS", "fast"),
        ("NIMBUS_POLL_SECONDS", "0"),
        ("NIMBUS_GIT_TIMEOUT", "x"),
        ("NIMBUS_SETUP_TIMEOUT", "15m"),
        ("NIMBUS_TEST_TIMEOUT", "-3"),
        ("NIMBUS_AGENT_TIMEOUT", "half an hour"),
        ("NIMBUS_ALLOW_LOCAL_REPOS", "maybe"),
        ("NIMBUS_ALLOW_LOCAL_REPOS", "2"),
    ],
)
def test_malformed_value_names_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize("name", ["NIMBUS_LEASE_SECONDS", "NIMBUS_TEST_TIMEOUT"])
def test_not_a_number_is_refused(name):
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "nan"})


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", "on", " On "])
def test_true_values(value):
    assert Settings.from_env({"NIMBUS_ALLOW_LOCAL_REPOS": value}).allow_local_repos is True


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off"])
def test_false_values(value):
    assert Settings.from_env({"NIMBUS_ALLOW_LOCAL_REPOS": value}).allow_local_repos is False


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_local_repos_allowed_by_default_on_loopback(host):
    assert Settings.from_env({"NIMBUS_HOST": host}).local_repos_allowed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "nimbus.example.com"])
def test_local_repos_refused_by_default_beyond_loopback(host):
    assert not Settings.from_env({"NIMBUS_HOST": host}).local_repos_allowed


def test_explicit_local_repos_setting_wins_over_the_host():
    env = {"NIMBUS_HOST": "0.0.0.0", "NIMBUS_ALLOW_LOCAL_REPOS": "true"}
    assert Settings.from_env(env).local_repos_allowed
    env = {"NIMBUS_HOST": "127.0.0.1", "NIMBUS_ALLOW_LOCAL_REPOS": "false"}
    assert not Settings.from_env(env).local_repos_allowed


def test_is_loopback():
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert not is_loopback("localhost.example.com")
    assert not is_loopback("")


def test_secrets_are_the_keys_that_are_set():
    env = {"NIMBUS_API_KEY": "api-key-1", "NIMBUS_MODEL_API_KEY": "model-key-2"}
    assert set(Settings.from_env(env).secrets) == {"api-key-1", "model-key-2"}
    assert Settings.from_env({"NIMBUS_MODEL_API_KEY": "model-key-2"}).secrets == ("model-key-2",)


def test_worker_name_is_stable_without_a_worker_id(tmp_path: Path):
    a = Settings.from_env({"NIMBUS_DATA_DIR": str(tmp_path)})
    b = Settings.from_env({"NIMBUS_DATA_DIR": str(tmp_path)})
    assert a.worker_name == b.worker_name
    assert str(tmp_path.resolve()) in a.worker_name


def test_settings_are_frozen_and_overridable(tmp_path: Path):
    settings = Settings.from_env({"NIMBUS_DATA_DIR": str(tmp_path)})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]
    assert settings.with_overrides(port=1).port == 1
    assert settings.port == 8000
