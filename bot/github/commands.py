"""Slash commands in GitHub comments (`/nimbus …`), and cleaning the text handed to agents.

Pure: no I/O. A comment is judged by what GitHub shows of it, the way CommonMark renders it:
lines in code blocks, block quotes and HTML comments are never commands (DESIGN §6).
https://github.github.com/gfm/
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

DEFAULT_PREFIX = "/nimbus"

# Words that are commands when they are the whole rest of the line (optionally with a task id).
# `new` is not among them: it is what any other text after the prefix means.
WORDS = frozenset(
    {
        "approve",
        "reject",
        "approve-diff",
        "reject-diff",
        "revise",
        "cancel",
        "status",
        "retry",
        "help",
        "review",
        "pause",
        "resume",
    }
)

_TASK_ID = re.compile(r"task-[0-9a-f]+", re.IGNORECASE)
# At most three spaces of indentation: four make an indented code block (or a list continuation).
_QUOTE = re.compile(r" {0,3}>")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
# Characters that are kept although they are not printable: line structure.
_KEPT = frozenset("\n\t")


@dataclass(frozen=True)
class Command:
    """One command from a comment.

    `word` is `new` (`text`: the description), `revise` (`text`: the feedback, never empty),
    `help` (`text`: the command that was incomplete, e.g. `revise` without feedback, or ""),
    or another of `WORDS` (`text` is ""). `task_id` names a task when the comment gave one.
    """

    word: str
    text: str = ""
    task_id: str | None = None


class Fences:
    """Follows fenced code blocks line by line (``` or ~~~, three or more, closed or not)."""

    def __init__(self) -> None:
        self.run: str | None = None  # the opening run of the fence we are in

    def feed(self, line: str) -> bool:
        """Whether `line` is part of a fenced code block (opening and closing lines included)."""
        match = _FENCE.match(line)
        if self.run is not None:
            if match:
                run, rest = match.groups()
                # A closing fence: the same character, at least as long, nothing after it.
                if run[0] == self.run[0] and len(run) >= len(self.run) and not rest.strip(" \t"):
                    self.run = None
            return True
        if match is None:
            return False
        run, info = match.groups()
        # A backtick fence's info string cannot hold a backtick: "``` a ` b" is inline code.
        if run[0] == "`" and "`" in info:
            return False
        self.run = run
        return True


def _hidden(match: re.Match[str]) -> str:
    char = match.group()
    category = unicodedata.category(char)
    if category in ("Cf", "Cs") or (category == "Cc" and char not in _KEPT):
        return ""
    return char


# Only what is not printable ASCII needs a look at its Unicode category.
_NOT_PLAIN = re.compile(r"[^\x20-\x7e\n\t]")


def _drop_inline_comments(line: str) -> tuple[str, bool]:
    """The line without its HTML comments, and whether one is left open at its end."""
    while (start := line.find("<!--")) >= 0:
        # `start + 2`: `<!-->` and `<!--->` are whole (empty) comments in CommonMark.
        end = line.find("-->", start + 2)
        if end < 0:
            return line[:start], True
        line = line[:start] + line[end + 3 :]
    return line, False


def _drop_comments(text: str) -> str:
    """`text` without HTML comments, except inside fenced code, where GitHub shows them."""
    out: list[str] = []
    fences = Fences()
    in_comment = False
    for line in text.split("\n"):
        if in_comment:
            end = line.find("-->")
            if end < 0:
                continue
            rest, in_comment = _drop_inline_comments(line[end + 3 :])
            # What follows the comment continues the line it began on.
            out[-1] += rest
            continue
        if fences.feed(line):
            out.append(line)
            continue
        visible, in_comment = _drop_inline_comments(line)
        out.append(visible)
    return "\n".join(out)


def clean_text(text: str) -> str:
    """Text for an agent or a command parser: what a reader sees, without hidden content."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Zero-width, bidi and other format characters, controls and lone surrogates first: they
    # could otherwise split `<!--` so that it escapes the comment removal below.
    text = _NOT_PLAIN.sub(_hidden, text)
    text = _drop_comments(text)
    return "\n".join(line.rstrip(" \t") for line in text.split("\n"))


def _after_prefix(line: str, prefix: str) -> str | None:
    """The rest of `line` when it starts with the prefix and a break, else None."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3:
        return None
    if stripped[: len(prefix)].lower() != prefix.lower():
        return None
    rest = stripped[len(prefix) :]
    # `/nimbusx` and `/nimbus-bot` are other words, not this prefix.
    if rest and not rest[0].isspace():
        return None
    return rest


def _command(rest: str, following: str) -> Command:
    """The command that the rest of the prefix line (and, for text, the lines after it) say."""
    rest = rest.strip()
    tokens = rest.split()
    if not tokens:
        return Command("help")
    word = tokens[0].lower()
    if word == "revise":
        after = rest[len(tokens[0]) :].strip()
        task_id = None
        if len(tokens) > 1 and _TASK_ID.fullmatch(tokens[1]):
            task_id = tokens[1].lower()
            after = after[len(tokens[1]) :]
        feedback = f"{after.strip()}\n{following}".strip()
        if not feedback:
            return Command("help", "revise", task_id)
        return Command("revise", feedback, task_id)
    if word in WORDS and len(tokens) == 1:
        return Command(word)
    if word in WORDS and len(tokens) == 2 and _TASK_ID.fullmatch(tokens[1]):
        return Command(word, task_id=tokens[1].lower())
    # DESIGN §6: a command word counts only as the whole rest of the line; anything else is
    # a description, so "/nimbus approve the plan and add tests" asks for a new task.
    return Command("new", f"{rest}\n{following}".strip())


def parse_command(body: str, prefix: str = DEFAULT_PREFIX) -> Command | None:
    """The command of a comment: its first visible line that starts with `prefix`, or None."""
    lines = clean_text(body).split("\n")
    fences = Fences()
    quoted = False
    for number, line in enumerate(lines):
        if fences.feed(line):
            quoted = False
            continue
        if not line.strip():
            quoted = False
            continue
        if _QUOTE.match(line):
            quoted = True
            continue
        if quoted:
            # A lazy continuation: GitHub shows a line right after a quoted one inside the quote.
            continue
        rest = _after_prefix(line, prefix)
        if rest is not None:
            return _command(rest, "\n".join(lines[number + 1 :]))
    return None


def help_text(prefix: str = DEFAULT_PREFIX) -> str:
    """The commands, one line each, as markdown."""
    p = prefix
    return "\n".join(
        [
            "**Nimbus commands.** Write one on a line of its own in a comment; only people with"
            " write access to the repository can use them.",
            "",
            f"- `{p} <what to do>`: start a task from this issue (its title and body are context;"
            " the following lines of your comment are part of the request).",
            f"- `{p} approve`: accept the plan; Nimbus implements it.",
            f"- `{p} reject`: drop the plan and the task; nothing is changed.",
            f"- `{p} revise <what to change>`: send the plan back with your feedback (the"
            " following lines of your comment count too).",
            f"- `{p} approve-diff`: accept the change; Nimbus opens the pull request.",
            f"- `{p} reject-diff`: drop the change; nothing is pushed.",
            f"- `{p} cancel`: stop the active task, whatever it is doing.",
            f"- `{p} status`: show where the active task is.",
            f"- `{p} retry`: start a new task from this issue after one failed.",
            f"- `{p} review`: on a pull request, review its diff.",
            f"- `{p} pause` / `{p} resume`: on a pull request, stop or restart its automatic"
            " reviews.",
            f"- `{p} help`: this list.",
            "",
            "Commands act on the issue's active task; add a task id to name another"
            f" (`{p} approve task-…`).",
        ]
    )
