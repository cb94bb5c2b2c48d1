"""The phase machine as data: the transition table, gates, outcomes and statuses (DESIGN §2)."""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path

import pytest

from phases.machine import (
    DIFF_GATE,
    PLAN_GATE,
    TERMINAL,
    TRANSITIONS,
    Gate,
    InvalidTransition,
    Move,
    Outcome,
    Phase,
    State,
    Trigger,
    advance,
    end_phase,
    status_for,
    verification_trigger,
)

README = Path(__file__).resolve().parent.parent / "README.md"

Q, CL, IX, PL = Phase.QUEUED, Phase.CLONING, Phase.INDEXING, Phase.PLANNING
IM, VE, FX, RV = Phase.IMPLEMENTING, Phase.VERIFYING, Phase.FIXING, Phase.REVIEWING
CU = Phase.CLEANUP

# DESIGN §2, written out edge by edge, independently of the table under test.
EXPECTED: dict[tuple[State, Trigger], State] = {
    (State(Q), Trigger.START): State(CL),
    (State(CL), Trigger.CLONED): State(IX),
    (State(IX), Trigger.INDEXED): State(PL),
    (State(PL), Trigger.PLANNED): State(Phase.AWAITING_APPROVAL, Gate.PLAN),
    (PLAN_GATE, Trigger.APPROVE): State(IM),
    (PLAN_GATE, Trigger.REVISE): State(PL),
    (PLAN_GATE, Trigger.REJECT): State(CU),
    (State(IM), Trigger.IMPLEMENTED): State(VE),
    (State(VE), Trigger.PASSED): State(RV),
    (State(VE), Trigger.TESTS_FAILED): State(FX),
    (State(VE), Trigger.GAVE_UP): State(RV),
    (State(FX), Trigger.FIXED): State(VE),
    (State(RV), Trigger.REVIEWED): State(Phase.AWAITING_APPROVAL, Gate.DIFF),
    (State(RV), Trigger.BLOCKING): State(FX),
    (DIFF_GATE, Trigger.APPROVE_DIFF): State(CU),
    (DIFF_GATE, Trigger.REJECT_DIFF): State(CU),
}


@pytest.mark.parametrize(("source", "trigger"), list(EXPECTED), ids=str)
def test_each_transition_leads_where_the_design_says(source, trigger):
    assert advance(source, trigger).to == EXPECTED[(source, trigger)]


def test_table_has_no_transition_the_design_lacks():
    assert TRANSITIONS == EXPECTED


def test_gates_are_awaiting_approval_with_their_gate():
    assert PLAN_GATE == State(Phase.AWAITING_APPROVAL, Gate.PLAN)
    assert DIFF_GATE == State(Phase.AWAITING_APPROVAL, Gate.DIFF)
    assert str(PLAN_GATE) == "AWAITING_APPROVAL(plan)"
    assert str(State(Phase.VERIFYING)) == "VERIFYING"


def test_ordinary_transitions_leave_the_outcome_undecided():
    deciding = {Trigger.REJECT, Trigger.REJECT_DIFF, Trigger.APPROVE_DIFF}
    for (source, trigger), target in TRANSITIONS.items():
        if trigger not in deciding:
            assert advance(source, trigger) == Move(target, None)


@pytest.mark.parametrize(
    ("state", "trigger", "outcome"),
    [
        (PLAN_GATE, Trigger.REJECT, Outcome.CANCELLED),
        (DIFF_GATE, Trigger.REJECT_DIFF, Outcome.CANCELLED),
        (DIFF_GATE, Trigger.APPROVE_DIFF, Outcome.COMPLETED),
    ],
)
def test_gate_decisions_decide_the_outcome(state, trigger, outcome):
    assert advance(state, trigger) == Move(State(CU), outcome)


def test_auto_approve_passes_the_plan_gate():
    assert advance(State(PL), Trigger.PLANNED, auto_approve=True) == Move(State(IM), None)


def test_auto_approve_passes_the_diff_gate_and_completes():
    move = advance(State(RV), Trigger.REVIEWED, auto_approve=True)
    assert move == Move(State(CU), Outcome.COMPLETED)


def test_without_auto_approve_the_task_waits_at_the_gates():
    assert advance(State(PL), Trigger.PLANNED) == Move(PLAN_GATE, None)
    assert advance(State(RV), Trigger.REVIEWED) == Move(DIFF_GATE, None)


def test_auto_approve_changes_nothing_away_from_the_gates():
    for (source, trigger), target in TRANSITIONS.items():
        if target.gate is None:
            assert advance(source, trigger, auto_approve=True) == advance(source, trigger)


@pytest.mark.parametrize(
    ("state", "trigger"),
    [
        (PLAN_GATE, Trigger.APPROVE_DIFF),
        (PLAN_GATE, Trigger.REJECT_DIFF),
        (DIFF_GATE, Trigger.APPROVE),
        (DIFF_GATE, Trigger.REJECT),
        (DIFF_GATE, Trigger.REVISE),
        (State(Q), Trigger.CLONED),
        (State(VE), Trigger.FIXED),
        (State(Phase.AWAITING_APPROVAL), Trigger.APPROVE),
        (State(CU), Trigger.CLEANED),
        (State(Phase.DONE), Trigger.START),
        (State(Phase.FAILED), Trigger.APPROVE),
    ],
    ids=str,
)
def test_trigger_that_does_not_apply_is_invalid(state, trigger):
    with pytest.raises(InvalidTransition) as caught:
        advance(state, trigger)
    assert str(trigger) in str(caught.value)
    assert str(state) in str(caught.value)


def test_invalid_transition_is_a_value_error():
    assert issubclass(InvalidTransition, ValueError)


def test_verification_that_passed_passes_whatever_the_rounds():
    assert verification_trigger(True, 0, 3) == Trigger.PASSED
    assert verification_trigger(True, 3, 3) == Trigger.PASSED
    assert verification_trigger(True, 0, 0) == Trigger.PASSED


@pytest.mark.parametrize("spent", [0, 1, 2])
def test_failed_verification_with_rounds_left_goes_to_fixing(spent):
    assert verification_trigger(False, spent, 3) == Trigger.TESTS_FAILED


def test_failed_verification_gives_up_after_the_last_round():
    assert verification_trigger(False, 3, 3) == Trigger.GAVE_UP
    assert verification_trigger(False, 4, 3) == Trigger.GAVE_UP


def test_zero_fix_attempts_gives_up_at_once():
    assert verification_trigger(False, 0, 0) == Trigger.GAVE_UP


@pytest.mark.parametrize(
    ("phase", "status"),
    [
        (Q, "queued"),
        (CL, "running"),
        (IX, "running"),
        (PL, "running"),
        (IM, "running"),
        (VE, "running"),
        (FX, "running"),
        (RV, "running"),
        (CU, "running"),
        (Phase.AWAITING_APPROVAL, "awaiting_approval"),
        (Phase.DONE, "completed"),
        (Phase.FAILED, "failed"),
    ],
)
def test_status_follows_the_phase_while_no_outcome_is_decided(phase, status):
    assert status_for(phase, None) == status


def test_completed_and_failed_outcomes_keep_cleanup_running():
    assert status_for(CU, Outcome.COMPLETED) == "running"
    assert status_for(CU, Outcome.FAILED) == "running"


def test_terminal_phases_report_their_outcome():
    assert status_for(Phase.DONE, Outcome.COMPLETED) == "completed"
    assert status_for(Phase.FAILED, Outcome.FAILED) == "failed"
    assert status_for(Phase.FAILED, Outcome.CANCELLED) == "cancelled"


@pytest.mark.parametrize("phase", list(Phase))
def test_cancelled_wins_in_every_phase_including_cleanup(phase):
    assert status_for(phase, Outcome.CANCELLED) == "cancelled"


def test_cleanup_ends_done_only_when_completed():
    assert end_phase(Outcome.COMPLETED) == Phase.DONE
    assert end_phase(Outcome.FAILED) == Phase.FAILED
    assert end_phase(Outcome.CANCELLED) == Phase.FAILED
    assert end_phase(None) == Phase.FAILED


def test_every_non_terminal_phase_is_reachable_from_queued():
    seen, todo = {State(Q)}, deque([State(Q)])
    while todo:
        state = todo.popleft()
        for (source, _), target in TRANSITIONS.items():
            if source == state and target not in seen:
                seen.add(target)
                todo.append(target)
    assert {s.phase for s in seen} == set(Phase) - TERMINAL
    assert {PLAN_GATE, DIFF_GATE} <= seen


def test_no_transition_leaves_a_terminal_phase():
    assert not [source for source, _ in TRANSITIONS if source.phase in TERMINAL]


_EDGE = re.compile(r"^\s*(\S+)\s*-->\s*(\S+?)\s*(?::\s*(.*?))?\s*$")


def _diagram_name(state: State) -> str:
    return {PLAN_GATE: "PLAN_GATE", DIFF_GATE: "DIFF_GATE"}.get(state, str(state.phase))


def _mermaid_edges(text: str) -> set[tuple[str, str, str]]:
    """(source, target, label) of each edge in the README's Mermaid state diagram."""
    block = re.search(r"```mermaid\s*\n(.*?)```", text, re.S)
    assert block, "README.md has no ```mermaid block"
    assert "stateDiagram-v2" in block.group(1), "the Mermaid block is not a stateDiagram-v2"
    edges = set()
    for line in block.group(1).splitlines():
        if match := _EDGE.match(line):
            edges.add((match.group(1), match.group(2), (match.group(3) or "").strip()))
    return edges


def test_readme_diagram_matches_transition_table():
    edges = _mermaid_edges(README.read_text("utf-8"))
    table = {
        (_diagram_name(source), str(trigger), _diagram_name(target))
        for (source, trigger), target in TRANSITIONS.items()
    }
    drawn = {(src, label, dst) for src, dst, label in edges}
    missing = table - drawn
    assert not missing, f"transitions missing from the README diagram: {sorted(missing)}"

    assert ("[*]", "QUEUED", "") in edges
    assert ("CLEANUP", "DONE", "cleaned") in edges
    assert ("CLEANUP", "FAILED", "cleaned") in edges
    extra = {
        (src, label, dst)
        for src, label, dst in drawn
        if src not in ("[*]", "CLEANUP")
        and dst != "[*]"
        and not (dst == "CLEANUP" and re.sub(r"\s+", "", label) == "error/cancel")
        and (src, label, dst) not in table
    }
    assert not extra, f"edges in the README diagram that the table lacks: {sorted(extra)}"
