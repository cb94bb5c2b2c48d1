"""What the benchmark scripts share: their one failure, their scratch folder, the machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def give_up(exc: BenchError) -> int:
    """Say why the benchmark stopped; the exit status for it."""
    print(f"\nBENCHMARK FAILED: {exc}", file=sys.stderr)
    return 1


def leave_scratch(root: Path, keep: bool) -> None:
    """Remove the run's scratch folder, or say where it is kept (`--keep`)."""
    if keep:
        print(f"kept {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)


def out(*argv: str, cwd: Path | None = None) -> str:
    """A command's output, stripped; "?" when it cannot run."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=10)
        return done.stdout.strip()
    return "?"


def cpu_model() -> str:
    """The processor's name from /proc/cpuinfo, or "?"."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def git(*args: str, cwd: Path, timeout: float = 120) -> str:
    """Run git for a benchmark's fixture, as a bench author with no user or system config."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"git {' '.join(args)} took over {timeout:.0f} s in {cwd}") from exc
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()
