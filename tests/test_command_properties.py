"""Properties of the `/nimbus …` parser (DESIGN §6) that tests/test_github_commands.py leaves out:
round trips of every command, case and whitespace, the prefix, hidden characters, and what any
parse result looks like.
"""

from __future__ import annotations

import re
from unicodedata import category

from hypothesis import assume, given
from hypothesis import strategies as st

from bot.github.commands import WORDS, Command, parse_command

SIMPLE = sorted(WORDS - {"revise"})
TASK_ID = re.compile(r"task-[0-9a-f]+")
# Spaces and tabs: what may stand between the words of a command line, and after them.
GAP = st.text(alphabet=" \t", min_size=1, max_size=3)
TRAILING = st.text(alphabet=" \t", max_size=3)
INDENT = st.integers(min_value=0, max_value=3).map(lambda n: " " * n)
HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=16)
# Plain visible words: no markdown that could hide or quote them, no command syntax.
WORD = st.text(
    alphabet=st.characters(
        whitelist_categories=("L", "N", "P", "S"), blacklist_characters="<>`~\\"
    ),
    min_size=1,
    max_size=12,
)
# The characters that steer the parser, so that generated comments reach its rules.
MARKDOWN = st.text(alphabet="/nimbus approve-diff task-0af`~<!->\n\t \u200b#*XR", max_size=120)
# Format and control characters that no reader sees (\r is left out: it is a line end).
HIDDEN = st.sampled_from(["\u200b", "\u200d", "\u2066", "\u2069", "\ufeff", "\u00ad", "\x00"])


def any_case(text: str) -> st.SearchStrategy[str]:
    """`text` with each letter in either case."""
    return st.tuples(*(st.sampled_from([c.lower(), c.upper()]) for c in text)).map("".join)


@given(
    word=st.sampled_from(SIMPLE).flatmap(lambda w: st.tuples(st.just(w), any_case(w))),
    prefix=any_case("/nimbus"),
    indent=INDENT,
    gap=GAP,
    task=st.none() | st.tuples(any_case("task-"), HEX).map("".join),
    trailing=TRAILING,
    after=st.lists(WORD, max_size=3).map(" ".join),
)
def test_every_command_word_round_trips_whatever_its_case_and_spacing(
    word, prefix, indent, gap, task, trailing, after
):
    name, written = word
    line = f"{indent}{prefix}{gap}{written}" + (f"{gap}{task}" if task else "") + trailing
    expected = Command(name, "", task.lower() if task else None)
    assert parse_command(line) == expected
    # The lines after a command line are not part of it.
    assert parse_command(f"{line}\n{after}") == expected


@given(
    prefix=any_case("/nimbus"),
    revise=any_case("revise"),
    gap=GAP,
    task=st.none() | HEX.map(lambda h: f"task-{h}"),
    feedback=st.lists(WORD, min_size=1, max_size=6).map(" ".join),
    more=st.lists(st.lists(WORD, max_size=4).map(" ".join), max_size=3),
    trailing=TRAILING,
)
def test_revise_round_trips_its_feedback(prefix, revise, gap, task, feedback, more, trailing):
    assume(not TASK_ID.fullmatch(feedback.split()[0].lower()))
    words = f"{task}{gap}" if task else ""
    body = "\n".join([f"{prefix}{gap}{revise}{gap}{words}{feedback}{trailing}", *more])
    expected_text = "\n".join([feedback, *more]).strip()
    assert parse_command(body) == Command("revise", expected_text, task.lower() if task else None)


@given(
    words=st.lists(WORD, min_size=1, max_size=6),
    more=st.lists(st.lists(WORD, max_size=4).map(" ".join), max_size=3),
    gap=GAP,
)
def test_any_other_text_after_the_prefix_asks_for_a_new_task(words, more, gap):
    first = words[0].lower()
    assume(first != "revise")
    is_command = first in WORDS and (
        len(words) == 1 or (len(words) == 2 and TASK_ID.fullmatch(words[1].lower()))
    )
    assume(not is_command)
    description = gap.join(words)
    body = "\n".join([f"/nimbus {description}", *more])
    assert parse_command(body) == Command("new", "\n".join([description, *more]).strip())


@given(word=WORD.filter(lambda w: w.lower() not in WORDS))
def test_an_unknown_word_alone_is_a_description_not_an_error(word):
    # DESIGN §6: whatever is not a command word is what to do.
    assert parse_command(f"/nimbus {word}") == Command("new", word)


@given(prefix=any_case("/nimbus"), indent=INDENT, trailing=TRAILING)
def test_the_prefix_alone_asks_for_help(prefix, indent, trailing):
    assert parse_command(f"{indent}{prefix}{trailing}") == Command("help")


@given(st.one_of(st.text(), MARKDOWN))
def test_every_parse_result_is_well_formed(body):
    command = parse_command(body)
    if command is None:
        return
    assert command.word in WORDS | {"new"}
    assert command.task_id is None or TASK_ID.fullmatch(command.task_id)
    if command.word in ("new", "revise"):
        assert command.text and command.text == command.text.strip()
        # What the command carries is what a reader sees: nothing hidden survives.
        assert not [c for c in command.text if c not in "\n\t" and category(c)[0] == "C"]
    elif command.word == "help":
        assert command.text in ("", "revise")
    else:
        assert command.text == ""


@given(
    body=MARKDOWN.filter(lambda b: "\r" not in b),
    hidden=st.lists(st.tuples(st.integers(min_value=0), HIDDEN), max_size=6),
)
def test_hidden_characters_change_nothing(body, hidden):
    """What no reader sees can neither make a command nor unmake one."""
    sprinkled = body
    for position, char in hidden:
        at = position % (len(sprinkled) + 1)
        sprinkled = sprinkled[:at] + char + sprinkled[at:]
    assert parse_command(sprinkled) == parse_command(body)


@given(body=MARKDOWN, name=st.text(alphabet="abcdefghjkz", min_size=1, max_size=8))
def test_another_prefix_parses_the_same_comment_the_same_way(body, name):
    prefix = f"/{name}"
    assume(prefix.lower() not in body.lower() and "/nimbus" not in name)
    assert parse_command(body.replace("/nimbus", prefix), prefix=prefix) == parse_command(body)
