"""The repository's own commands (setup and tests), run in the clone through the runner."""

from __future__ import annotations

from bot.errors import PhaseError
from bot.runner import CommandResult, EnvPolicy
from bot.sandbox import Confinement
from bot.testresults import TestRun, failed_tests
from phases.context import PhaseRun


async def run_shell(
    ctx: PhaseRun, command: str, timeout: float, *, network: bool = False
) -> CommandResult:
    """Run a command line from the repository's configuration with `sh -c`, in the sandbox."""
    runner = ctx.services.runner
    if not runner.isolated:
        await ctx.log(
            f"warning: `{command}` runs WITHOUT isolation ({runner.isolation}): it can read what"
            " Nimbus can read and reach the network"
        )
    policy = EnvPolicy(home=ctx.home, extra={"CI": "true", "NIMBUS_TASK_ID": ctx.task.id})
    return await runner.run(
        ["sh", "-c", command],
        cwd=ctx.workdir,
        timeout=timeout,
        env=policy,
        confinement=Confinement(ctx.workdir, network=network),
    )


async def run_setup(ctx: PhaseRun, command: str | None, *, network: bool = True) -> None:
    """Run the setup command, if any; a failure stops the task with its output.

    It gets the network unless the repository says `setup_network: false`: it installs things.
    """
    if not command:
        return
    timeout = ctx.services.settings.setup_timeout
    await ctx.log(f"setup: {command}" + ("" if network else " (no network)"))
    result = await run_shell(ctx, command, timeout, network=network)
    if result.timed_out:
        raise PhaseError(f"setup command `{command}` did not finish within {timeout:.0f}s")
    if not result.ok:
        raise PhaseError(
            f"setup command `{command}` failed (exit code {result.exit_code}):"
            f" {result.output[-1500:]}"
        )


async def run_tests(ctx: PhaseRun, command: str) -> tuple[TestRun, CommandResult]:
    """Run the tests on the committed state of the clone, and leave the clone as they found it.

    What a test run writes into the clone (reports, caches, rewritten files) is not the agent's
    work: left there, it would join the next diff people are asked to approve.
    """
    result = await run_shell(ctx, command, ctx.services.settings.test_timeout)
    run = TestRun(result.exit_code, failed_tests(result.output), result.timed_out)
    left = await ctx.git.discard_changes(ctx.workdir)
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        await ctx.log(f"discarded what the test run left in the clone: {shown}")
    return run, result
