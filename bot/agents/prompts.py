"""Prompt templates, one file per phase, filled with the task's details."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from string import Template

from bot.agents.base import AgentRequest


@cache
def _template(phase: str) -> Template:
    text = resources.files("bot.agents").joinpath("prompts", f"{phase}.md").read_text("utf-8")
    return Template(text)


def render_plan(plan: list[dict] | None) -> str:
    if not plan:
        return "(none)"
    lines = []
    for n, step in enumerate(plan, start=1):
        files = f" ({', '.join(step['files'])})" if step.get("files") else ""
        lines.append(f"{n}. {step['title']}{files}")
        if step.get("detail"):
            lines.append(f"   {step['detail']}")
    return "\n".join(lines)


def render_prompt(request: AgentRequest) -> str:
    """The prompt for `request.phase`; the skill's text is added to every phase."""
    feedback = ""
    if request.feedback:
        feedback = (
            "\nA person asked for changes to the previous plan:\n"
            f"{request.feedback}\n\nPrevious plan:\n{render_plan(request.plan)}\n"
        )
    skill = f"\nInstructions for this kind of task:\n{request.skill}\n" if request.skill else ""
    return _template(request.phase).safe_substitute(
        description=request.description,
        feedback_section=feedback,
        context=request.context or "(not indexed)",
        skill_section=skill,
        plan=render_plan(request.plan),
        diff=request.diff or "(no changes yet)",
        failures=request.failures or "(none)",
        protected_paths=", ".join(request.protected_paths) or "(nothing)",
    )


def render_system(request: AgentRequest, tools: list[str]) -> str:
    """The system prompt of the built-in model agent, naming the tools of this phase."""
    name = "system-edit" if request.phase in ("implement", "fix") else "system"
    return _template(name).safe_substitute(tools=", ".join(tools), phase=request.phase)


def plan_json(plan: list[dict] | None) -> str:
    return json.dumps({"plan": plan or []}, indent=2)
