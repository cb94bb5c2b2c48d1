"""PLANNING: the agent writes a plan (again, with the person's feedback, after a revise)."""

from __future__ import annotations

from phases.context import PhaseRun, Step
from phases.machine import Trigger


async def run(ctx: PhaseRun) -> Step:
    ctx.require_clone()
    agent = ctx.services.agents.get(ctx.task.agent_name)
    if ctx.task.feedback:
        await ctx.log("revising the plan with the feedback given")
    output = await agent.run(ctx.agent_request("plan", feedback=ctx.task.feedback))
    plan = output.plan or []
    await ctx.log(f"plan ready: {len(plan)} step{'s' if len(plan) != 1 else ''}")
    return Step(
        Trigger.PLANNED,
        changes={"plan": plan, "feedback": None, "usage": ctx.meter.as_dict()},
        events=[ctx.event("plan", plan=plan)],
    )
