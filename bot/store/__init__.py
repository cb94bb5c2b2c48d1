"""The store: Nimbus's only state, and its task queue, behind one narrow interface.

`SqliteStore` is the embedded engine. A PostgreSQL engine implements the same `Store` protocol so
that several Nimbus processes on several machines can share the work.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from bot.models import Event, NewEvent, Repo, Task, Workspace

# Columns that `update_task` may compare (`expect`) or change; anything else is a programming error.
TASK_COLUMNS = frozenset(
    {
        "description",
        "phase",
        "approval",
        "outcome",
        "auto_approve",
        "skill_name",
        "agent_name",
        "branch",
        "source",
        "plan",
        "verification",
        "review",
        "usage",
        "pr_url",
        "error",
        "feedback",
        "fix_attempts",
        "review_fixes",
        "cancel_requested",
        "state",
        "diff",
        "lease_owner",
        "lease_expires",
    }
)


class Store(Protocol):
    """What the rest of Nimbus may ask of its database."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def ensure_workspace(self, workspace_id: str, name: str) -> Workspace: ...
    async def create_workspace(self, name: str) -> Workspace: ...
    async def get_workspace(self, workspace_id: str) -> Workspace | None: ...
    async def list_workspaces(self) -> list[Workspace]: ...
    async def add_api_key(self, workspace_id: str, key_hash: str, label: str) -> None: ...
    async def workspace_for_key(self, key_hash: str) -> str | None: ...

    async def add_repo(self, repo: Repo) -> Repo: ...
    async def get_repo(self, repo_id: str) -> Repo | None: ...
    async def find_repo(self, workspace_id: str, url: str) -> Repo | None: ...
    async def list_repos(self, workspace_id: str) -> list[Repo]: ...
    async def set_default_branch(self, repo_id: str, branch: str) -> None: ...

    async def create_task(self, task: Task, events: Sequence[NewEvent]) -> Task: ...
    async def get_task(self, task_id: str) -> Task | None: ...
    async def get_diff(self, task_id: str) -> str | None: ...
    async def list_tasks(
        self,
        workspace_id: str,
        *,
        status: str | None,
        repo_id: str | None,
        limit: int,
        before: tuple[int, str] | None,
    ) -> list[Task]: ...
    async def update_task(
        self,
        task_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
    ) -> Task | None:
        """Apply `changes` and append `events` in one transaction if every `expect` holds."""
        ...

    async def append_events(self, task_id: str, events: Sequence[NewEvent]) -> list[Event]: ...
    async def events_after(self, task_id: str, seq: int, limit: int = 500) -> list[Event]: ...

    async def claim_task(self, worker: str, lease_until: float, now: float) -> Task | None:
        """Atomically lease the oldest runnable task that nobody holds."""
        ...

    async def renew_lease(self, task_id: str, worker: str, lease_until: float) -> Task | None:
        """Extend `worker`'s lease; None when the lease was lost."""
        ...

    async def release_leases(self, worker: str) -> int: ...

    async def take_deliveries(
        self,
        worker: str,
        lease_until: float,
        now: float,
        *,
        finished: Sequence[tuple[str, str | None]] = (),
        released: Sequence[str] = (),
        limit: int = 1,
    ) -> list[tuple[str, str, bytes]]:
        """Mark `finished` processed, hand back `released`, lease up to `limit` more, at once."""
        ...

    async def release_deliveries(self, worker: str) -> int: ...
    async def claim_review(self, repository: str, number: int, head_sha: str) -> bool: ...
    async def last_review(self, repository: str, number: int) -> str | None: ...
    async def release_review(self, repository: str, number: int, head_sha: str) -> None: ...
    async def pause_reviews(self, repository: str, number: int, by: str) -> None: ...
    async def resume_reviews(self, repository: str, number: int) -> bool: ...
    async def reviews_paused_by(self, repository: str, number: int) -> str | None: ...
    async def active_tasks(
        self, *, repo_id: str | None = None, source_key: str | None = None
    ) -> list[Task]: ...
    async def latest_task(self, source_key: str) -> Task | None: ...

    async def record_delivery(self, delivery_id: str, event: str, payload: bytes) -> bool:
        """Store a webhook delivery (again, if its processing failed); False when ignored."""
        ...
