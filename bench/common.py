"""What the benchmark scripts share: their one failure, their scratch folder, the machine."""

from __future__ import annotations

import contextlib
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
