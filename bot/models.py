"""The records Nimbus stores, and how the API shows them."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from phases.machine import Gate, Outcome, Phase, State, status_for


def new_id(prefix: str) -> str:
    """A fresh opaque id such as `task-3f9a…`."""
    return f"{prefix}-{secrets.token_hex(8)}"


def now_us() -> int:
    return time.time_ns() // 1000


def rfc3339(us: int) -> str:
    """UTC, RFC 3339 with `Z`, to the second."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_ms(us: int) -> str:
    """UTC, RFC 3339 with `Z`, to the millisecond (event timestamps)."""
    moment = datetime.fromtimestamp(us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    created_us: int


@dataclass(frozen=True)
class Repo:
    id: str
    workspace_id: str
    url: str
    default_branch: str | None
    created_us: int
    # For a repository of a GitHub App installation: installation_id, full_name, repo_id.
    github: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "url": self.url,
            "default_branch": self.default_branch,
            "created_at": rfc3339(self.created_us),
            "github": self.github,
        }


@dataclass(frozen=True)
class Task:
    """A task as stored. `state` holds the phases' private bookkeeping (checkpoints, steps)."""

    id: str
    workspace_id: str
    repo_id: str
    description: str
    phase: Phase
    created_us: int
    updated_us: int
    approval: Gate | None = None
    outcome: Outcome | None = None
    auto_approve: bool = False
    skill_name: str | None = None
    agent_name: str | None = None
    branch: str | None = None
    source: dict[str, Any] | None = None
    plan: list[dict[str, Any]] | None = None
    verification: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    pr_url: str | None = None
    error: str | None = None
    feedback: str | None = None
    fix_attempts: int = 0
    review_fixes: int = 0
    cancel_requested: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    has_diff: bool = False
    source_key: str | None = None
    lease_owner: str | None = None
    lease_expires: float | None = None
    last_seq: int = 0

    @property
    def status(self) -> str:
        return status_for(self.phase, self.outcome)

    @property
    def machine_state(self) -> State:
        return State(self.phase, self.approval)

    def to_json(self) -> dict[str, Any]:
        """The task as every endpoint returns it: the seed's fields first."""
        return {
            "id": self.id,
            "description": self.description,
            "status": self.status,
            "phase": str(self.phase),
            "created_at": rfc3339(self.created_us),
            "repo_id": self.repo_id,
            "workspace_id": self.workspace_id,
            "pr_url": self.pr_url,
            "error": self.error,
            "updated_at": rfc3339(self.updated_us),
            "approval": str(self.approval) if self.approval else None,
            "auto_approve": self.auto_approve,
            "skill_name": self.skill_name,
            "agent_name": self.agent_name,
            "branch": self.branch,
            "source": self.source,
            "plan": self.plan,
            "verification": self.verification,
            "usage": dict(self.usage),
            "review": self.review,
            "fix_attempts": self.fix_attempts,
        }


@dataclass(frozen=True)
class NewEvent:
    """An event about to be stored; the store gives it its `seq`."""

    event_type: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Event:
    task_id: str
    seq: int
    event_type: str
    ts_us: int
    fields: dict[str, Any]

    @property
    def is_final(self) -> bool:
        return self.event_type in ("done", "error")

    def to_json(self) -> dict[str, Any]:
        """One flat JSON object, as the WebSocket sends it."""
        return {
            "event_type": self.event_type,
            "seq": self.seq,
            "task_id": self.task_id,
            "ts": rfc3339_ms(self.ts_us),
            **self.fields,
        }
