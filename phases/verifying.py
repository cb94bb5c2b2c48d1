"""VERIFYING: the repository's tests on the change, judged against the baseline."""

from __future__ import annotations

from bot.testresults import TestRun, judge, trim_output
from phases.context import PhaseRun, Step
from phases.machine import Trigger, verification_trigger
from phases.repo_commands import run_setup, run_tests


async def run(ctx: PhaseRun) -> Step:
    clone = ctx.require_clone()
    state = ctx.task.state
    await ctx.git.reset_to(clone, state["checkpoint_sha"])
    config = ctx.config
    command = state.get("test_command")
    attempts = ctx.task.fix_attempts
    if not command:
        await ctx.log("no tests found: nothing to verify")
        verification = {
            "passed": True,
            "summary": "no tests found",
            "command": None,
            "exit_code": None,
            "new_failures": [],
            "preexisting_failures": [],
            "fix_attempts": attempts,
        }
        return Step(Trigger.PASSED, changes={"verification": verification})

    await run_setup(ctx, config.setup_command, network=config.setup_network)
    await ctx.log(f"running tests: {command}")
    current, result = await run_tests(ctx, command)
    baseline = TestRun.from_json(state["baseline"]) if state.get("baseline") else None
    verdict = judge(current, baseline)
    await ctx.log(f"tests: {verdict.summary} ({result.duration:.1f}s)")
    verification = {
        "passed": verdict.passed,
        "summary": verdict.summary,
        "command": command,
        "exit_code": result.exit_code,
        "new_failures": list(verdict.new_failures),
        "preexisting_failures": list(verdict.preexisting),
        "fix_attempts": attempts,
        "output_tail": trim_output(result.output, 4000),
    }
    trigger = verification_trigger(verdict.passed, attempts, config.max_fix_attempts)
    changes: dict = {"verification": verification}
    if trigger == Trigger.TESTS_FAILED:
        changes["fix_attempts"] = attempts + 1
        changes["state"] = {**state, "fix_reason": "tests", "fix_input": trim_output(result.output)}
    elif trigger == Trigger.GAVE_UP:
        await ctx.log(
            f"tests still fail after {attempts} fix round{'s' if attempts != 1 else ''}:"
            " the person approving the diff will see it"
        )
    return Step(trigger, changes=changes)
