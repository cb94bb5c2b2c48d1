"""The agent interface, and reading what agents answer (pure)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bot.errors import AgentError, BudgetExceeded
from bot.model.types import Usage

AGENT_PHASES = ("plan", "implement", "fix", "review")


async def _no_log(message: str) -> None:
    return None


@dataclass
class UsageMeter:
    """The tokens a task has spent, against its budget; agents add to it as they go."""

    input_tokens: int = 0
    output_tokens: int = 0
    budget: int | None = None

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, usage: Usage) -> None:
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens

    def check(self) -> None:
        """Stop the task once it has spent its budget."""
        if self.budget is not None and self.total >= self.budget:
            raise BudgetExceeded(
                f"the task used {self.total} tokens, which reaches its budget of {self.budget}"
                " (NIMBUS_MAX_TOKENS_PER_TASK); raise the budget or split the task"
            )

    def as_dict(self) -> dict[str, int]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


@dataclass(frozen=True)
class AgentRequest:
    """Everything an agent gets for one phase of one task."""

    phase: str
    task_id: str
    description: str
    workdir: Path
    task_dir: Path
    context: str = ""
    skill: str | None = None
    plan: list[dict[str, Any]] | None = None
    feedback: str | None = None
    failures: str | None = None
    diff: str | None = None
    protected_paths: tuple[str, ...] = ()
    test_command: str | None = None
    meter: UsageMeter = field(default_factory=UsageMeter)
    log: Callable[[str], Awaitable[None]] = _no_log


@dataclass(frozen=True)
class AgentOutput:
    """What an agent produced (tokens spent are counted on the request's meter)."""

    plan: list[dict[str, Any]] | None = None
    review: dict[str, Any] | None = None
    seconds: float = 0.0


class Agent(Protocol):
    """Does the thinking in PLANNING, IMPLEMENTING, FIXING and REVIEWING (DESIGN §4)."""

    name: str

    async def run(self, request: AgentRequest) -> AgentOutput:
        """Do `request.phase`: plan and review answer; implement and fix edit the clone."""
        ...


def _step(item: Any) -> dict[str, Any] | None:
    if isinstance(item, str):
        return {"title": item.strip(), "files": [], "detail": ""} if item.strip() else None
    if isinstance(item, dict):
        title = item.get("title") or item.get("step") or item.get("description")
        if not isinstance(title, str) or not title.strip():
            return None
        files = item.get("files") or []
        if isinstance(files, str):
            files = [files]
        detail = item.get("detail") or ""
        return {
            "title": title.strip(),
            "files": [f for f in files if isinstance(f, str)],
            "detail": detail if isinstance(detail, str) else json.dumps(detail),
        }
    return None


def _json_objects(text: str) -> list[Any]:
    """JSON values the text is, or contains on a line of its own, or between its outer braces."""
    candidates = [text.strip()]
    candidates += [line.strip() for line in reversed(text.splitlines()) if line.strip()]
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    found = []
    for candidate in candidates:
        try:
            found.append(json.loads(candidate))
        except ValueError:
            continue
    return found


_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(?:\[[ x]\]\s+)?(.+?)\s*$")


def parse_plan(output: str) -> list[dict[str, Any]]:
    """A plan from JSON `{"plan": [...]}` or, failing that, a markdown list."""
    for value in _json_objects(output):
        if isinstance(value, dict) and isinstance(value.get("plan"), list):
            steps = [s for s in map(_step, value["plan"]) if s]
            if steps:
                return steps
            raise AgentError("the agent's plan has no steps")
    steps = [
        {"title": m.group(1), "files": [], "detail": ""}
        for line in output.splitlines()
        if (m := _LIST_ITEM.match(line))
    ]
    if steps:
        return steps
    head = output.strip()[:300] or "(nothing)"
    raise AgentError(
        'could not read a plan from the agent\'s output: expected JSON {"plan": [...]} or a'
        f" markdown list, got: {head}"
    )


def parse_review(output: str) -> dict[str, Any]:
    """A review from JSON `{"summary", "comments"}`, or the plain text as its summary."""
    for value in _json_objects(output):
        if isinstance(value, dict) and ("summary" in value or "comments" in value):
            comments = []
            for c in value.get("comments") or []:
                if not isinstance(c, dict):
                    continue
                path, line, body = c.get("path"), c.get("line"), c.get("body")
                if not (isinstance(path, str) and isinstance(body, str)):
                    continue
                if not isinstance(line, int) or isinstance(line, bool) or line < 1:
                    line = None
                comments.append(
                    {
                        "path": path,
                        "line": line,
                        "body": body,
                        "blocking": c.get("blocking") is True,
                    }
                )
            summary = value.get("summary")
            return {
                "summary": summary if isinstance(summary, str) else "",
                "comments": comments,
                "blocking": any(c["blocking"] for c in comments) or value.get("blocking") is True,
            }
    return {"summary": output.strip(), "comments": [], "blocking": False}
