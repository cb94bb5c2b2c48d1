"""The sandbox of repository commands (DESIGN §7): what a hostile command can reach, and not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

from bot.runner import EnvPolicy, Runner
from bot.sandbox import Confinement, Limits, Sandbox
from tests.conftest import API_KEY, make_repo

# CI installs bubblewrap and sets this: there, a missing bwrap is a failure, not a skip.
REQUIRED = os.environ.get("NIMBUS_REQUIRE_BWRAP") == "1"
needs_bwrap = pytest.mark.skipif(
    not shutil.which("bwrap") and not REQUIRED, reason="bubblewrap is not installed"
)


def unavailable(why: str) -> None:
    """Skip for want of something this machine lacks; under CI (REQUIRED) that is a failure."""
    if REQUIRED:
        pytest.fail(f"required under CI: {why}")
    pytest.skip(why)


KEY_TEXT = "-----BEGIN RSA PRIVATE KEY-----\nsandbox-test-key\n-----END RSA PRIVATE KEY-----\n"


@pytest.fixture
def outside_tmp():
    """A folder outside /tmp, which the sandbox replaces wholesale: what is hidden there is
    hidden by name, the mechanism under test."""
    folder = Path(tempfile.mkdtemp(prefix="nimbus-sandbox-", dir="/var/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class World:
    """A data folder laid out as Nimbus's, a key outside it, and a runner confining commands."""

    def __init__(self, root: Path, limits: Limits | None = None, mode: str = "auto") -> None:
        self.root = root
        self.data = root / "data"
        self.clone = self.data / "tasks" / "task-1" / "repo"
        self.home = self.data / "tasks" / "task-1" / "home"
        self.other = self.data / "tasks" / "task-2" / "repo"
        for folder in (self.clone / ".git", self.other):
            folder.mkdir(parents=True)
        (self.other / "secret.txt").write_text("another task's work")
        (self.data / "nimbus.db").write_text("the database")
        self.key = root / "keys" / "app.pem"
        self.key.parent.mkdir()
        self.key.write_text(KEY_TEXT)
        self.server_home = root / "server-home"
        for name, text in {".ssh/id_ed25519": "ssh key", ".toolchain/tool": "a tool"}.items():
            (self.server_home / name).parent.mkdir(parents=True, exist_ok=True)
            (self.server_home / name).write_text(text)
        self.sandbox = Sandbox(
            mode, [self.data, self.key], limits or Limits(), server_home=self.server_home
        )
        self.runner = Runner(
            server_env={**os.environ, "NIMBUS_API_KEY": API_KEY}, sandbox=self.sandbox
        )

    async def run(self, script: str, *, network: bool = False, timeout: float = 30):
        return await self.runner.run(
            ["sh", "-c", script],
            cwd=self.clone,
            timeout=timeout,
            env=EnvPolicy(home=self.home),
            confinement=Confinement(self.clone, network=network),
        )


@pytest.fixture
async def world(outside_tmp):
    made = World(outside_tmp)
    await made.runner.check_sandbox()
    if REQUIRED:
        assert made.runner.isolated, made.sandbox.reason
    elif not made.runner.isolated:
        unavailable(f"bwrap cannot isolate here: {made.sandbox.reason}")
    yield made
    made.sandbox.close()


@pytest.fixture
def listener():
    """A TCP server on the host's loopback: reachable only from where the network is shared."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


CONNECT = (
    f"{sys.executable} -c \"import socket,sys; socket.create_connection(('127.0.0.1',"
    " int(sys.argv[1])), 3); print('connected')\" {port}"
)


@needs_bwrap
async def test_nimbus_files_and_other_tasks_are_invisible(world):
    result = await world.run(
        f"cat {world.key}; cat {world.data / 'nimbus.db'}; cat {world.other / 'secret.txt'};"
        f" ls {world.data}; ls {world.data / 'tasks'}; echo done"
    )
    assert result.ok, result.output
    assert "sandbox-test-key" not in result.output
    assert "the database" not in result.output
    assert "another task's work" not in result.output
    # Only this task's own folders are there.
    assert "task-2" not in result.stdout
    assert result.stdout.strip().endswith("done")


@needs_bwrap
async def test_credentials_in_the_servers_home_are_hidden_and_toolchains_are_not(world):
    home = world.server_home
    result = await world.run(f"cat {home}/.ssh/id_ed25519; cat {home}/.toolchain/tool")
    assert "ssh key" not in result.output
    assert "a tool" in result.stdout


@needs_bwrap
async def test_the_environment_holds_nothing_of_nimbus(world):
    result = await world.run("env")
    assert result.ok
    assert API_KEY not in result.stdout
    assert "NIMBUS_" not in result.stdout
    assert f"HOME={world.home}" in result.stdout


@needs_bwrap
async def test_the_clone_is_writable_and_its_git_folder_is_not(world):
    result = await world.run(
        "echo made > made.txt && echo home > $HOME/h.txt && echo tmp > $TMPDIR/t.txt"
        " && echo private > /tmp/p.txt && echo ok;"
        " echo hook > .git/hooks-planted 2>&1 || echo git-refused;"
        " echo x > /usr/planted 2>&1 || echo system-refused"
    )
    assert (world.clone / "made.txt").read_text() == "made\n"
    assert (world.home / "h.txt").read_text() == "home\n"
    assert "ok" in result.stdout
    assert "git-refused" in result.stdout and not (world.clone / ".git" / "hooks-planted").exists()
    assert "system-refused" in result.stdout and not _on_host("/usr/planted")
    # /tmp is the command's own: nothing it writes there reaches the host's.
    assert not _on_host("/tmp/p.txt")


@needs_bwrap
async def test_tests_get_no_network_and_setup_does(world, listener):
    offline = await world.run(CONNECT.format(port=listener))
    assert "connected" not in offline.stdout
    assert "Connection refused" in offline.stderr or "Network is unreachable" in offline.stderr
    online = await world.run(CONNECT.format(port=listener), network=True)
    assert online.stdout.strip() == "connected", online.output


@needs_bwrap
async def test_nothing_a_command_starts_outlives_it(world, tmp_path):
    marker = world.clone / "still-running"
    result = await world.run(f"(sleep 2; echo late > {marker}) & echo started")
    assert result.ok and result.stdout.strip() == "started"
    await asyncio.sleep(2.5)
    assert not marker.exists()


FORK_BOMB = (
    f'{sys.executable} -c "import subprocess\n'
    "n = 0\n"
    "try:\n"
    "    for n in range(1, 500): subprocess.Popen(['sleep', '30'])\n"
    "except OSError as exc: print('refused', exc.errno)\n"
    "print('spawned', n)\""
)


@needs_bwrap
async def test_a_fork_bomb_meets_the_process_cap(outside_tmp):
    world = World(outside_tmp, Limits(processes=64))
    await world.runner.check_sandbox()
    if world.sandbox.process_cap_unavailable() and os.geteuid() == 0:
        unavailable("no cgroup for a process cap here, and RLIMIT_NPROC does not hold for root")
    try:
        result = await world.run(FORK_BOMB, timeout=20)
    finally:
        world.sandbox.close()
    assert "refused 11" in result.stdout, result.output  # EAGAIN
    assert int(result.stdout.split()[-1]) < 64
    # Its 60-odd sleepers went with it (the PID namespace), long before their 30 s.
    assert result.duration < 15


@needs_bwrap
async def test_file_size_and_memory_limits_stop_the_command_not_nimbus(outside_tmp):
    world = World(outside_tmp, Limits(memory_mb=256, file_mb=8))
    await world.runner.check_sandbox()
    try:
        big_file = await world.run("head -c 20000000 /dev/zero > big.bin; echo exit=$?")
        hog = await world.run(
            f"{sys.executable} -c \"b = bytearray(1024 * 1024 * 1024); print('allocated')\""
        )
    finally:
        world.sandbox.close()
    assert (world.clone / "big.bin").stat().st_size <= 8 * 2**20
    assert "exit=0" not in big_file.stdout
    assert "allocated" not in hog.stdout
    assert "MemoryError" in hog.stderr


@needs_bwrap
@pytest.mark.parametrize(
    "program",
    [
        ["java", "-version"],
        ["node", "-e", "console.log(Array(1e6).fill(1).length)"],
        [sys.executable, "-c", "import sqlite3, ssl; print('python')"],
    ],
    ids=["jvm", "node", "python"],
)
async def test_real_toolchains_run_under_the_default_limits(world, program):
    if not shutil.which(program[0]):
        unavailable(f"{program[0]} is not installed")
    result = await world.runner.run(
        program,
        cwd=world.clone,
        timeout=60,
        env=EnvPolicy(home=world.home),
        confinement=Confinement(world.clone),
    )
    assert result.ok, result.output


async def test_without_bwrap_commands_still_run_limited_and_it_says_why(outside_tmp):
    world = World(outside_tmp)
    world.sandbox.bwrap = None
    await world.runner.check_sandbox()
    assert not world.runner.isolated
    assert "not installed" in world.sandbox.reason
    result = await world.run("echo hello; env")
    assert result.stdout.startswith("hello")
    assert API_KEY not in result.stdout


async def test_a_bwrap_that_cannot_run_is_reported(outside_tmp):
    world = World(outside_tmp)
    world.sandbox.bwrap = "/bin/false"
    await world.runner.check_sandbox()
    assert not world.runner.isolated
    assert "bwrap cannot run here" in world.sandbox.reason


def _on_host(path: str) -> bool:
    return os.path.exists(path)


PROBE = """\
import os, pathlib, socket


def readable(path):
    try:
        return pathlib.Path(path).read_bytes()
    except OSError:
        return b""


def test_reached_nothing():
    assert readable({key!r}) == readable({db!r}) == b""
    tasks = sorted(p.name for p in pathlib.Path({tasks!r}).iterdir())
    assert tasks == [os.environ["NIMBUS_TASK_ID"]]
    assert [name for name in os.environ if name.startswith("NIMBUS_")] == ["NIMBUS_TASK_ID"]
    assert {api_key!r} not in str(os.environ)
    try:
        socket.create_connection(("127.0.0.1", {port}), 3)
    except OSError:
        pass
    else:
        raise AssertionError("reached the network")


def test_the_probe_ran():
    raise AssertionError("this one fails on purpose: the module was collected and run")
"""


@needs_bwrap
async def test_a_hostile_repositorys_tests_reach_nothing_through_a_real_task(
    outside_tmp, start_server, settings, listener, monkeypatch
):
    """End to end: the repository's own tests probe what they should not reach."""
    key = outside_tmp / "app.pem"
    key.write_text(KEY_TEXT)
    settings = settings.with_overrides(github_private_key_path=key)
    monkeypatch.setenv("NIMBUS_API_KEY", API_KEY)
    probe = PROBE.format(
        key=str(key),
        db=str(settings.db_path),
        tasks=str(settings.tasks_dir),
        api_key=API_KEY,
        port=listener,
    )
    remote = make_repo(outside_tmp / "hostile", files={"tests/test_probe.py": probe})
    server = await start_server(settings)
    repo_id = await server.register(remote)
    task = await server.create_task(repo_id, "Add multiply", auto_approve=True)
    task = await server.until_ended(task["id"])
    assert task["status"] == "completed", task["error"]
    events = await server.app.state.services.store.events_after(task["id"], 0)
    baseline = next(
        e.fields["message"] for e in events if "baseline" in e.fields.get("message", "")
    )
    # The probe failed only where it meant to: everything it tried was refused.
    assert "test_the_probe_ran" in baseline
    assert "test_reached_nothing" not in baseline


def test_cgroups_left_by_nimbus_processes_that_are_gone_are_removed(outside_tmp):
    sandbox = Sandbox("auto", [], Limits())
    if sandbox.process_cap_unavailable():
        unavailable("no cgroup for a process cap here")
    parent = sandbox._cgroups.parent
    stale = parent / "nimbus-999999999"  # above any pid_max: no such process
    stale.mkdir()
    try:
        again = Sandbox("auto", [], Limits())
        assert not stale.exists()
        assert sandbox._cgroups.exists()  # this process's own is kept
        again.close()
    finally:
        with contextlib.suppress(OSError):
            stale.rmdir()
        sandbox.close()
