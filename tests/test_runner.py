"""Running commands: exit codes, timeouts and cancels that end the whole group, a scrubbed env."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from bot.runner import EnvPolicy, Runner

SERVER_ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "USER": "nimbus",
    "SSH_AUTH_SOCK": "/tmp/agent.sock",
    "ANTHROPIC_API_KEY": "agent-own-key",
    "NIMBUS_API_KEY": "server-api-key",
    "NIMBUS_GITHUB_WEBHOOK_SECRET": "webhook-secret",
    "LEAKED_COPY": "model-secret-value",
    "DATABASE_URL": "postgres://nimbus:model-secret-value@db/nimbus",
}
SECRETS = ("server-api-key", "model-secret-value", "webhook-secret")


@pytest.fixture
def runner() -> Runner:
    return Runner(SERVER_ENV, secrets=SECRETS)


@pytest.fixture
def policy(tmp_path: Path) -> EnvPolicy:
    return EnvPolicy(home=tmp_path / "home")


def alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_soon(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def pid_in(path: Path) -> int | None:
    """The pid in `path` once its line is complete."""
    text = path.read_text() if path.exists() else ""
    return int(text) if text.endswith("\n") else None


async def read_pid(path: Path, within: float = 5.0) -> int:
    """The pid a command writes to `path`, once it has written it."""
    deadline = time.monotonic() + within
    while (pid := pid_in(path)) is None:
        assert time.monotonic() < deadline, f"{path} was never written"
        await asyncio.sleep(0.01)
    return pid


async def test_successful_command(runner, policy, tmp_path):
    result = await runner.run(
        ["sh", "-c", "echo out; echo err >&2; pwd"], cwd=tmp_path, timeout=10, env=policy
    )
    assert result.ok
    assert (result.exit_code, result.timed_out) == (0, False)
    assert result.stdout == f"out\n{tmp_path}\n"
    assert result.stderr == "err\n"
    assert result.output == f"out\n{tmp_path}\nerr"
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; pwd")
    assert result.duration >= 0


async def test_failing_command_reports_its_exit_code(runner, policy, tmp_path):
    result = await runner.run(
        ["sh", "-c", "echo no >&2; exit 3"], cwd=tmp_path, timeout=10, env=policy
    )
    assert not result.ok
    assert (result.exit_code, result.timed_out, result.stderr) == (3, False, "no\n")


async def test_stdin_is_given_to_the_command(runner, policy, tmp_path):
    result = await runner.run(["cat"], cwd=tmp_path, timeout=10, env=policy, stdin=b"hello")
    assert result.stdout == "hello"


async def test_without_stdin_the_command_reads_nothing(runner, policy, tmp_path):
    result = await runner.run(["cat"], cwd=tmp_path, timeout=10, env=policy)
    assert (result.exit_code, result.stdout) == (0, "")


async def test_timeout_kills_the_whole_process_group(runner, policy, tmp_path):
    script = "sleep 300 & echo $! > grandchild.pid; echo started; sleep 300"
    started = time.monotonic()
    result = await runner.run(["sh", "-c", script], cwd=tmp_path, timeout=0.5, env=policy)
    assert time.monotonic() - started < 5
    assert result.timed_out
    assert result.exit_code is None
    assert not result.ok
    assert result.stdout == "started\n"
    assert gone_soon(int((tmp_path / "grandchild.pid").read_text()))


async def test_children_left_behind_are_ended_when_the_command_exits(runner, policy, tmp_path):
    script = "sleep 300 >/dev/null 2>&1 & echo $! > grandchild.pid"
    result = await runner.run(["sh", "-c", script], cwd=tmp_path, timeout=10, env=policy)
    assert result.exit_code == 0
    assert gone_soon(int((tmp_path / "grandchild.pid").read_text()))


async def test_cancelling_the_caller_kills_the_process_group(runner, policy, tmp_path):
    script = "echo $$ > shell.pid; sleep 300 & echo $! > grandchild.pid; wait"
    job = asyncio.create_task(
        runner.run(["sh", "-c", script], cwd=tmp_path, timeout=60, env=policy)
    )
    grandchild = await read_pid(tmp_path / "grandchild.pid")
    shell = await read_pid(tmp_path / "shell.pid")
    assert alive(grandchild)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert gone_soon(shell)
    assert gone_soon(grandchild)


async def test_environment_has_only_path_lang_home_and_what_is_named(runner, tmp_path):
    policy = EnvPolicy(
        home=tmp_path / "agent-home",
        pass_env=("ANTHROPIC_API_KEY", "MISSING_VARIABLE"),
        extra={"NIMBUS_PHASE": "plan", "AIDER_MODEL": "sonnet"},
    )
    result = await runner.run(["env"], cwd=tmp_path, timeout=10, env=policy)
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert seen == {
        "PATH": SERVER_ENV["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path / "agent-home"),
        "ANTHROPIC_API_KEY": "agent-own-key",
        "NIMBUS_PHASE": "plan",
        "AIDER_MODEL": "sonnet",
    }
    assert (tmp_path / "agent-home").is_dir()


def test_home_is_never_the_servers(runner, tmp_path):
    env = runner.environment(EnvPolicy(home=tmp_path, pass_env=("HOME",)))
    assert env["HOME"] == str(tmp_path)


def test_path_and_lang_have_defaults(tmp_path):
    env = Runner({}, secrets=()).environment(EnvPolicy(home=tmp_path))
    assert env == {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}


def test_server_nimbus_variables_are_never_passed(runner, tmp_path):
    policy = EnvPolicy(home=tmp_path, pass_env=("NIMBUS_API_KEY", "NIMBUS_GITHUB_WEBHOOK_SECRET"))
    env = runner.environment(policy)
    assert not [name for name in env if name.startswith("NIMBUS_")]


def test_variable_whose_value_is_a_secret_is_never_passed(runner, tmp_path):
    policy = EnvPolicy(
        home=tmp_path, pass_env=("LEAKED_COPY",), extra={"TOKEN": "server-api-key", "OK": "fine"}
    )
    env = runner.environment(policy)
    assert "LEAKED_COPY" not in env
    assert "TOKEN" not in env
    assert env["OK"] == "fine"


def test_variable_whose_value_contains_a_secret_is_never_passed(runner, tmp_path):
    """DESIGN §7: no secret appears in the environment of a command, whole or in part."""
    env = runner.environment(EnvPolicy(home=tmp_path, pass_env=("DATABASE_URL",)))
    assert not [name for name, value in env.items() if any(s in value for s in SECRETS)]


async def test_output_over_the_limit_keeps_its_tail(runner, policy, tmp_path):
    program = "import sys\nfor i in range(1, 20001): print(i)\nprint('last', file=sys.stderr)"
    result = await runner.run(
        [sys.executable, "-c", program], cwd=tmp_path, timeout=30, env=policy, output_limit=1000
    )
    assert result.exit_code == 0
    marker = "[… earlier output cut …]\n"
    assert result.stdout.startswith(marker)
    kept = result.stdout.removeprefix(marker)
    assert len(kept) == 1000
    assert kept.endswith("19999\n20000\n")
    assert "\n1\n2\n3\n" not in result.stdout
    assert result.stderr == "last\n"


async def test_missing_program_is_exit_127_with_a_message(runner, policy, tmp_path):
    result = await runner.run(
        ["nimbus-no-such-program", "--help"], cwd=tmp_path, timeout=10, env=policy
    )
    assert result.exit_code == 127
    assert not result.ok
    assert not result.timed_out
    assert "cannot run nimbus-no-such-program" in result.stderr


async def test_program_that_is_not_executable_is_exit_127(runner, policy, tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = await runner.run([str(script)], cwd=tmp_path, timeout=10, env=policy)
    assert result.exit_code == 127
    assert f"cannot run {script}" in result.stderr
