"""What people decide about a task: gate decisions and cancel, from any way in (API, GitHub)."""

from __future__ import annotations

import time
from typing import Any

from bot.errors import Conflict
from bot.events import TaskEvents
from bot.models import Task, new_id, now_us
from phases.machine import TERMINAL, WORKING, Gate, Outcome, Phase, Trigger, advance
from phases.phase_events import phase_event

# command -> (the gate it answers, the trigger it fires, what it records in the log)
DECISIONS: dict[str, tuple[Gate, Trigger, str]] = {
    "approve": (Gate.PLAN, Trigger.APPROVE, "plan approved"),
    "reject": (Gate.PLAN, Trigger.REJECT, "plan rejected"),
    "revise": (Gate.PLAN, Trigger.REVISE, "plan sent back for revision"),
    "approve-diff": (Gate.DIFF, Trigger.APPROVE_DIFF, "diff approved"),
    "reject-diff": (Gate.DIFF, Trigger.REJECT_DIFF, "diff rejected"),
}


async def new_task(
    events: TaskEvents,
    *,
    workspace_id: str,
    repo_id: str,
    description: str,
    auto_approve: bool = False,
    skill_name: str | None = None,
    agent_name: str | None = None,
    source: dict[str, Any] | None = None,
    source_key: str | None = None,
) -> Task:
    """Queue a task (its inputs already checked), from the API or from GitHub."""
    created = now_us()
    task = Task(
        id=new_id("task"),
        workspace_id=workspace_id,
        repo_id=repo_id,
        description=description.strip(),
        phase=Phase.QUEUED,
        created_us=created,
        updated_us=created,
        auto_approve=auto_approve,
        skill_name=skill_name,
        agent_name=agent_name,
        source=source,
        source_key=source_key,
    )
    return await events.create(task, [phase_event(events, Phase.QUEUED, None)])


def _where(task: Task) -> str:
    waiting = f" for {task.approval} approval" if task.approval else ""
    return f"task {task.id} is {task.status} ({task.phase}{waiting})"


async def decide(
    events: TaskEvents, task: Task, command: str, *, feedback: str | None = None, by: str = "api"
) -> Task:
    """Answer the gate the task waits at; 409 unless it waits at the one `command` answers."""
    gate, trigger, what = DECISIONS[command]
    if task.phase != Phase.AWAITING_APPROVAL or task.approval != gate:
        raise Conflict(f"{_where(task)}: `{command}` applies only while it awaits {gate} approval")
    move = advance(task.machine_state, trigger)
    changes: dict[str, Any] = {"phase": move.to.phase, "approval": move.to.gate}
    if move.outcome:
        changes["outcome"] = move.outcome
    if move.outcome == Outcome.CANCELLED:
        changes["error"] = f"cancelled: the {gate} was rejected ({by})"
    if trigger == Trigger.REVISE:
        changes["feedback"] = feedback
    updated = await events.change(
        task.id,
        expect={"phase": Phase.AWAITING_APPROVAL, "approval": gate},
        changes=changes,
        events=[
            events.event("log", message=f"{what} ({by})"),
            phase_event(events, move.to.phase, move.outcome or task.outcome, move.to.gate),
        ],
    )
    if updated is None:
        latest = await events.store.get_task(task.id)
        raise Conflict(f"{_where(latest or task)}: it changed while `{command}` was being applied")
    return updated


async def cancel(events: TaskEvents, task: Task, *, by: str = "api") -> Task:
    """Cancel in whatever phase; a running phase is stopped by its worker, then CLEANUP runs."""
    if task.phase in TERMINAL or task.outcome == Outcome.CANCELLED:
        raise Conflict(f"{_where(task)}: it cannot be cancelled (again)")
    if task.outcome == Outcome.FAILED:
        raise Conflict(f"{_where(task)}: it already failed ({task.error}) and is cleaning up")
    if task.outcome == Outcome.COMPLETED:
        raise Conflict(f"{_where(task)}: its diff was approved and is being published")
    held = task.lease_owner is not None and (task.lease_expires or 0) > time.time()
    working = task.phase in WORKING and task.phase != Phase.QUEUED and held
    changes: dict[str, Any] = {
        "outcome": Outcome.CANCELLED,
        "cancel_requested": True,
        "error": f"cancelled on request ({by})",
    }
    logged = [events.event("log", message=f"cancel requested ({by})")]
    if not working:
        # Nothing runs for it: go to CLEANUP now rather than wait for a worker to notice.
        changes.update(phase=Phase.CLEANUP, approval=None)
        logged.append(phase_event(events, Phase.CLEANUP, Outcome.CANCELLED))
    updated = await events.change(
        task.id,
        expect={"phase": task.phase, "lease_owner": task.lease_owner},
        changes=changes,
        events=logged,
    )
    if updated is None:
        latest = await events.store.get_task(task.id)
        if latest is None:
            raise Conflict(f"task {task.id} disappeared while being cancelled")
        return await cancel(events, latest, by=by)
    return updated
