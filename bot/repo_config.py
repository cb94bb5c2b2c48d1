"""`.github/nimbus.yml`: a repository's own settings, with defaults merged (DESIGN §5)."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from bot.errors import ConfigError

CONFIG_PATH = ".github/nimbus.yml"


@dataclass(frozen=True)
class AutoReview:
    enabled: bool = False
    drafts: bool = False
    ignore_authors: tuple[str, ...] = ()
    paths_ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepoConfig:
    test_command: str | None = None
    setup_command: str | None = None
    max_fix_attempts: int = 3
    protected_paths: tuple[str, ...] = (".github/workflows/**",)
    branch_prefix: str = "nimbus/"
    draft_pr: bool = True
    auto_review: AutoReview = field(default_factory=AutoReview)
    setup_network: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def is_protected(self, path: str) -> bool:
        return any(path_matches(path, pattern) for pattern in self.protected_paths)


def path_matches(path: str, pattern: str) -> bool:
    """Glob match where `dir/**` covers everything below `dir`."""
    if pattern.endswith("/**"):
        prefix = pattern[:-3]
        return path == prefix or path.startswith(prefix + "/") or fnmatch.fnmatch(path, pattern)
    return fnmatch.fnmatch(path, pattern)


def _expect(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if (
        value is None
        or (kind is not bool and isinstance(value, bool))
        or not isinstance(value, kind)
    ):
        raise ConfigError(f"{CONFIG_PATH}: `{name}` must be {what}, got {value!r}")
    return value


def _strings(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    _expect(name, value, list, "a list of strings")
    return tuple(_expect(name, v, str, "a list of strings") for v in value)


def parse_repo_config(text: str | None) -> tuple[RepoConfig, list[str]]:
    """Parse the file's text (None when absent); return the config and warnings for people."""
    if text is None or not text.strip():
        return RepoConfig(), []
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{CONFIG_PATH} is not valid YAML: {exc}") from None
    if data is None:
        return RepoConfig(), []
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_PATH} must be a mapping of settings, got {type(data).__name__}")
    warnings: list[str] = []
    known = {f for f in RepoConfig.__dataclass_fields__}
    # YAML reads keys such as `on:` as booleans: compare and sort them as text.
    for key in sorted(set(data) - known, key=str):
        warnings.append(f"{CONFIG_PATH}: unknown setting `{key}` ignored")
    values: dict[str, Any] = {}
    for key in ("test_command", "setup_command"):
        if data.get(key) is not None:
            values[key] = _expect(key, data[key], str, "a shell command (text)").strip() or None
    if "max_fix_attempts" in data:
        attempts = _expect("max_fix_attempts", data["max_fix_attempts"], int, "a whole number")
        if not 0 <= attempts <= 20:
            raise ConfigError(f"{CONFIG_PATH}: `max_fix_attempts` must be 0 to 20, got {attempts}")
        values["max_fix_attempts"] = attempts
    if "protected_paths" in data:
        values["protected_paths"] = _strings("protected_paths", data["protected_paths"])
    if "branch_prefix" in data:
        values["branch_prefix"] = _expect("branch_prefix", data["branch_prefix"], str, "text")
    for key in ("draft_pr", "setup_network"):
        if key in data:
            values[key] = _expect(key, data[key], bool, "true or false")
    if "auto_review" in data:
        values["auto_review"] = _auto_review(data["auto_review"])
    return RepoConfig(**values), warnings


def _auto_review(value: Any) -> AutoReview:
    if isinstance(value, bool):
        return AutoReview(enabled=value)
    _expect("auto_review", value, dict, "true, false or a mapping")
    return AutoReview(
        enabled=_expect("auto_review.enabled", value.get("enabled", True), bool, "true or false"),
        drafts=_expect("auto_review.drafts", value.get("drafts", False), bool, "true or false"),
        ignore_authors=_strings("auto_review.ignore_authors", value.get("ignore_authors", [])),
        paths_ignore=_strings("auto_review.paths_ignore", value.get("paths_ignore", [])),
    )
