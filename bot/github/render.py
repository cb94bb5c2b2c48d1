"""What Nimbus posts on GitHub, as markdown: status, plan, diff and result comments, PR text.

Pure: no I/O. Every body starts with a hidden marker (`marker`) so Nimbus finds and edits its own
comments. Text that Nimbus did not write (the description, the plan, the review, errors) is made
inert before it is shown: no raw HTML, no entities, no @-mentions, no images, and in a PR body no
closing keywords; code fences in it stay code, and an unclosed one is closed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from bot.github.commands import DEFAULT_PREFIX, Fences, clean_text
from bot.models import Task
from phases.machine import Gate, Outcome, Phase

# GitHub refuses longer comment and PR bodies ("Body is too long (maximum is 65536 characters)").
COMMENT_LIMIT = 65_536
ERROR_LIMIT = 1_500
PR_TITLE_LIMIT = 72
PERMISSION_MARKER = "<!-- nimbus:permission -->"

_MARKER = re.compile(r"\s*<!-- nimbus:task=([A-Za-z0-9_.-]+)(?::([a-z][a-z-]*))? -->")
_ID = re.compile(r"[A-Za-z0-9_.-]+")
_KIND = re.compile(r"[a-z][a-z-]*")
# https://docs.github.com/get-started/writing-on-github/getting-started-with-writing-and-formatting-on-github/basic-writing-and-formatting-syntax#mentioning-people-and-teams
_MENTION = re.compile(r"@(?=[A-Za-z0-9])")
# https://docs.github.com/issues/tracking-your-work-with-issues/using-issues/linking-a-pull-request-to-an-issue
_CLOSING = re.compile(r"(?i)\b(close[sd]?|fix(?:e[sd])?|resolve[sd]?)(\s*:?\s*)(\S+)")
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_SAFE_URL = re.compile(r"https?://[^\s<>()\[\]\"'`]+")
_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_ERROR_PHASE = re.compile(r"([A-Z_]+): ")
_REJECTED = re.compile(r"the (plan|diff) was rejected")
_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n\t\r]")

DONE, NOW, WAITING, PENDING = "✅", "🔄", "✋", "⬜"
FAILED, CANCELLED, SKIPPED = "❌", "🚫", "⚪"

# The phase list of a status comment: (step, label). A gate is its own step.
_STEPS: tuple[tuple[str, str], ...] = (
    ("QUEUED", "Queued"),
    ("CLONING", "Cloning"),
    ("INDEXING", "Indexing and baseline tests"),
    ("PLANNING", "Planning"),
    (Gate.PLAN, "Plan approval"),
    ("IMPLEMENTING", "Implementing"),
    ("VERIFYING", "Verifying"),
    ("FIXING", "Fixing"),
    ("REVIEWING", "Reviewing"),
    (Gate.DIFF, "Diff approval"),
    ("CLEANUP", "Cleanup"),
    ("DONE", "Done"),
)
_ORDER = {step: n for n, (step, _) in enumerate(_STEPS)}


def marker(task_id: str, kind: str | None = None) -> str:
    """The hidden marker of a task's comment: its status comment when `kind` is None."""
    if not _ID.fullmatch(task_id) or (kind is not None and not _KIND.fullmatch(kind)):
        raise ValueError(f"cannot mark a comment with task {task_id!r} and kind {kind!r}")
    return f"<!-- nimbus:task={task_id}{f':{kind}' if kind else ''} -->"


def marker_of(body: str) -> tuple[str, str | None] | None:
    """(task id, kind) of the marker a body starts with; check the author is Nimbus too."""
    match = _MARKER.match(body)
    return (match.group(1), match.group(2)) if match else None


def _escape(text: str) -> str:
    """Untrusted prose made inert: no HTML, no entities (`&#64;` is @), no mentions, no images."""
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    # An image is fetched by whoever views it: a URL could carry data out.
    return _MENTION.sub("@\u200b", text).replace("![", "!\\[")


def _inline(text: str, limit: int = 200) -> str:
    """Untrusted text as one escaped line of at most `limit` characters (before escaping)."""
    flat = " ".join(clean_text(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return _escape(flat)


def _prose(text: str, limit: int) -> str:
    """Untrusted markdown, shortened and escaped outside its code fences, which stay code."""
    text = clean_text(text).strip()
    if len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip() + "\n…"
    fences = Fences()
    lines = [line if fences.feed(line) else _escape(line) for line in text.split("\n")]
    if fences.run:
        lines.append(fences.run)
    return "\n".join(lines)


def _indent(text: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _code(text: str, limit: int = 150) -> str:
    """A code span that holds `text` whatever backticks it has."""
    flat = " ".join(clean_text(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def _fenced(text: str, lang: str = "") -> str:
    """A fenced code block longer than any backtick run inside, so `text` cannot close it."""
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text.rstrip("\n")
    return f"{fence}{lang}\n{body}\n{fence}"


def _link(label: str, url: str) -> str:
    return f"[{label}]({url})" if _SAFE_URL.fullmatch(url) else _code(url, 300)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters)"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _take(blocks: Iterable[str], budget: int, what: str) -> list[str]:
    """The blocks that fit in `budget` characters, and a line saying how many did not."""
    blocks = list(blocks)
    taken: list[str] = []
    used = 0
    for block in blocks:
        if used + len(block) > budget:
            break
        taken.append(block)
        used += len(block) + 1
    if len(taken) < len(blocks):
        taken.append(f"… and {_plural(len(blocks) - len(taken), what)} more, not shown here.")
    return taken


def _clamp(body: str, limit: int = COMMENT_LIMIT) -> str:
    """The last resort: `body` cut at a line so that GitHub accepts it, fences closed."""
    if len(body) <= limit:
        return body
    head = body[: limit - 500]
    head = head[: max(head.rfind("\n"), 0)]
    fences = Fences()
    for line in head.split("\n"):
        fences.feed(line)
    closing = f"\n{fences.run}" if fences.run else ""
    return f"{head}{closing}\n\n… (cut: the full text is longer than GitHub allows)"


def _names(names: list[Any], shown: int = 10) -> str:
    listed = ", ".join(_code(str(n)) for n in names[:shown])
    return listed + (f" and {len(names) - shown:,} more" if len(names) > shown else "")


def _verification(v: dict[str, Any] | None) -> list[str]:
    """How the tests went, in a few lines."""
    if not v:
        return []
    summary = _inline(str(v.get("summary") or ""), 200)
    rounds = int(v.get("fix_attempts") or 0)
    if v.get("passed") and v.get("command") is None:
        lines = [f"Tests: {SKIPPED} {summary or 'no tests found'}: nothing was verified."]
    elif v.get("passed"):
        lines = [f"Tests: {DONE} passed ({summary})"]
    else:
        lines = [f"Tests: ⚠️ **still failing** after {_plural(rounds, 'fix round')} ({summary})"]
    if v.get("new_failures"):
        lines.append(f"New failures: {_names(list(v['new_failures']))}")
    if v.get("preexisting_failures"):
        before = _names(list(v["preexisting_failures"]))
        lines.append(f"Failing before this change too, so not caused by it: {before}")
    return lines


def _review(review: dict[str, Any] | None, budget: int = 8_000) -> list[str]:
    """The review's summary and its blocking findings."""
    if not review:
        return []
    comments = [c for c in review.get("comments") or [] if isinstance(c, dict)]
    blocking = [c for c in comments if c.get("blocking")]
    lines = ["#### Review"]
    if review.get("summary"):
        lines.append(_prose(str(review["summary"]), 2_000))
    if blocking:
        lines.append("Blocking findings:")
        found = []
        for c in blocking:
            where = f"{c.get('path')}:{c['line']}" if c.get("line") else str(c.get("path"))
            found.append(f"- {_code(where)}: {_inline(str(c.get('body') or ''), 500)}")
        lines.append("\n".join(_take(found, budget, "finding")))
    others = len(comments) - len(blocking)
    if others:
        lines.append(f"And {_plural(others, 'other comment')}, not blocking.")
    if len(lines) == 1:
        lines.append("No findings.")
    return lines


def _plan(plan: list[dict[str, Any]] | None, budget: int) -> str:
    """The plan as a numbered list: each step's title, files and details."""
    if not plan:
        return "(the plan is empty)"
    steps = []
    for n, step in enumerate(plan, start=1):
        head = f"{n}. **{_inline(str(step.get('title') or ''), 200)}**"
        pad = len(f"{n}. ")
        parts = [head]
        files = [str(f) for f in step.get("files") or []]
        if files:
            parts.append(_indent(f"Files: {_names(files)}", pad))
        if step.get("detail"):
            parts.append(_indent(_prose(str(step["detail"]), 2_000), pad))
        steps.append("\n".join(parts))
    return "\n".join(_take(steps, budget, "step"))


def _step_of(task: Task) -> str:
    if task.phase == Phase.AWAITING_APPROVAL:
        return task.approval or Gate.PLAN
    return str(task.phase)


def _ending(task: Task) -> Outcome | None:
    """How the task ends (or ended), once that is decided."""
    if task.outcome is not None:
        return task.outcome
    if task.phase == Phase.DONE:
        return Outcome.COMPLETED
    return Outcome.FAILED if task.phase == Phase.FAILED else None


def _furthest_evidence(task: Task) -> int:
    """The furthest step that the task's recorded results prove it passed."""
    proofs = (
        (True, "QUEUED"),
        (task.plan is not None, "PLANNING"),
        (task.has_diff, "IMPLEMENTING"),
        (task.verification is not None, "VERIFYING"),
        (bool(task.fix_attempts), "FIXING"),
        (task.review is not None, "REVIEWING"),
    )
    return max(_ORDER[step] for proved, step in proofs if proved)


def _stop_step(task: Task) -> str | None:
    """The step where a failed or cancelled task stopped, when its error says."""
    error = task.error or ""
    if rejected := _REJECTED.search(error):
        return Gate(rejected.group(1))
    match = _ERROR_PHASE.match(error)
    if not match or match.group(1) not in Phase.__members__:
        return None
    if match.group(1) == Phase.AWAITING_APPROVAL:
        return Gate.DIFF if task.review is not None else Gate.PLAN
    return match.group(1)


def _fix_label(task: Task, current: bool) -> str:
    if current and task.state.get("fix_reason") == "review":
        return "Fixing (after the review)"
    if current:
        return f"Fixing (round {task.fix_attempts})"
    rounds = [_plural(task.fix_attempts, "round")] if task.fix_attempts else []
    if task.review_fixes:
        rounds.append("one after the review")
    return f"Fixing ({', '.join(rounds)})" if rounds else "Fixing"


def _icon(task: Task, step: str, reached: int, stop: str | None) -> str:
    """Done, current, waiting, pending, or for a stopped task: where it stopped, or not reached."""
    ending = _ending(task)
    if ending in (Outcome.FAILED, Outcome.CANCELLED):
        stopped = CANCELLED if ending == Outcome.CANCELLED else FAILED
        if step == stop:
            return stopped
        if step == "CLEANUP":
            return NOW if task.phase == Phase.CLEANUP else DONE
        if step == "DONE":
            return stopped if task.phase == Phase.FAILED else PENDING
        return DONE if _ORDER[step] <= reached else SKIPPED
    if step == _step_of(task):
        if step == "DONE":
            return DONE
        return WAITING if step in (Gate.PLAN, Gate.DIFF) else NOW
    return DONE if _ORDER[step] <= reached else PENDING


def _checklist(task: Task) -> str:
    """The phase list: done, current and pending steps (not task-list boxes, which people tick)."""
    ending = _ending(task)
    stopped = ending in (Outcome.FAILED, Outcome.CANCELLED)
    current = _step_of(task)
    stop = _stop_step(task) if stopped else None
    if stop is not None:
        reached = _ORDER[stop] - 1
    elif stopped:
        reached = _furthest_evidence(task)
    else:
        reached = max(_ORDER[current] - 1, _furthest_evidence(task))
    lines = []
    for step, label in _STEPS:
        if step == "FIXING":
            # The loop back from VERIFYING (or REVIEWING) is shown only when it was taken.
            happened = task.fix_attempts or task.review_fixes or current == "FIXING"
            if not (happened or stop == "FIXING"):
                continue
            label = _fix_label(task, current == "FIXING" and not stopped)
        if step in (Gate.PLAN, Gate.DIFF) and task.auto_approve:
            label += " (automatic)"
        if step == "DONE" and stopped:
            label = "Cancelled" if ending == Outcome.CANCELLED else "Failed"
        bold = step == current and task.phase not in (Phase.DONE, Phase.FAILED)
        lines.append(f"- {_icon(task, step, reached, stop)} {f'**{label}**' if bold else label}")
    return "\n".join(lines)


def _headline(task: Task) -> str:
    ending = _ending(task)
    cleaning = " (cleaning up)" if task.phase == Phase.CLEANUP else ""
    if ending == Outcome.CANCELLED:
        return f"{CANCELLED} Cancelled{cleaning}"
    if ending == Outcome.FAILED:
        return f"{FAILED} Nimbus failed{cleaning}"
    if ending == Outcome.COMPLETED:
        done = task.phase == Phase.DONE
        return f"{DONE} Nimbus is done" if done else "⚙️ Nimbus is opening the pull request"
    if task.phase == Phase.QUEUED:
        return "🕒 Nimbus has queued this task"
    if task.phase == Phase.AWAITING_APPROVAL:
        return f"{WAITING} Nimbus is waiting for {task.approval or Gate.PLAN} approval"
    return f"⚙️ Nimbus is working: {dict(_STEPS)[_step_of(task)].lower()}"


def _error_block(task: Task) -> str:
    return _fenced(_clip(clean_text(task.error or "(no error recorded)").strip(), ERROR_LIMIT))


def _published(task: Task, compare_url: str | None) -> str:
    if task.pr_url:
        return f"Pull request: {_link(task.pr_url, task.pr_url)}"
    where = f"The branch {_code(task.branch)} was pushed." if task.branch else "It was published."
    return where + (f" {_link('Compare the changes', compare_url)}." if compare_url else "")


def _next_step(task: Task, compare_url: str | None, p: str) -> list[str]:
    """What the reader can do now."""
    ending = _ending(task)
    if ending == Outcome.FAILED:
        retry = f"`{p} retry` starts a new task from this issue."
        return ["It stopped with this error:", _error_block(task), retry]
    if ending == Outcome.CANCELLED:
        reason = _inline(task.error or "cancelled", 300)
        reason = reason[:1].upper() + reason[1:]
        return [f"{reason}. Nothing was pushed. Reply `{p} retry` to start again."]
    if ending == Outcome.COMPLETED and task.phase == Phase.DONE:
        return [_published(task, compare_url)]
    if ending == Outcome.COMPLETED:
        return ["The diff was approved; the pull request is on its way."]
    if task.phase == Phase.AWAITING_APPROVAL and task.approval == Gate.DIFF:
        lines = [
            f"**Your turn:** read the diff below, then reply `{p} approve-diff` to open the pull"
            f" request, or `{p} reject-diff` to drop the change."
        ]
        if compare_url:
            lines.append(_link("Compare the changes", compare_url))
        return lines
    if task.phase == Phase.AWAITING_APPROVAL:
        return [
            f"**Your turn:** read the plan below, then reply `{p} approve` or `{p} reject`,"
            f" or `{p} revise <what to change>`."
        ]
    return [f"This comment follows the task as it goes; `{p} cancel` stops it."]


def status_comment(
    task: Task, *, compare_url: str | None = None, prefix: str = DEFAULT_PREFIX
) -> str:
    """The one status comment of a task, edited in place as its phases pass."""
    parts = [
        f"{marker(task.id)}\n### {_headline(task)}",
        f"> {_inline(task.description, 200)}",
        _checklist(task),
        "\n".join(_verification(task.verification)),
        "\n\n".join(_next_step(task, compare_url, prefix)),
        f"<sub>Task `{task.id}`</sub>",
    ]
    return _clamp("\n\n".join(part for part in parts if part))


def plan_comment(task: Task, *, prefix: str = DEFAULT_PREFIX) -> str:
    """The plan, for approval: numbered steps with their files and details."""
    parts = [f"{marker(task.id, 'plan')}\n### 📝 Plan for `{task.id}`"]
    if task.feedback:
        parts.append(f"Revised after this feedback: {_inline(task.feedback, 300)}")
    parts.append(_plan(task.plan, budget=50_000))
    if task.phase == Phase.AWAITING_APPROVAL and task.approval == Gate.PLAN:
        parts.append(
            f"**Your turn:** reply `{prefix} approve` to have it implemented, `{prefix} reject` to"
            f" drop the task, or `{prefix} revise <what to change>` for a new plan."
        )
    elif task.auto_approve:
        parts.append("This plan is approved automatically (the task has auto_approve).")
    return _clamp("\n\n".join(parts))


def diff_stats(diff: str) -> tuple[int, int, int]:
    """(files changed, lines added, lines removed) of a unified diff."""
    git_files = plain_files = added = removed = 0
    old_left = new_left = 0
    for line in diff.split("\n"):
        if old_left > 0 or new_left > 0:
            # Inside a hunk its header's counts, not the first character, tell where it ends.
            if line.startswith("+"):
                added, new_left = added + 1, new_left - 1
            elif line.startswith("-"):
                removed, old_left = removed + 1, old_left - 1
            elif not line.startswith("\\"):
                old_left, new_left = old_left - 1, new_left - 1
            continue
        if line.startswith("diff --git "):
            git_files += 1
        elif line.startswith("+++ "):
            plain_files += 1
        elif hunk := _HUNK.match(line):
            old_left = int(hunk.group(1) or 1)
            new_left = int(hunk.group(2) or 1)
    return git_files or plain_files, added, removed


def _reveal(char: re.Match[str]) -> str:
    """Invisible and bidi characters shown by code point: a reviewer must see them."""
    c = char.group()
    category = unicodedata.category(c)
    if category == "Cf" or (category == "Cc" and c not in "\n\t\r"):
        return f"⟨U+{ord(c):04X}⟩"
    return c


def _cut_diff(diff: str, budget: int) -> str:
    """At most `budget` characters of `diff`, cut before a file when there is one to cut at."""
    if len(diff) <= budget:
        return diff
    boundary = diff.rfind("\ndiff --git ", 0, budget)
    if boundary > 0:
        return diff[: boundary + 1]
    newline = diff.rfind("\n", 0, budget)
    return diff[: newline + 1] if newline > 0 else diff[:budget]


def diff_comment(
    task: Task,
    diff: str,
    *,
    compare_url: str | None,
    limit: int = 60_000,
    prefix: str = DEFAULT_PREFIX,
) -> str:
    """The diff for approval: a summary, the review, and the diff itself, collapsed."""
    files, added, removed = diff_stats(diff)
    head = [
        f"{marker(task.id, 'diff')}\n### 🔍 Changes for review: `{task.id}`",
        f"**{_plural(files, 'file')} changed**, +{added:,} -{removed:,}",
        "\n".join(_verification(task.verification)),
    ]
    shown = _NOT_PLAIN.sub(_reveal, diff)
    if shown != diff:
        head.append(
            "⚠️ The diff has invisible or bidirectional control characters; they are shown"
            " below as ⟨U+…⟩."
        )
    head.append("\n\n".join(_review(task.review)))
    tail = []
    if task.phase == Phase.AWAITING_APPROVAL and task.approval == Gate.DIFF:
        tail.append(
            f"**Your turn:** reply `{prefix} approve-diff` to open the pull request, or"
            f" `{prefix} reject-diff` to drop the change."
        )
    elif task.auto_approve:
        tail.append("This diff is approved automatically (the task has auto_approve).")
    if not diff.strip():
        body = "The change is empty: no file was modified."
    else:
        fixed = sum(len(part) + 2 for part in head + tail)
        budget = max(min(limit, COMMENT_LIMIT - fixed - 1_000), 0)
        cut = _cut_diff(shown, budget)
        block = _fenced(cut, "diff")
        if len(block) > budget:
            # A very long backtick run inside made the fence itself long: leave room for it.
            cut = _cut_diff(shown, max(budget - 2 * (len(block) - len(cut)), 0))
            block = _fenced(cut, "diff")
        summary = f"Diff ({_plural(files, 'file')})"
        body = f"<details><summary>{summary}</summary>\n\n{block}\n\n</details>"
        if len(cut) < len(shown):
            full = (
                _link("the full diff", compare_url)
                if compare_url
                else f"the full diff from the Nimbus API: `GET /tasks/{task.id}/diff`"
            )
            body += (
                f"\n\nThe diff is cut here: {diff_stats(cut)[0]:,} of {files:,} files,"
                f" {len(cut):,} of {len(shown):,} characters. See {full}."
            )
    return _clamp("\n\n".join(part for part in [*head, body, *tail] if part))


def result_comment(task: Task, *, prefix: str = DEFAULT_PREFIX) -> str:
    """A short new comment when a task ends, so that people are notified (edits notify nobody)."""
    head = marker(task.id, "result")
    ending = _ending(task)
    if ending == Outcome.COMPLETED and task.phase == Phase.DONE:
        return f"{head}\n{DONE} Task `{task.id}` is done. {_published(task, None)}"
    if ending == Outcome.CANCELLED:
        return f"{head}\n{CANCELLED} Task `{task.id}` was cancelled; nothing was pushed."
    if ending == Outcome.FAILED:
        return (
            f"{head}\n{FAILED} Task `{task.id}` failed:\n\n{_error_block(task)}\n\n"
            f"Reply `{prefix} retry` to try again with a new task."
        )
    raise ValueError(f"task {task.id} has not ended ({task.status})")


def permission_reply(user: str) -> str:
    """The one reply to someone who may not run commands here."""
    # Logins come from GitHub; anything else is not addressed by name.
    who = f", @{user}" if _LOGIN.fullmatch(user) else ""
    return (
        f"{PERMISSION_MARKER}\nThanks{who}! Only people with write access to this repository can"
        " run Nimbus commands, so this one was not run. A maintainer can run it for you."
    )


def already_active_reply(
    task_id: str, *, status_url: str | None = None, prefix: str = DEFAULT_PREFIX
) -> str:
    """The reply to a new request while a task of the issue is still active."""
    where = f" ({_link('its status', status_url)})" if status_url else ""
    return (
        f"{marker(task_id, 'active')}\nTask `{task_id}` is still active on this issue{where}."
        f" Nimbus runs one task per issue at a time: finish it, or `{prefix} cancel` it, then"
        f" ask again. A command must be alone on its line, such as `{prefix} approve`;"
        f" `{prefix} help` lists them."
    )


def pr_title(task: Task) -> str:
    """The PR's title: the description's first line, at most 72 characters."""
    lines = [" ".join(line.split()) for line in clean_text(task.description).split("\n")]
    first = next((line for line in lines if line), f"Nimbus task {task.id}")
    # Whether a title can mention someone or close an issue is not documented: assume it can.
    first = _defuse_closing(_MENTION.sub("@\u200b", first))
    if len(first) <= PR_TITLE_LIMIT:
        return first
    cut = first[: PR_TITLE_LIMIT - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > PR_TITLE_LIMIT // 2 else cut).rstrip(" ,.;:") + "…"


def _defuse_closing(markdown: str) -> str:
    """Closing keywords in echoed text would close other issues when the PR merges."""

    def defuse(match: re.Match[str]) -> str:
        ref = match.group(3).replace("#", "#\u200b").replace("://", ":\u200b//")
        return match.group(1) + match.group(2) + ref

    return _CLOSING.sub(defuse, markdown)


def pr_body(task: Task, issue_number: int | None) -> str:
    """The PR's description: the issue it closes, the task, plan, verification and review."""
    parts = ["### Task", _prose(task.description, 3_000), "### Plan", _plan(task.plan, 25_000)]
    verification = _verification(task.verification) or ["The tests were not run."]
    parts += ["### Verification", "\n".join(verification)]
    if task.review:
        parts.append("\n\n".join(_review(task.review, budget=6_000)))
    usage = task.usage or {}
    tokens = (
        f"{int(usage.get('input_tokens', 0)):,} input and"
        f" {int(usage.get('output_tokens', 0)):,} output tokens"
    )
    parts.append(f"<sub>Opened by Nimbus for task `{task.id}`; it used {tokens}.</sub>")
    closes = [f"Closes #{int(issue_number)}"] if issue_number is not None else []
    # Everything but our own `Closes` line is defused, code included: GitHub may read it all.
    body = "\n\n".join([marker(task.id, "pr"), *closes, _defuse_closing("\n\n".join(parts))])
    return _clamp(body)
