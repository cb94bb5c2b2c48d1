"""IMPLEMENTING: the agent changes the clone, starting from the untouched base every time."""

from __future__ import annotations

from phases.changes import checkpoint
from phases.context import PhaseRun, Step
from phases.machine import Trigger


async def run(ctx: PhaseRun) -> Step:
    clone = ctx.require_clone()
    await ctx.git.reset_to(clone, ctx.task.state["base_sha"])
    agent = ctx.services.agents.get(ctx.task.agent_name)
    await ctx.log(f"implementing the plan with agent '{agent.name}'")
    output = await agent.run(ctx.agent_request("implement"))
    return await checkpoint(ctx, "implement", output, Trigger.IMPLEMENTED, require_change=True)
