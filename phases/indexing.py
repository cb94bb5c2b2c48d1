"""INDEXING: inventory, repository configuration, test command, skill, and the baseline run."""

from __future__ import annotations

import re
from pathlib import Path

from bot.errors import ConfigError, PhaseError
from bot.git import safe_branch
from bot.inventory import Inventory, detect_test_command, take_inventory
from bot.models import Task
from bot.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.testresults import TestRun
from phases.context import PhaseRun, Step
from phases.machine import Trigger
from phases.repo_commands import run_setup, run_tests

_MAX_CONFIG_BYTES = 256 * 1024
# How many paths the repository overview lists before summarising the rest.
_MAX_LISTED_FILES = 400


def task_branch(task: Task, prefix: str) -> str:
    """`nimbus/<task-id>`, or `nimbus/issue-<n>-<slug>` for a task from a GitHub issue."""
    source = task.source or {}
    if source.get("type") != "github_issue":
        return safe_branch(f"{prefix}{task.id}")
    words = re.findall(r"[a-z0-9]+", str(source.get("title") or "").lower())
    slug = "-".join(words)[:40].strip("-") or "task"
    return safe_branch(f"{prefix}issue-{source['issue']}-{slug}")


def read_in_clone(clone: Path, relative: str, limit: int = _MAX_CONFIG_BYTES) -> str | None:
    """A small text file of the clone, or None; never follows a link out of the clone."""
    path = (clone / relative).resolve()
    if not path.is_relative_to(clone.resolve()) or not path.is_file():
        return None
    if path.stat().st_size > limit:
        return None
    return path.read_text("utf-8", errors="replace")


def render_context(inventory: Inventory, config: RepoConfig, test_command: str | None) -> str:
    """The repository overview every agent gets (a ranked map comes with the index)."""
    languages = ", ".join(f"{k} ({v})" for k, v in inventory.languages.items()) or "unknown"
    listed = inventory.files[:_MAX_LISTED_FILES]
    more = len(inventory.files) - len(listed)
    lines = [
        f"Languages: {languages}",
        f"Test command: {test_command or 'none found'}",
        f"Setup command: {config.setup_command or 'none'}",
        f"Protected paths (do not edit): {', '.join(config.protected_paths) or 'none'}",
        f"Files ({len(inventory.files)}):",
        *(f"  {p}" for p in listed),
    ]
    if more > 0:
        lines.append(f"  … and {more} more")
    return "\n".join(lines)


async def run(ctx: PhaseRun) -> Step:
    clone = ctx.require_clone()
    inventory = take_inventory(await ctx.git.tracked_files(clone))
    config_text = read_in_clone(clone, CONFIG_PATH)
    try:
        config, warnings = parse_repo_config(config_text)
    except ConfigError as exc:
        raise PhaseError(f"{exc}; fix the file on the default branch and retry") from None
    for warning in warnings:
        await ctx.log(warning)
    await ctx.log(f"indexed {inventory.summary}")

    branch = ctx.task.branch
    wanted = task_branch(ctx.task, config.branch_prefix)
    if branch != wanted:
        await ctx.git.run(["branch", "-M", wanted], cwd=clone)
        branch = wanted

    if config.test_command:
        test_command, source = config.test_command, CONFIG_PATH
    else:
        test_command = detect_test_command(inventory.files, lambda p: read_in_clone(clone, p))
        source = "detected"
    await ctx.log(f"test command: {test_command} ({source})" if test_command else "no tests found")

    skill = None
    if ctx.task.skill_name:
        skill = ctx.services.skills.load(ctx.task.skill_name, clone)
        await ctx.log(f"skill: {ctx.task.skill_name}")

    baseline: TestRun | None = None
    if test_command:
        await run_setup(ctx, config.setup_command)
        baseline, result = await run_tests(ctx, test_command)
        if baseline.passed:
            await ctx.log(f"baseline: tests pass ({result.duration:.1f}s)")
        else:
            named = f": {', '.join(sorted(baseline.failures)[:10])}" if baseline.failures else ""
            await ctx.log(
                f"baseline: tests already fail before any change (exit code"
                f" {baseline.exit_code}){named}; only new failures will count"
            )
    state = {
        **ctx.task.state,
        "config_text": config_text,
        "test_command": test_command,
        "context": render_context(inventory, config, test_command),
        "skill": skill,
        "baseline": baseline.to_json() if baseline else None,
        "languages": inventory.languages,
        "file_count": len(inventory.files),
    }
    return Step(Trigger.INDEXED, changes={"state": state, "branch": branch})
