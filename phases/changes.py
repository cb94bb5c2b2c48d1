"""Taking what an agent changed: protected paths refused, a checkpoint commit, the diff."""

from __future__ import annotations

from bot.agents.base import AgentOutput
from bot.errors import PhaseError
from phases.context import PhaseRun, Step
from phases.machine import Trigger


def diff_stats(diff: str) -> tuple[int, int, int]:
    """Files, added lines and removed lines of a unified diff."""
    files = added = removed = 0
    for line in diff.splitlines():
        if line.startswith("diff --git "):
            files += 1
        elif line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return files, added, removed


async def checkpoint(
    ctx: PhaseRun, label: str, output: AgentOutput, trigger: Trigger, *, require_change: bool
) -> Step:
    """Commit the agent's work on the task branch so the next phase can restart from it."""
    clone, base = ctx.workdir, ctx.task.state["base_sha"]
    config = ctx.config
    changed = await ctx.git.changed_paths(clone, base)
    refused = [path for path in changed if config.is_protected(path)]
    if refused:
        await ctx.git.restore_paths(clone, base, refused)
        await ctx.log(f"refused changes to protected paths: {', '.join(refused)}")
    sha = await ctx.git.commit_all(clone, f"nimbus: {label} checkpoint")
    diff = await ctx.git.diff(clone, base, sha)
    if require_change and not diff.strip():
        raise PhaseError(f"the agent finished {label} without changing any file")
    files, added, removed = diff_stats(diff)
    await ctx.log(f"{label}: {files} file{'s' if files != 1 else ''} changed (+{added} -{removed})")
    return Step(
        trigger,
        changes={
            "diff": diff,
            "state": {**ctx.task.state, "checkpoint_sha": sha},
            "usage": ctx.meter.as_dict(),
        },
    )
