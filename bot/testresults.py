"""Reading test output and judging a run against the baseline (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Lines naming one failed test, for the runners INDEXING can detect.
_FAILURE_PATTERNS = (
    re.compile(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", re.M),  # pytest's short summary
    re.compile(r"^\s*--- FAIL: (\S+)", re.M),  # go test
    re.compile(r"^test (\S+) \.\.\. FAILED$", re.M),  # cargo test
    re.compile(r"^\s*not ok \d+ - (.+)$", re.M),  # TAP (node --test, prove)
)


@dataclass(frozen=True)
class TestRun:
    """One run of the test command, as far as judging goes."""

    __test__ = False  # not a pytest test class, despite its name

    exit_code: int | None
    failures: frozenset[str]
    timed_out: bool = False

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "failures": sorted(self.failures),
            "timed_out": self.timed_out,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRun:
        return cls(data["exit_code"], frozenset(data["failures"]), data.get("timed_out", False))


def failed_tests(output: str) -> frozenset[str]:
    """Names of failed tests found in the output (empty when none can be read)."""
    found: set[str] = set()
    for pattern in _FAILURE_PATTERNS:
        found.update(m.group(1).strip() for m in pattern.finditer(output))
    return frozenset(found)


@dataclass(frozen=True)
class Verdict:
    passed: bool
    new_failures: tuple[str, ...]
    preexisting: tuple[str, ...]
    summary: str


def judge(current: TestRun, baseline: TestRun | None) -> Verdict:
    """Whether the change broke tests: only failures that were not there before count."""
    if current.passed:
        return Verdict(True, (), (), "tests passed")
    if current.timed_out:
        return Verdict(False, (), (), "the test command timed out")
    if baseline is None or baseline.passed:
        names = tuple(sorted(current.failures))
        return Verdict(False, names, (), _failing("tests fail", names, current.exit_code))
    new = tuple(sorted(current.failures - baseline.failures))
    old = tuple(sorted(current.failures & baseline.failures))
    if new:
        return Verdict(False, new, old, _failing("new failures", new, current.exit_code))
    if not current.failures:
        if baseline.failures:
            # The run broke in a way that names no test (a crash at collection, say).
            return Verdict(False, (), (), _failing("tests fail", (), current.exit_code))
        # Neither run names its failures: the change cannot be told apart from what was there.
        return Verdict(
            True,
            (),
            (),
            "tests failed before the change too (exit code"
            f" {baseline.exit_code}); no new failure could be told apart",
        )
    return Verdict(True, (), old, f"no new failures; {len(old)} failed before the change too")


def _failing(what: str, names: tuple[str, ...], exit_code: int | None) -> str:
    if not names:
        return f"{what} (exit code {exit_code})"
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"{what}: {shown}"


def trim_output(output: str, limit: int = 8000) -> str:
    """The part of a test run's output worth handing to an agent: its end."""
    if len(output) <= limit:
        return output
    return "[… earlier output cut …]\n" + output[-limit:]
