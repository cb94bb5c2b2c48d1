"""Confinement for commands run on repository code (DESIGN §7): bubblewrap, limits, a process cap.

A confined command sees the system read-only, its clone read-write (the clone's `.git`
read-only), its own HOME and TMPDIR, a private `/tmp`, and nothing of Nimbus: the data folder
(database, other tasks' clones, the index cache), the App's key, the agent configuration and the
credential stores of the server's home are hidden. It has no network unless granted, runs in its
own PID namespace (nothing it starts outlives it), and under resource limits that real toolchains
survive: data size rather than address space (which kills the JVM, Node and Go), file size, CPU
time, and a process count held by a cgroup (RLIMIT_NPROC does not hold for root).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("nimbus.sandbox")

MODES = ("auto", "bwrap", "off")

# Credential stores under the server's home: hidden, while the rest of the home (toolchains
# installed by pyenv, nvm, rustup, sdkman) stays readable.
CREDENTIALS = (
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".netrc",
    ".git-credentials",
    ".config/gh",
    ".config/hub",
    ".config/gcloud",
    ".config/git/credentials",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
    ".m2/settings.xml",
    ".gradle/gradle.properties",
)

# cgroup v1's pids hierarchy, or cgroup v2's unified one.
_CGROUP_ROOTS = (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup"))


@dataclass(frozen=True)
class Limits:
    """Resource limits of one confined command (each process of it, but for `processes`)."""

    memory_mb: int = 8192  # RLIMIT_DATA
    file_mb: int = 4096  # RLIMIT_FSIZE: the largest file it may write
    processes: int = 1024  # pids.max of its cgroup (RLIMIT_NPROC where there is none)


@dataclass(frozen=True)
class Confinement:
    """What one command may reach besides the system's read-only files."""

    clone: Path
    network: bool = False
    # Granted by the configuration: never a way into what Nimbus hides.
    writable: tuple[Path, ...] = ()
    # Nimbus's own files for this command (a command agent's prompt and plan), read-only.
    inputs: tuple[Path, ...] = ()


class Sandbox:
    """Wraps a command line in bwrap and prlimit; `isolated` says whether bwrap is in use."""

    def __init__(
        self,
        mode: str,
        hidden: Iterable[Path],
        limits: Limits,
        *,
        server_home: Path | None = None,
        bwrap: str | None = None,
        prlimit: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"sandbox mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.limits = limits
        self.bwrap = bwrap if bwrap is not None else shutil.which("bwrap")
        self.prlimit = prlimit if prlimit is not None else shutil.which("prlimit")
        home = [server_home / name for name in CREDENTIALS] if server_home else []
        self.hidden = tuple(dict.fromkeys(p.absolute() for p in [*hidden, *home]))
        self.isolated = False
        self.reason = "not checked yet"
        self._cgroups = _cgroup_parent()

    def checked(self, works: bool, why: str) -> None:
        """Record whether bwrap ran (see `probe_argv`); says so loudly when it did not."""
        self.isolated = works and self.mode != "off"
        if self.isolated:
            self.reason = f"isolated by {self.bwrap}"
            log.info("commands on repository code run in bubblewrap (%s)", self.bwrap)
            return
        self.reason = "NIMBUS_SANDBOX=off" if self.mode == "off" else why
        log.warning(
            "commands on repository code are NOT isolated (%s): they can read what this server"
            " can read and reach the network; install bubblewrap (Debian/Ubuntu: apt-get install"
            " bubblewrap) so that they are",
            self.reason,
        )

    def probe_argv(self) -> list[str] | None:
        """A harmless command that fails where bwrap cannot make its namespaces."""
        if self.mode == "off" or not self.bwrap:
            return None
        return [
            self.bwrap,
            "--die-with-parent",
            "--unshare-all",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--",
            "true",
        ]

    def wrap(
        self,
        argv: Sequence[str],
        confinement: Confinement,
        *,
        home: Path,
        tmp: Path,
        timeout: float,
        path: str,
        cgroup: Path | None = None,
    ) -> list[str]:
        """The command line that runs `argv` confined (only limited, when not isolated)."""
        wrapped = list(argv)
        if self.isolated:
            wrapped = [*self._bwrap_args(confinement, home, tmp, path, argv), "--", *argv]
        if self.prlimit:
            limits = [
                f"--data={self.limits.memory_mb * 2**20}",
                f"--fsize={self.limits.file_mb * 2**20}",
                # Per process; the wall-clock timeout stops the whole command anyway.
                f"--cpu={int(timeout * (os.cpu_count() or 1)) + 60}",
            ]
            if cgroup is None and os.geteuid() != 0:
                # Counts every process of this user, but holds where no cgroup can be made.
                limits.append(f"--nproc={self.limits.processes}")
            wrapped = [self.prlimit, *limits, "--", *wrapped]
        if cgroup is not None:
            # Joins the cgroup, then becomes the command: everything it starts is counted.
            # (PWD is the shell's own: the command's environment stays what the runner made.)
            join = 'echo $$ > "$0/cgroup.procs" && unset PWD && exec "$@"'
            wrapped = ["/bin/sh", "-c", join, str(cgroup), *wrapped]
        return wrapped

    def _bwrap_args(
        self, confinement: Confinement, home: Path, tmp: Path, path: str, argv: Sequence[str]
    ) -> list[str]:
        assert self.bwrap is not None
        args = [self.bwrap, "--die-with-parent", "--new-session", "--unshare-all"]
        if confinement.network:
            args.append("--share-net")
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        # The command's own programs stay reachable where the private /tmp covered them.
        for entry in _programs(argv, path):
            if _under(entry, Path("/tmp")) and not self._is_hidden(entry):
                args += ["--ro-bind-try", str(entry), str(entry)]
        for extra in confinement.writable:
            args += ["--bind-try", str(extra), str(extra)]
        # Hidden after what was granted: a path granted inside the data folder stays hidden.
        for secret in self.hidden:
            if secret.is_dir() and not secret.is_symlink():
                args += ["--tmpfs", str(secret)]
            elif secret.exists():
                args += ["--ro-bind", "/dev/null", str(secret)]
        clone = confinement.clone
        args += ["--bind", str(clone), str(clone)]
        if (clone / ".git").exists():
            args += ["--ro-bind", str(clone / ".git"), str(clone / ".git")]
        args += ["--bind", str(home), str(home), "--bind", str(tmp), str(tmp)]
        for given in confinement.inputs:
            args += ["--ro-bind", str(given), str(given)]
        return args

    def _is_hidden(self, path: Path) -> bool:
        return any(_under(path, secret) for secret in self.hidden)

    @contextlib.asynccontextmanager
    async def process_cap(self) -> AsyncIterator[Path | None]:
        """A cgroup capping the processes of one command, removed afterwards; None if none."""
        if self._cgroups is None:
            yield None
            return
        group = self._cgroups / f"cmd-{uuid.uuid4().hex[:12]}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(str(self.limits.processes))
        except OSError as exc:
            log.warning("no process cap for this command (cgroup %s: %s)", group, exc)
            with contextlib.suppress(OSError):
                group.rmdir()
            yield None
            return
        try:
            yield group
        finally:
            await _remove_cgroup(group)

    def process_cap_unavailable(self) -> bool:
        """True when no cgroup can cap a command's processes here."""
        return self._cgroups is None

    def close(self) -> None:
        """Remove this server's cgroup folder (at shutdown; the commands' own are gone)."""
        if self._cgroups is not None:
            with contextlib.suppress(OSError):
                self._cgroups.rmdir()


def _programs(argv: Sequence[str], path: str) -> list[Path]:
    """Where the command's programs live: absolute paths it names, and its PATH's prefixes."""
    found: list[Path] = []
    for part in argv:
        if part.startswith("/") and Path(part).exists():
            found.append(Path(part))
    for entry in filter(None, path.split(os.pathsep)):
        folder = Path(entry)
        # A venv or an install prefix: bin/ needs its lib/ beside it.
        found.append(folder.parent if folder.name == "bin" else folder)
    return found


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _cgroup_parent() -> Path | None:
    """A folder in which a cgroup per command can be made, when this process may make one."""
    for root in _CGROUP_ROOTS:
        if not (root / "cgroup.procs").exists():
            continue
        if root.name != "pids" and "pids" not in _read(root / "cgroup.subtree_control"):
            continue  # cgroup v2 without the pids controller delegated here
        _remove_stale_cgroups(root)
        parent = root / f"nimbus-{os.getpid()}"
        try:
            parent.mkdir(exist_ok=True)
            if root.name != "pids":
                (parent / "cgroup.subtree_control").write_text("+pids")
        except OSError:
            with contextlib.suppress(OSError):
                parent.rmdir()
            continue
        return parent
    return None


def _remove_stale_cgroups(root: Path) -> None:
    """Folders of Nimbus processes that are gone (killed before they could remove theirs)."""
    for folder in root.glob("nimbus-*"):
        pid = folder.name.removeprefix("nimbus-")
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            for group in folder.glob("cmd-*"):
                with contextlib.suppress(OSError):
                    group.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def _remove_cgroup(group: Path) -> None:
    # Anything still in it (a process that left the command's process group) is killed; the
    # folder can go once the kernel has reaped them all, which takes a moment.
    for _ in range(50):
        for pid in _read(group / "cgroup.procs").split():
            with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        try:
            os.rmdir(group)  # cgroupfs lives in the kernel: nothing here waits on a disk
            return
        except OSError:
            await asyncio.sleep(0.02)
    log.warning("cgroup %s could not be removed", group)
