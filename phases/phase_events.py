"""The events that mark a task's phase changes and its end."""

from __future__ import annotations

from bot.events import TaskEvents
from bot.models import NewEvent
from phases.machine import Gate, Outcome, Phase, status_for


def phase_event(
    events: TaskEvents, phase: Phase, outcome: Outcome | None, gate: Gate | None = None
) -> NewEvent:
    """The event of a phase change; it carries the status a caller would poll."""
    return events.event(
        "phase",
        phase=str(phase),
        status=status_for(phase, outcome),
        approval=str(gate) if gate else None,
    )


def error_event(events: TaskEvents, error: str | None, outcome: Outcome | None) -> NewEvent:
    """The final event of a task that did not complete."""
    status = "cancelled" if outcome == Outcome.CANCELLED else "failed"
    return events.event("error", error=error or status, status=status)
