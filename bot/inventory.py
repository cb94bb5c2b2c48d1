"""What a clone contains: languages, and the test command a developer would run."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

LANGUAGES = {
    ".py": "Python",
    ".js": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".jsx": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".go": "Go",
    ".rs": "Rust",
    ".java": "Java",
    ".kt": "Kotlin",
    ".rb": "Ruby",
    ".php": "PHP",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".hpp": "C++",
    ".cs": "C#",
    ".swift": "Swift",
    ".scala": "Scala",
    ".sh": "Shell",
    ".md": "Markdown",
    ".yml": "YAML",
    ".yaml": "YAML",
    ".toml": "TOML",
    ".json": "JSON",
    ".html": "HTML",
    ".css": "CSS",
    ".sql": "SQL",
}

ReadText = Callable[[str], str | None]


@dataclass(frozen=True)
class Inventory:
    files: tuple[str, ...]
    languages: dict[str, int]

    @property
    def summary(self) -> str:
        top = ", ".join(f"{lang} {n}" for lang, n in list(self.languages.items())[:5])
        return f"{len(self.files)} files" + (f" ({top})" if top else "")


def take_inventory(paths: Iterable[str]) -> Inventory:
    files = tuple(sorted(paths))
    counts = Counter(
        LANGUAGES[suffix] for p in files if (suffix := PurePosixPath(p).suffix.lower()) in LANGUAGES
    )
    return Inventory(files=files, languages=dict(counts.most_common()))


def _npm_test(read: ReadText) -> bool:
    try:
        package = json.loads(read("package.json") or "{}")
    except json.JSONDecodeError:
        return False
    script = (package.get("scripts") or {}).get("test") if isinstance(package, dict) else None
    return isinstance(script, str) and "no test specified" not in script


def _has_pytest(files: set[str], read: ReadText) -> bool:
    if {"pytest.ini", "conftest.py", "tox.ini"} & files:
        return True
    if "[tool.pytest" in (read("pyproject.toml") or ""):
        return True
    if "[tool:pytest]" in (read("setup.cfg") or ""):
        return True
    return any(re.search(r"(^|/)(test_[^/]*|[^/]*_test)\.py$", f) for f in files)


def detect_test_command(files: Iterable[str], read: ReadText) -> str | None:
    """The repository's test command, as its own files suggest; None when there are no tests."""
    names = set(files)
    if _has_pytest(names, read):
        return "python -m pytest"
    if "package.json" in names and _npm_test(read):
        return "npm test"
    if "go.mod" in names:
        return "go test ./..."
    if "Cargo.toml" in names:
        return "cargo test"
    if "Makefile" in names and re.search(r"(?m)^test\s*:", read("Makefile") or ""):
        return "make test"
    return None
