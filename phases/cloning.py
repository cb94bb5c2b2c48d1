"""CLONING: a fresh clone of the repository in the task's own folder, on the task's branch."""

from __future__ import annotations

from bot.errors import GitError
from phases.context import PhaseRun, Step
from phases.machine import Trigger

DEFAULT_BRANCH_PREFIX = "nimbus/"


async def run(ctx: PhaseRun) -> Step:
    # Idempotent: whatever an interrupted run left behind is thrown away.
    await ctx.remove_task_dir()
    ctx.task_dir.mkdir(parents=True)
    await ctx.forge.clone(ctx.repo, ctx.workdir, ctx.repo.default_branch)
    try:
        base = await ctx.git.head(ctx.workdir)
    except GitError:
        raise GitError(
            "the repository has no commits on its default branch: push a first commit"
        ) from None
    default_branch = await ctx.git.current_branch(ctx.workdir)
    branch = f"{DEFAULT_BRANCH_PREFIX}{ctx.task.id}"
    await ctx.git.run(["checkout", "--quiet", "-b", branch], cwd=ctx.workdir)
    if ctx.repo.default_branch is None:
        await ctx.services.store.set_default_branch(ctx.repo.id, default_branch)
    await ctx.log(f"cloned {ctx.repo.url} ({default_branch} at {base[:12]}); branch {branch}")
    state = {
        **ctx.task.state,
        "base_sha": base,
        "checkpoint_sha": base,
        "default_branch": default_branch,
    }
    return Step(Trigger.CLONED, changes={"branch": branch, "state": state})
