"""FIXING: the agent repairs what verification or review found, from the last checkpoint."""

from __future__ import annotations

from phases.changes import checkpoint
from phases.context import PhaseRun, Step
from phases.machine import Trigger


async def run(ctx: PhaseRun) -> Step:
    clone = ctx.require_clone()
    await ctx.git.reset_to(clone, ctx.task.state["checkpoint_sha"])
    reason = ctx.task.state.get("fix_reason", "tests")
    if reason == "review":
        await ctx.log("fixing the review's blocking findings")
    else:
        await ctx.log(f"fix round {ctx.task.fix_attempts} of {ctx.config.max_fix_attempts}")
    diff = await ctx.services.store.get_diff(ctx.task.id)
    agent = ctx.services.agents.get(ctx.task.agent_name)
    request = ctx.agent_request("fix", failures=ctx.task.state.get("fix_input"), diff=diff)
    output = await agent.run(request)
    return await checkpoint(ctx, "fix", output, Trigger.FIXED, require_change=False)
