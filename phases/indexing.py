"""INDEXING: inventory, repository configuration, test command, skill, and the baseline run."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from bot.errors import ConfigError, PhaseError
from bot.git import safe_branch
from bot.index.build import build_index
from bot.index.rank import rank_files
from bot.index.repomap import render_map
from bot.inventory import Inventory, detect_test_command, take_inventory
from bot.models import Task
from bot.repo_config import CONFIG_PATH, RepoConfig, parse_repo_config
from bot.testresults import TestRun
from phases.context import PhaseRun, Step
from phases.machine import Trigger
from phases.repo_commands import run_setup, run_tests

_MAX_CONFIG_BYTES = 256 * 1024


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


def _folders(files: list[str]) -> str:
    """Files per top-level folder, largest first: the repository's shape in one line."""
    counts = Counter(f.split("/", 1)[0] if "/" in f else "." for f in files)
    shown = [
        f"{name}/ {n}" if name != "." else f"(top level) {n}" for name, n in counts.most_common(12)
    ]
    more = len(counts) - len(shown)
    return ", ".join(shown) + (f", and {more} more folders" if more > 0 else "")


def render_context(
    inventory: Inventory, config: RepoConfig, test_command: str | None, repo_map: str
) -> str:
    """What every agent gets about the repository: its overview and the task's repo map."""
    languages = ", ".join(f"{k} ({v})" for k, v in inventory.languages.items()) or "unknown"
    lines = [
        f"Languages: {languages}",
        f"Test command: {test_command or 'none found'}",
        f"Setup command: {config.setup_command or 'none'}",
        f"Protected paths (do not edit): {', '.join(config.protected_paths) or 'none'}",
        f"Files: {len(inventory.files)} ({_folders(inventory.files)})",
    ]
    if repo_map:
        lines += [
            "",
            "Repository map: the files most relevant to this task, most relevant first, with the"
            " line and first line of their main definitions:",
            repo_map,
        ]
    return "\n".join(lines)


async def _repo_map(ctx: PhaseRun, clone: Path) -> str:
    """Index the clone (cached by blob) and map it for the task, within the context budget."""
    settings = ctx.services.settings
    index = await build_index(clone, ctx.git, settings.index_cache_path)
    await ctx.log(f"index: {index.summary()}")
    description = ctx.task.description

    def mapped() -> str:
        return render_map(
            index, rank_files(index, description), description, settings.context_tokens
        )

    # Ranking a large repository takes a while: off the event loop like the indexing.
    return await asyncio.to_thread(mapped)


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
    repo_map = await _repo_map(ctx, clone)

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
        await run_setup(ctx, config.setup_command, network=config.setup_network)
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
        "context": render_context(inventory, config, test_command, repo_map),
        "skill": skill,
        "baseline": baseline.to_json() if baseline else None,
        "languages": inventory.languages,
        "file_count": len(inventory.files),
    }
    return Step(Trigger.INDEXED, changes={"state": state, "branch": branch})
