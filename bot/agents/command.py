"""The command agent: any command-line agent, run once per phase (DESIGN §4's contract)."""

from __future__ import annotations

from pathlib import Path

from bot.agents.base import AgentOutput, AgentRequest, parse_plan, parse_review
from bot.agents.config import AgentSpec
from bot.agents.prompts import plan_json, render_prompt
from bot.errors import AgentError
from bot.runner import EnvPolicy, Runner
from bot.sandbox import Confinement

# stderr kept in the task's error when the agent fails.
_STDERR_TAIL = 2000
# Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN); stay clear of it.
_MAX_ARGUMENT = 120 * 1024


class CommandAgent:
    """Runs `spec.command` in the clone with the phase's prompt and files."""

    def __init__(self, spec: AgentSpec, runner: Runner, default_timeout: float) -> None:
        self.name = spec.name
        self.spec = spec
        self.runner = runner
        self.timeout = spec.timeout or default_timeout
        # Besides the clone, what the configuration lets it write (its own caches, say).
        self.writable = tuple(Path(p).expanduser().absolute() for p in spec.writable_paths)

    def _write_inputs(self, request: AgentRequest, prompt: str) -> dict[str, str]:
        folder = request.task_dir / "agent"
        folder.mkdir(parents=True, exist_ok=True)

        def put(name: str, text: str) -> str:
            path = folder / name
            path.write_text(text, "utf-8")
            return str(path)

        env = {
            "NIMBUS_PHASE": request.phase,
            "NIMBUS_TASK_ID": request.task_id,
            "NIMBUS_TASK_DESCRIPTION": request.description,
            "NIMBUS_PROMPT_FILE": put(f"prompt-{request.phase}.md", prompt),
            "NIMBUS_CONTEXT_FILE": put("context.md", request.context),
        }
        if request.phase in ("implement", "fix"):
            env["NIMBUS_PLAN_FILE"] = put("plan.json", plan_json(request.plan))
        if request.phase == "fix":
            env["NIMBUS_FAILURES_FILE"] = put("failures.txt", request.failures or "")
        if request.phase == "review":
            env["NIMBUS_DIFF_FILE"] = put("diff.patch", request.diff or "")
        return env

    async def run(self, request: AgentRequest) -> AgentOutput:
        prompt = render_prompt(request)
        nimbus_env = self._write_inputs(request, prompt)
        argv = [part.replace("{prompt}", prompt) for part in self.spec.command]
        if any(len(part.encode()) > _MAX_ARGUMENT for part in argv):
            raise AgentError(
                f"agent '{self.name}': the {request.phase} prompt is too long for one command-line"
                " argument; read it from NIMBUS_PROMPT_FILE instead of using {prompt}"
            )
        policy = EnvPolicy(
            home=request.task_dir / "home",
            pass_env=self.spec.pass_env,
            # The configuration's values first, so that Nimbus's own variables always win.
            extra={**self.spec.env, **nimbus_env},
        )
        confinement = Confinement(
            request.workdir,
            network=self.spec.network,
            writable=self.writable,
            # The phase's inputs (prompt, plan, diff), written beside the clone.
            inputs=(request.task_dir / "agent",),
        )
        result = await self.runner.run(
            argv, cwd=request.workdir, timeout=self.timeout, env=policy, confinement=confinement
        )
        where = f"agent '{self.name}' ({request.phase})"
        if result.timed_out:
            raise AgentError(f"{where} did not finish within {self.timeout:.0f}s and was stopped")
        if result.exit_code != 0:
            tail = result.stderr.strip()[-_STDERR_TAIL:] or "(no output on stderr)"
            raise AgentError(f"{where} exited with code {result.exit_code}: {tail}")
        if request.phase == "plan":
            return AgentOutput(plan=parse_plan(result.stdout), seconds=result.duration)
        if request.phase == "review":
            return AgentOutput(review=parse_review(result.stdout), seconds=result.duration)
        return AgentOutput(seconds=result.duration)
