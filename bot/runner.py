"""The one way Nimbus runs a command on a repository: timeout, scrubbed environment, own group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
    """Runs commands in their own process group; the sandbox (DESIGN §7) plugs in here."""

    def __init__(
        self, server_env: Mapping[str, str] | None = None, secrets: Sequence[str] = ()
    ) -> None:
        self.server_env = dict(os.environ if server_env is None else server_env)
        self.secrets = frozenset(s for s in secrets if s)

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

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout: float,
        env: EnvPolicy,
        stdin: bytes | None = None,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
    ) -> CommandResult:
        """Run `argv`; on timeout or cancellation the whole process group is killed."""
        started = time.monotonic()
        env.home.mkdir(parents=True, exist_ok=True)
        spawn = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=self.environment(env),
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
