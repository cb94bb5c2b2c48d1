"""A command agent for the tests: what it does in each phase is chosen by AGENT_MODE.

It follows the command-agent contract (DESIGN §4): the phase in NIMBUS_PHASE, the clone as the
working directory, the plan on stdout, edits in place, the review as JSON on stdout.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

MODE = os.environ.get("AGENT_MODE", "good")
PHASE = os.environ["NIMBUS_PHASE"]
FAIL_IN = os.environ.get("AGENT_FAIL_IN", "")
SLEEP_IN = os.environ.get("AGENT_SLEEP_IN", "")
SLEEP = float(os.environ.get("AGENT_SLEEP", "3600"))
# With this set, the agent sleeps only the first time (it leaves its pid in the file).
SLEEP_ONCE = os.environ.get("AGENT_SLEEP_ONCE")

GOOD = "\n\ndef multiply(a, b):\n    return a * b\n"
WRONG = "\n\ndef multiply(a, b):\n    return a + b\n"
TEST = "from calc import multiply\n\n\ndef test_multiply():\n    assert multiply(3, 4) == 12\n"


def record() -> None:
    """Leave a trace of what the agent saw, for the tests to inspect."""
    trace = os.environ.get("AGENT_TRACE")
    if trace:
        seen = {
            "phase": PHASE,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "prompt": Path(os.environ["NIMBUS_PROMPT_FILE"]).read_text(),
            # What the working directory holds (for a PR review: a checkout of the PR head).
            "files": sorted(str(p) for p in Path(".").rglob("*") if ".git" not in p.parts),
        }
        with open(trace, "a") as out:
            out.write(json.dumps(seen) + "\n")


def write_multiply(body: str) -> None:
    calc = Path("calc.py")
    text = calc.read_text().split("\n\ndef multiply")[0].rstrip("\n") + "\n"
    calc.write_text(text + body)
    Path("tests/test_multiply.py").write_text(TEST)


def review_each_file(diff: str) -> int:
    """A comment on the first line of every hunk in the diff; a failure when told."""
    files = re.findall(r"^\+\+\+ b/(.+)$", diff, re.MULTILINE)
    fail_on = os.environ.get("AGENT_FAIL_ON_PATH")
    if fail_on and fail_on in files:
        print(f"agent broke down on {fail_on}", file=sys.stderr)
        return 3
    comments = []
    for section in re.split(r"^diff --git ", diff, flags=re.MULTILINE)[1:]:
        path = re.search(r"^\+\+\+ b/(.+)$", section, re.MULTILINE)
        for start in re.findall(r"^@@ -\S+ \+(\d+)", section, re.MULTILINE):
            line = max(int(start), 1)
            comments.append({"path": path[1], "line": line, "body": f"looked at {path[1]}"})
    if os.environ.get("AGENT_FAR_COMMENT") and files:
        comments.append({"path": files[0], "line": 100_000, "body": "far from the diff"})
    # AGENT_SAY_FILE: words to add, from a file (a secret in the environment never reaches us).
    say = Path(os.environ["AGENT_SAY_FILE"]).read_text() if "AGENT_SAY_FILE" in os.environ else ""
    summary = f"Read {len(files)} files. {say}".strip()
    print(json.dumps({"summary": summary, "comments": comments}))
    return 0


def main() -> int:
    record()
    if PHASE == FAIL_IN:
        print(f"agent broke down in {PHASE}", file=sys.stderr)
        return 3
    if PHASE == SLEEP_IN and not (SLEEP_ONCE and Path(SLEEP_ONCE).exists()):
        if SLEEP_ONCE:
            Path(SLEEP_ONCE).write_text(str(os.getpid()))
        time.sleep(SLEEP)
    if PHASE == "plan":
        if MODE == "garbage":
            print("\x00\x01 ??? not a plan at all")
            return 0
        if MODE == "markdown":
            print("Here is my plan:\n\n1. Add multiply to calc.py\n2. Test it")
            return 0
        steps = [
            {"title": "Add multiply()", "files": ["calc.py"], "detail": "a * b"},
            "Test it in tests/test_multiply.py",
        ]
        print(json.dumps({"plan": steps}))
    elif PHASE == "implement":
        if MODE == "nothing":
            return 0
        if MODE == "protected":
            Path(".github/workflows").mkdir(parents=True, exist_ok=True)
            Path(".github/workflows/ci.yml").write_text("on: push\n")
        write_multiply(WRONG if MODE in ("fix-loop", "never-fixed") else GOOD)
    elif PHASE == "fix":
        failures = Path(os.environ["NIMBUS_FAILURES_FILE"]).read_text()
        if MODE == "fix-loop":
            assert "test_multiply" in failures or MODE == "blocking-review", failures
            write_multiply(GOOD)
        elif MODE == "blocking-review":
            Path("calc.py").write_text(Path("calc.py").read_text() + "\n# reviewed\n")
    elif PHASE == "review" and MODE == "per-file-review":
        return review_each_file(Path(os.environ["NIMBUS_DIFF_FILE"]).read_text())
    elif PHASE == "review":
        diff = Path(os.environ["NIMBUS_DIFF_FILE"]).read_text()
        blocking = MODE == "blocking-review" and "# reviewed" not in diff
        print(
            json.dumps(
                {
                    "summary": "Looks fine." if not blocking else "multiply needs a note",
                    "comments": [
                        {"path": "calc.py", "line": 4, "body": "ok", "blocking": blocking}
                    ],
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
