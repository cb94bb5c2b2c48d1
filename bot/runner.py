"""The one way Nimbus runs a command on a repository: timeout, scrubbed environment, own group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.sandbox import Confinement, Sandbox

# Output beyond this is cut from the front: the end of a test run is where the verdict is.
DEFAULT_OUTPUT_LIMIT = 256 * 1024
# After the main process exits, how long its leftover children may keep the pipes open.
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class EnvPolicy:
    """A command's environment: `PATH`, `LANG`, its own `HOME`, and only what is named here."""

    home: Path
    pass_env: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def output(self) -> str:
        """Stdout then stderr, for people to read."""
        return "\n".join(part for part in (self.stdout.rstrip(), self.stderr.rstrip()) if part)


class _Tail:
    """Keeps the last `limit` bytes of a stream."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.cut = False

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[: len(self.data) - self.limit]
            self.cut = True

    def text(self) -> str:
        data = self.data[-self.limit :] if len(self.data) > self.limit else self.data
        prefix = "[… earlier output cut …]\n" if self.cut or len(self.data) > self.limit else ""
        return prefix + data.decode("utf-8", errors="replace")


async def _pump(stream: asyncio.StreamReader, tail: _Tail) -> None:
    while chunk := await stream.read(65536):
        tail.add(chunk)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class Runner:
    """Runs commands in their own process group; repository code confined by the sandbox."""

    def __init__(
        self,
        server_env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        sandbox: Sandbox | None = None,
    ) -> None:
        self.server_env = dict(os.environ if server_env is None else server_env)
        self.secrets = frozenset(s for s in secrets if s)
        self.sandbox = sandbox

    @property
    def isolated(self) -> bool:
        """Whether confined commands run inside bwrap (else only limited and scrubbed)."""
        return self.sandbox is not None and self.sandbox.isolated

    @property
    def isolation(self) -> str:
        """How confined commands run, or why they are not isolated."""
        return self.sandbox.reason if self.sandbox is not None else "no sandbox"

    async def check_sandbox(self) -> None:
        """Find out once whether bwrap works here (a container may forbid its namespaces)."""
        if self.sandbox is None:
            return
        probe = self.sandbox.probe_argv()
        if probe is None:
            self.sandbox.checked(False, "bwrap is not installed")
            return
        result = await self._run(probe, cwd=Path("/"), timeout=10, env=self.server_env)
        detail = (result.stderr.strip() or f"exit code {result.exit_code}")[:300]
        self.sandbox.checked(result.ok, f"bwrap cannot run here: {detail}")

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout: float,
        env: EnvPolicy,
        stdin: bytes | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        confinement: Confinement | None = None,
    ) -> CommandResult:
        """Run `argv`; on timeout or cancellation the whole process group is killed.

        With `confinement`, the command runs in the sandbox (DESIGN §7) with its own TMPDIR.
        """
        env.home.mkdir(parents=True, exist_ok=True)
        environment = self.environment(env)
        if confinement is None or self.sandbox is None:
            return await self._run(
                argv,
                cwd=cwd,
                timeout=timeout,
                env=environment,
                stdin=stdin,
                output_limit=output_limit,
            )
        tmp = env.home.parent / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        environment["TMPDIR"] = str(tmp)
        async with self.sandbox.process_cap() as cgroup:
            wrapped = self.sandbox.wrap(
                argv,
                confinement,
                home=env.home,
                tmp=tmp,
                timeout=timeout,
                path=environment["PATH"],
                cgroup=cgroup,
            )
            result = await self._run(
                wrapped,
                cwd=cwd,
                timeout=timeout,
                env=environment,
                stdin=stdin,
                output_limit=output_limit,
            )
        # What was asked for, not the sandbox's wrapping of it.
        return replace(result, argv=tuple(argv))

    def environment(self, policy: EnvPolicy) -> dict[str, str]:
        """The whole environment a command gets; never a secret of Nimbus's own."""
        env = {
            "PATH": self.server_env.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": self.server_env.get("LANG", "C.UTF-8"),
        }
        for name in policy.pass_env:
            if name in self.server_env and not name.startswith("NIMBUS_"):
                env[name] = self.server_env[name]
        env.update(policy.extra)
        env["HOME"] = str(policy.home)  # always the command's own, never the server's
        return {k: v for k, v in env.items() if not any(s in v for s in self.secrets)}

    async def _run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout: float,
        env: dict[str, str],
        stdin: bytes | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> CommandResult:
        started = time.monotonic()
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        )
        try:
            proc = await asyncio.shield(spawn)
        except OSError as exc:
            # Missing program, no permission, argument list too long: the command never ran.
            return CommandResult(tuple(argv), 127, "", f"cannot run {argv[0]}: {exc}", False, 0.0)
        except asyncio.CancelledError:
            # The process may already run (its pipes were still connecting): end its group.
            with contextlib.suppress(Exception):
                _kill_group((await spawn).pid)
            raise
        out, err = _Tail(output_limit), _Tail(output_limit)
        pumps = [
            asyncio.create_task(_pump(proc.stdout, out)),  # type: ignore[arg-type]
            asyncio.create_task(_pump(proc.stderr, err)),  # type: ignore[arg-type]
        ]
        timed_out = False
        try:
            if stdin is not None and proc.stdin is not None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    proc.stdin.write(stdin)
                    await proc.stdin.drain()
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(proc.pid)
                await proc.wait()
            _, pending = await asyncio.wait(pumps, timeout=_DRAIN_SECONDS)
            if pending:
                # A child left running in the background holds the pipes open: end it too.
                _kill_group(proc.pid)
                await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
        except BaseException:
            _kill_group(proc.pid)
            # Reap it, so no process outlives the run that started it (bounded: it was killed).
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(proc.wait()), _DRAIN_SECONDS)
            raise
        finally:
            for pump in pumps:
                pump.cancel()
        _kill_group(proc.pid)
        return CommandResult(
            argv=tuple(argv),
            exit_code=None if timed_out else proc.returncode,
            stdout=out.text(),
            stderr=err.text(),
            timed_out=timed_out,
            duration=time.monotonic() - started,
        )
