"""Server settings, read once from the environment into a frozen object."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.errors import ConfigError
from bot.sandbox import MODES as SANDBOX_MODES

DEFAULT_GIT_AUTHOR = "Nimbus <nimbus@localhost>"


def _default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    home = env.get("HOME") or str(Path.home())
    return Path(env.get("XDG_DATA_HOME") or Path(home) / ".local" / "share") / "nimbus"


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    """Everything Nimbus reads from its environment."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_concurrent_tasks: int = 4
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    config_path: Path | None = None
    skills_dir: Path | None = None
    allow_local_repos: bool | None = None
    git_author: str = DEFAULT_GIT_AUTHOR
    git_timeout: float = 300.0
    setup_timeout: float = 900.0
    test_timeout: float = 900.0
    agent_timeout: float = 1800.0
    worker_id: str | None = None
    model_provider: str | None = None
    model: str | None = None
    model_base_url: str | None = None
    model_api_key: str | None = None
    model_timeout: float = 300.0
    model_max_retries: int = 5
    model_retry_base: float = 1.0
    max_tokens_per_task: int = 2_000_000
    agent_max_steps: int = 60
    github_app_id: str | None = None
    github_private_key: str | None = None
    github_webhook_secret: str | None = None
    github_api_url: str = "https://api.github.com"
    github_label: str = "nimbus"
    auto_review: bool = False
    review_budget_tokens: int = 60_000
    review_chunk_tokens: int = 15_000
    review_max_files: int = 1_000
    context_tokens: int = 1_024
    log_level: str = "info"
    # Where the App's key was read from (hidden from sandboxed commands), when from a file.
    github_private_key_path: Path | None = None
    sandbox: str = "auto"  # auto | bwrap | off
    sandbox_memory_mb: int = 8192
    sandbox_file_mb: int = 4096
    sandbox_processes: int = 1024

    @property
    def db_path(self) -> Path:
        return self.database_path or self.data_dir / "nimbus.db"

    @property
    def tasks_dir(self) -> Path:
        return self.data_dir / "tasks"

    @property
    def index_cache_path(self) -> Path:
        """Symbols of files seen before, by blob SHA: outside every clone, shared by tasks."""
        return self.data_dir / "index-cache.sqlite3"

    @property
    def server_skills_dir(self) -> Path:
        return self.skills_dir or self.data_dir / "skills"

    @property
    def local_repos_allowed(self) -> bool:
        if self.allow_local_repos is not None:
            return self.allow_local_repos
        return is_loopback(self.host)

    @property
    def worker_name(self) -> str:
        # Stable across restarts, so a restarted process takes back its own leases at once.
        return self.worker_id or f"{socket.gethostname()}:{self.data_dir.resolve()}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in an event, log line, error or command environment."""
        values = (
            self.api_key,
            self.model_api_key,
            self.github_private_key,
            self.github_webhook_secret,
        )
        return tuple(s for s in values if s)

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read `NIMBUS_*` variables; a malformed value raises ConfigError naming it."""
        env = os.environ if env is None else env
        r = _Reader(env)
        data_dir = r.path("NIMBUS_DATA_DIR") or _default_data_dir(env)
        return cls(
            data_dir=data_dir,
            database_path=r.path("NIMBUS_DATABASE_PATH"),
            host=r.str("NIMBUS_HOST") or "127.0.0.1",
            port=r.int("NIMBUS_PORT", 8000, minimum=0),
            api_key=r.str("NIMBUS_API_KEY"),
            max_concurrent_tasks=r.int("NIMBUS_MAX_CONCURRENT_TASKS", 4, minimum=1),
            lease_seconds=r.float("NIMBUS_LEASE_SECONDS", 60.0, minimum=1.0),
            poll_seconds=r.float("NIMBUS_POLL_SECONDS", 1.0, minimum=0.05),
            config_path=r.path("NIMBUS_CONFIG"),
            skills_dir=r.path("NIMBUS_SKILLS_DIR"),
            allow_local_repos=r.bool("NIMBUS_ALLOW_LOCAL_REPOS"),
            git_author=r.str("NIMBUS_GIT_AUTHOR") or DEFAULT_GIT_AUTHOR,
            git_timeout=r.float("NIMBUS_GIT_TIMEOUT", 300.0, minimum=1.0),
            setup_timeout=r.float("NIMBUS_SETUP_TIMEOUT", 900.0, minimum=1.0),
            test_timeout=r.float("NIMBUS_TEST_TIMEOUT", 900.0, minimum=1.0),
            agent_timeout=r.float("NIMBUS_AGENT_TIMEOUT", 1800.0, minimum=1.0),
            worker_id=r.str("NIMBUS_WORKER_ID"),
            model_provider=r.str("NIMBUS_MODEL_PROVIDER"),
            model=r.str("NIMBUS_MODEL"),
            model_base_url=r.str("NIMBUS_MODEL_BASE_URL"),
            model_api_key=r.str("NIMBUS_MODEL_API_KEY"),
            model_timeout=r.float("NIMBUS_MODEL_TIMEOUT", 300.0, minimum=1.0),
            model_max_retries=r.int("NIMBUS_MODEL_MAX_RETRIES", 5, minimum=0),
            model_retry_base=r.float("NIMBUS_MODEL_RETRY_BASE_SECONDS", 1.0, minimum=0.0),
            max_tokens_per_task=r.int("NIMBUS_MAX_TOKENS_PER_TASK", 2_000_000, minimum=1),
            agent_max_steps=r.int("NIMBUS_AGENT_MAX_STEPS", 60, minimum=1),
            github_app_id=r.str("NIMBUS_GITHUB_APP_ID"),
            github_private_key=r.str("NIMBUS_GITHUB_PRIVATE_KEY")
            or r.file("NIMBUS_GITHUB_PRIVATE_KEY_PATH"),
            github_webhook_secret=r.str("NIMBUS_GITHUB_WEBHOOK_SECRET"),
            github_label=r.str("NIMBUS_GITHUB_LABEL") or "nimbus",
            auto_review=bool(r.bool("NIMBUS_AUTO_REVIEW")),
            review_budget_tokens=r.int("NIMBUS_REVIEW_BUDGET_TOKENS", 60_000, minimum=1),
            review_chunk_tokens=r.int("NIMBUS_REVIEW_CHUNK_TOKENS", 15_000, minimum=1),
            review_max_files=r.int("NIMBUS_REVIEW_MAX_FILES", 1_000, minimum=1),
            context_tokens=r.int("NIMBUS_CONTEXT_TOKENS", 1_024, minimum=64),
            github_api_url=(r.str("NIMBUS_GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            log_level=(r.str("NIMBUS_LOG_LEVEL") or "info").lower(),
            github_private_key_path=r.path("NIMBUS_GITHUB_PRIVATE_KEY_PATH"),
            sandbox=r.choice("NIMBUS_SANDBOX", SANDBOX_MODES, "auto"),
            sandbox_memory_mb=r.int("NIMBUS_SANDBOX_MEMORY_MB", 8192, minimum=64),
            sandbox_file_mb=r.int("NIMBUS_SANDBOX_FILE_MB", 4096, minimum=1),
            sandbox_processes=r.int("NIMBUS_SANDBOX_PROCESSES", 1024, minimum=8),
        )


class _Reader:
    """Typed access to environment variables with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def str(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def path(self, name: str) -> Path | None:
        value = self.str(name)
        return Path(value).expanduser() if value else None

    def file(self, name: str) -> str | None:
        """The text of the file a variable names (a private key, say)."""
        path = self.path(name)
        if path is None:
            return None
        try:
            return path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(f"{name} names {path}, which cannot be read: {exc}") from None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.str(name) or default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, name: str, default: int, *, minimum: int) -> int:
        value = self.str(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
        if number < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {number}")
        return number

    def float(self, name: str, default: float, *, minimum: float) -> float:
        value = self.str(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
        if not math.isfinite(number) or number < minimum:
            raise ConfigError(f"{name} must be a finite number, at least {minimum}, got {value!r}")
        return number

    def bool(self, name: str) -> bool | None:
        value = self.str(name)
        if value is None:
            return None
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be true or false, got {value!r}")
