"""REVIEWING: the agent reviews the final diff; a blocking finding goes back to FIXING once."""

from __future__ import annotations

from bot.errors import PhaseError
from phases.context import PhaseRun, Step
from phases.machine import Trigger

# Every follower receives every event: a huge diff is cut there (the API serves it whole).
DIFF_EVENT_LIMIT = 512 * 1024


def _findings(review: dict) -> str:
    lines = [review.get("summary") or ""]
    for c in review["comments"]:
        if c["blocking"]:
            where = f"{c['path']}:{c['line']}" if c.get("line") else c["path"]
            lines.append(f"- {where}: {c['body']}")
    return "\n".join(line for line in lines if line)


async def run(ctx: PhaseRun) -> Step:
    ctx.require_clone()
    diff = await ctx.services.store.get_diff(ctx.task.id) or ""
    agent = ctx.services.agents.get(ctx.task.agent_name)
    output = await agent.run(ctx.agent_request("review", diff=diff))
    review = output.review or {"summary": "", "comments": [], "blocking": False}
    usage = ctx.meter.as_dict()
    count = len(review["comments"])
    await ctx.log(
        f"review: {count} comment{'s' if count != 1 else ''}"
        + (" (blocking)" if review["blocking"] else "")
    )
    if review["blocking"] and ctx.task.review_fixes == 0:
        await ctx.log("the review found a blocking problem: one more round of FIXING")
        state = {**ctx.task.state, "fix_reason": "review", "fix_input": _findings(review)}
        return Step(
            Trigger.BLOCKING,
            changes={"review": review, "review_fixes": 1, "state": state, "usage": usage},
        )
    verification = ctx.task.verification or {}
    if ctx.task.auto_approve and verification.get("passed") is False:
        raise PhaseError(
            f"tests still fail after {ctx.task.fix_attempts} fix rounds"
            f" ({verification.get('summary')}); with auto_approve a failing change is not shipped"
        )
    return Step(
        Trigger.REVIEWED,
        changes={"review": review, "usage": usage},
        events=[ctx.event("diff", diff=_for_event(diff, ctx.task.id))],
    )


def _for_event(diff: str, task_id: str) -> str:
    """The diff as the event carries it: cut when huge (the whole one is at GET …/diff)."""
    if len(diff) <= DIFF_EVENT_LIMIT:
        return diff
    return diff[:DIFF_EVENT_LIMIT] + f"\n[… diff cut: GET /tasks/{task_id}/diff has all of it]\n"
