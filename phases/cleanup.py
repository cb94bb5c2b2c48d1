"""CLEANUP: on success commit and publish the branch; always remove the task's folder."""

from __future__ import annotations

from bot.agents.prompts import render_plan
from bot.models import Task
from phases.context import PhaseRun, Step
from phases.machine import Outcome, Trigger

_SUBJECT_LIMIT = 72


def commit_message(task: Task) -> str:
    """One clear commit: the task as its subject, then the plan and how it was verified."""
    first = task.description.strip().splitlines()[0] if task.description.strip() else task.id
    subject = first if len(first) <= _SUBJECT_LIMIT else first[: _SUBJECT_LIMIT - 1] + "…"
    parts = [subject]
    if task.description.strip() != first:
        parts.append(task.description.strip())
    if task.plan:
        parts.append("Plan:\n" + render_plan(task.plan))
    if task.verification:
        parts.append(f"Verification: {task.verification.get('summary')}")
    parts.append(f"Nimbus-Task: {task.id}")
    return "\n\n".join(parts) + "\n"


async def run(ctx: PhaseRun) -> Step:
    task = ctx.task
    if task.outcome != Outcome.COMPLETED:
        await ctx.remove_task_dir()
        await ctx.log("removed the task's working folder; nothing was pushed")
        return Step(Trigger.CLEANED)
    # Each finished step is recorded, so a rerun after a restart skips it.
    done = dict(task.state.get("cleanup", {}))
    try:
        if "commit_sha" not in done:
            clone = ctx.require_clone()
            # The approved diff is base..checkpoint: that tree, nothing a later run left behind.
            approved = task.state.get("checkpoint_sha") or "HEAD"
            sha = await ctx.git.squash(
                clone, task.state["base_sha"], commit_message(task), head=approved
            )
            done["commit_sha"] = sha
            await ctx.save_state({**task.state, "cleanup": done})
            await ctx.log(f"committed {sha[:12]}")
        if "published" not in done:
            clone = ctx.require_clone()
            delivery = await ctx.forge.publish(task, ctx.repo, clone, task.branch or "")
            done["published"] = {"branch": delivery.branch, "pr_url": delivery.pr_url}
            await ctx.save_state({**task.state, "cleanup": done})
            where = delivery.pr_url or f"branch {delivery.branch} on {ctx.repo.url}"
            await ctx.log(f"published: {where}")
    finally:
        await ctx.remove_task_dir()
    return Step(Trigger.CLEANED, changes={"pr_url": done["published"]["pr_url"]})
