"""The phase machine as data: phases, gates, triggers, the transition table and statuses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Phase(StrEnum):
    QUEUED = "QUEUED"
    CLONING = "CLONING"
    INDEXING = "INDEXING"
    PLANNING = "PLANNING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    IMPLEMENTING = "IMPLEMENTING"
    VERIFYING = "VERIFYING"
    FIXING = "FIXING"
    REVIEWING = "REVIEWING"
    CLEANUP = "CLEANUP"
    DONE = "DONE"
    FAILED = "FAILED"


class Gate(StrEnum):
    """Which approval a task at AWAITING_APPROVAL waits for."""

    PLAN = "plan"
    DIFF = "diff"


class Outcome(StrEnum):
    """How a task will end, decided before CLEANUP runs."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Trigger(StrEnum):
    START = "start"
    CLONED = "cloned"
    INDEXED = "indexed"
    PLANNED = "planned"
    APPROVE = "approve"
    REVISE = "revise"
    REJECT = "reject"
    IMPLEMENTED = "implemented"
    PASSED = "passed"
    TESTS_FAILED = "tests_failed"
    GAVE_UP = "gave_up"
    FIXED = "fixed"
    REVIEWED = "reviewed"
    BLOCKING = "blocking"
    APPROVE_DIFF = "approve_diff"
    REJECT_DIFF = "reject_diff"
    CLEANED = "cleaned"


@dataclass(frozen=True)
class State:
    """A phase, and for AWAITING_APPROVAL the gate it waits at."""

    phase: Phase
    gate: Gate | None = None

    def __str__(self) -> str:
        return f"{self.phase}({self.gate})" if self.gate else str(self.phase)


PLAN_GATE = State(Phase.AWAITING_APPROVAL, Gate.PLAN)
DIFF_GATE = State(Phase.AWAITING_APPROVAL, Gate.DIFF)


def _s(phase: Phase) -> State:
    return State(phase)


# The whole machine. Errors and cancels are not listed: from any non-terminal state they go to
# CLEANUP (see `interrupt`). The README's Mermaid diagram mirrors this table.
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (_s(Phase.QUEUED), Trigger.START): _s(Phase.CLONING),
    (_s(Phase.CLONING), Trigger.CLONED): _s(Phase.INDEXING),
    (_s(Phase.INDEXING), Trigger.INDEXED): _s(Phase.PLANNING),
    (_s(Phase.PLANNING), Trigger.PLANNED): PLAN_GATE,
    (PLAN_GATE, Trigger.APPROVE): _s(Phase.IMPLEMENTING),
    (PLAN_GATE, Trigger.REVISE): _s(Phase.PLANNING),
    (PLAN_GATE, Trigger.REJECT): _s(Phase.CLEANUP),
    (_s(Phase.IMPLEMENTING), Trigger.IMPLEMENTED): _s(Phase.VERIFYING),
    (_s(Phase.VERIFYING), Trigger.PASSED): _s(Phase.REVIEWING),
    (_s(Phase.VERIFYING), Trigger.TESTS_FAILED): _s(Phase.FIXING),
    (_s(Phase.VERIFYING), Trigger.GAVE_UP): _s(Phase.REVIEWING),
    (_s(Phase.FIXING), Trigger.FIXED): _s(Phase.VERIFYING),
    (_s(Phase.REVIEWING), Trigger.REVIEWED): DIFF_GATE,
    (_s(Phase.REVIEWING), Trigger.BLOCKING): _s(Phase.FIXING),
    (DIFF_GATE, Trigger.APPROVE_DIFF): _s(Phase.CLEANUP),
    (DIFF_GATE, Trigger.REJECT_DIFF): _s(Phase.CLEANUP),
}

# What passing a gate automatically means when the task has auto_approve.
AUTO_APPROVAL: dict[Gate, Trigger] = {Gate.PLAN: Trigger.APPROVE, Gate.DIFF: Trigger.APPROVE_DIFF}

# Outcomes that a transition decides (the rest leave the outcome as it was).
DECIDES_OUTCOME: dict[Trigger, Outcome] = {
    Trigger.REJECT: Outcome.CANCELLED,
    Trigger.REJECT_DIFF: Outcome.CANCELLED,
    Trigger.APPROVE_DIFF: Outcome.COMPLETED,
}

TERMINAL = frozenset({Phase.DONE, Phase.FAILED})
# Phases in which a worker does work; a task in one of these is runnable.
WORKING = frozenset(Phase) - TERMINAL - {Phase.AWAITING_APPROVAL}


class InvalidTransition(ValueError):
    """The trigger does not apply in this state."""


@dataclass(frozen=True)
class Move:
    """Where a trigger leads, and the outcome it decides (None: unchanged)."""

    to: State
    outcome: Outcome | None = None


def advance(state: State, trigger: Trigger, *, auto_approve: bool = False) -> Move:
    """Where `trigger` leads from `state`, passing gates at once when `auto_approve` is set."""
    try:
        target = TRANSITIONS[(state, trigger)]
    except KeyError:
        raise InvalidTransition(f"{trigger} does not apply in {state}") from None
    outcome = DECIDES_OUTCOME.get(trigger)
    if auto_approve and target.gate is not None:
        passed = AUTO_APPROVAL[target.gate]
        target = TRANSITIONS[(target, passed)]
        outcome = DECIDES_OUTCOME.get(passed, outcome)
    return Move(target, outcome)


def verification_trigger(passed: bool, fix_attempts: int, max_fix_attempts: int) -> Trigger:
    """What VERIFYING's result means, given how many fix rounds have been spent."""
    if passed:
        return Trigger.PASSED
    if fix_attempts < max_fix_attempts:
        return Trigger.TESTS_FAILED
    return Trigger.GAVE_UP


def end_phase(outcome: Outcome | None) -> Phase:
    """The terminal phase CLEANUP leads to."""
    return Phase.DONE if outcome == Outcome.COMPLETED else Phase.FAILED


def status_for(phase: Phase, outcome: Outcome | None) -> str:
    """The coarse status a caller polls (DESIGN §2)."""
    if outcome == Outcome.CANCELLED:
        return "cancelled"
    if phase == Phase.QUEUED:
        return "queued"
    if phase == Phase.AWAITING_APPROVAL:
        return "awaiting_approval"
    if phase == Phase.DONE:
        return "completed"
    if phase == Phase.FAILED:
        return "failed"
    return "running"


STATUSES = ("queued", "running", "awaiting_approval", "completed", "failed", "cancelled")
