"""Search-and-replace edits as the model agent makes them (bot/agents/edits.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.agents.edits import EditError, apply_edit

CODE = (
    "class Greeter:\n"
    "    def hello(self):\n"
    "        return 'hello'\n"
    "\n"
    "    def bye(self):\n"
    "        return 'bye'\n"
)


def _listed_lines(message: str) -> list[int]:
    found = re.search(r"starting at lines ([\d, ]+)\)", message)
    assert found, message
    return [int(n) for n in found.group(1).split(", ")]


def test_exact_unique_match_is_replaced() -> None:
    result = apply_edit(CODE, "return 'hello'", "return 'hi'")
    assert result == CODE.replace("'hello'", "'hi'")


def test_exact_match_may_be_part_of_a_line() -> None:
    assert apply_edit("x = compute(1, 2)\n", "1, 2", "3") == "x = compute(3)\n"


def test_empty_replace_deletes_the_text() -> None:
    result = apply_edit(CODE, "\n    def bye(self):\n        return 'bye'\n", "")
    assert result == "class Greeter:\n    def hello(self):\n        return 'hello'\n"


@pytest.mark.parametrize("search", ["", "   ", "\n\n", " \t\n"])
def test_empty_search_is_refused_with_what_to_do(search: str) -> None:
    with pytest.raises(EditError, match="create_file") as caught:
        apply_edit(CODE, search, "x", path="greet.py")
    assert "surrounding text" in str(caught.value)


def test_edit_error_is_a_value_error() -> None:
    assert issubclass(EditError, ValueError)


def test_ambiguous_exact_match_names_count_and_lines() -> None:
    with pytest.raises(EditError) as caught:
        apply_edit(CODE, "return", "yield", path="greet.py")
    message = str(caught.value)
    assert "matches 2 places in greet.py" in message
    assert _listed_lines(message) == [3, 6]
    assert "more of the surrounding lines" in message


def test_overlapping_occurrences_are_ambiguous() -> None:
    with pytest.raises(EditError, match="matches 2 places"):
        apply_edit("aaa\n", "aa", "b")


def test_wrong_indentation_matches_and_replacement_is_reindented() -> None:
    search = "def hello(self):\n    return 'hello'\n"
    replace = "def hello(self, name):\n    if name:\n        return f'hello {name}'\n"
    replace += "    return 'hello'\n"
    result = apply_edit(CODE, search, replace)
    assert result == CODE.replace(
        "    def hello(self):\n        return 'hello'\n",
        "    def hello(self, name):\n        if name:\n            return f'hello {name}'\n"
        "        return 'hello'\n",
    )


def test_over_indented_search_is_dedented() -> None:
    text = "def f():\n    return 1\n"
    result = apply_edit(text, "        return 1", "        x = 1\n        return x")
    assert result == "def f():\n    x = 1\n    return x\n"


def test_tabs_in_file_spaces_in_search() -> None:
    text = "func main() {\n\tif ok {\n\t\trun()\n\t}\n}\n"
    result = apply_edit(text, "if ok {\n    run()\n}", "if ok {\n    run()\n    stop()\n}")
    assert result == "func main() {\n\tif ok {\n\t\trun()\n\t\tstop()\n\t}\n}\n"


def test_first_line_trimmed_by_the_model_keeps_the_rest_right() -> None:
    text = "if x:\n        a()\n        b()\n"
    result = apply_edit(text, "a()\n        b()", "a2()\n        b2()")
    assert result == "if x:\n        a2()\n        b2()\n"


def test_trailing_whitespace_differences_are_tolerated() -> None:
    text = "a = 1   \nb = 2\n"
    assert apply_edit(text, "a = 1\nb = 2  ", "a = 3\nb = 4") == "a = 3\nb = 4\n"


def test_trailing_newline_difference_is_tolerated() -> None:
    assert apply_edit("a\nb\nc", "c\n", "d\n") == "a\nb\nd"
    assert apply_edit("a\nb\nc\n", " c", "d") == "a\nb\nd\n"


def test_deleting_the_last_lines_keeps_a_missing_final_newline_missing() -> None:
    assert apply_edit("a\nb\nc", " b\n c\n", "") == "a"
    assert apply_edit("a\nb\nc\n", " b\n c", "") == "a\n"


def test_blank_lines_around_the_search_are_ignored() -> None:
    text = "x = 1\ny = 2\nz = 3\n"
    assert apply_edit(text, "\n\n  y = 2\n\n", "\ny = 20\n") == "x = 1\ny = 20\nz = 3\n"


def test_tolerant_ambiguity_says_whitespace_was_ignored() -> None:
    text = "if a:\n    go()\nif b:\n  go()\n"
    with pytest.raises(EditError, match="when whitespace is ignored") as caught:
        apply_edit(text, "go()  ", "stop()")
    assert _listed_lines(str(caught.value)) == [2, 4]


def test_miss_shows_the_most_similar_region_with_line_numbers() -> None:
    with pytest.raises(EditError) as caught:
        apply_edit(CODE, "def bye(self):\n    return 'goodbye'", "x", path="greet.py")
    message = str(caught.value)
    assert message.startswith("the search text was not found in greet.py")
    assert "lines 5-6" in message
    assert "   5|     def bye(self):\n   6|         return 'bye'" in message


def test_miss_points_out_copied_line_numbers() -> None:
    with pytest.raises(EditError, match="line-number prefixes"):
        apply_edit(CODE, "   2|     def hello(self):\n   3|         return 'hi'", "x")


def test_miss_in_an_empty_file() -> None:
    with pytest.raises(EditError, match="the file is empty"):
        apply_edit("", "x", "y", path="new.py")


def test_miss_in_a_large_file_points_at_the_nearest_lines() -> None:
    lines = [f"    value_{i} = compute({i * 7 % 1000}, '{'x' * (i % 40)}')" for i in range(10_000)]
    search = "\n".join(lines[6000:6040]).replace("compute", "compte")
    with pytest.raises(EditError, match="lines 6001-6040"):
        apply_edit("\n".join(lines) + "\n", search, "x")


def test_crlf_file_stays_crlf_when_the_model_writes_lf() -> None:
    text = CODE.replace("\n", "\r\n")
    result = apply_edit(text, "return 'hello'\n", "name = 'x'\n        return name\n")
    assert "\n" not in result.replace("\r\n", "")
    assert result == text.replace("return 'hello'\r\n", "name = 'x'\r\n        return name\r\n")


def test_crlf_tolerant_match_stays_crlf() -> None:
    text = CODE.replace("\n", "\r\n")
    result = apply_edit(text, "def bye(self):\n    return 'bye'", "def bye(self):\n    pass")
    assert result == text.replace("return 'bye'", "pass")


def test_non_utf8_bytes_round_trip_untouched() -> None:
    text = b"caf\xe9 = 1\nb = 2\n".decode("utf-8", "surrogateescape")
    result = apply_edit(text, "b = 2", "b = 3")
    assert result.encode("utf-8", "surrogateescape") == b"caf\xe9 = 1\nb = 3\n"


TEXT = st.text(alphabet=st.characters(blacklist_characters="\r", codec="utf-8"), max_size=200)
WORD = st.text(alphabet="abc():=_.", min_size=1, max_size=8)
LINE = st.text(alphabet="abcdefgh ():=_.\t", min_size=1, max_size=12).filter(lambda s: s.strip())


def _starts(text: str, search: str) -> list[int]:
    return [i for i in range(len(text)) if text.startswith(search, i)]


@settings(max_examples=200, deadline=None)
@given(text=TEXT, data=st.data(), replacement=TEXT)
def test_any_unique_substring_is_replaced_in_place(text: str, data, replacement: str) -> None:
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    search = text[start:end]
    assume(search.strip() and len(_starts(text, search)) == 1)
    result = apply_edit(text, search, replacement)
    assert result == text[:start] + replacement + text[end:]


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(LINE, min_size=1, max_size=15, unique=True),
    data=st.data(),
    replacement=TEXT,
    final_newline=st.booleans(),
)
def test_any_unique_line_block_is_replaced_and_the_rest_is_byte_identical(
    lines: list[str], data, replacement: str, final_newline: bool
) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    first = data.draw(st.integers(0, len(lines) - 1))
    last = data.draw(st.integers(first, len(lines) - 1))
    block = "\n".join(lines[first : last + 1])
    assume(len(_starts(text, block)) == 1)
    at = text.index(block)
    result = apply_edit(text, block, replacement)
    assert result[:at] == text[:at]
    assert result[at : at + len(replacement)] == replacement
    assert result[at + len(replacement) :] == text[at + len(block) :]


@st.composite
def code_with_block(draw):
    """Unique indented lines, a block of them, and how the model mangled its whitespace."""
    count = draw(st.integers(1, 12))
    depths = draw(st.lists(st.integers(0, 3), min_size=count, max_size=count))
    blank = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    pairs = enumerate(zip(depths, blank, strict=True))
    lines = ["" if b and n else "    " * d + f"step_{n}()" for n, (d, b) in pairs]
    first = draw(st.integers(0, count - 1))
    last = draw(st.integers(first, count - 1))
    assume(any(line.strip() for line in lines[first : last + 1]))
    block = lines[first : last + 1]
    floor = min(len(line) - len(line.lstrip()) for line in block if line.strip())
    shift = draw(st.integers(-floor, 8))
    trailing = draw(
        st.lists(st.sampled_from(["", " ", "\t", "  "]), min_size=len(block), max_size=len(block))
    )
    return lines, first, last, shift, trailing, draw(st.booleans()), draw(st.booleans())


def _shifted(line: str, shift: int) -> str:
    return " " * shift + line if shift >= 0 else line[-shift:]


@settings(max_examples=200, deadline=None)
@given(case=code_with_block())
def test_whitespace_mangled_search_still_finds_the_unique_block(case) -> None:
    lines, first, last, shift, trailing, final_newline, search_newline = case
    text = "\n".join(lines) + ("\n" if final_newline else "")
    block = lines[first : last + 1]
    end = "\n" if search_newline else ""
    mangled = [_shifted(line, shift) if line else "" for line in block]
    search = "\n".join(line + pad for line, pad in zip(mangled, trailing, strict=True))
    replace = "\n".join(_shifted(line, shift) + "  # changed" if line else "" for line in block)
    expected = [line + "  # changed" if line else "" for line in block]
    result = apply_edit(text, search + end, replace + end)
    assert result == "\n".join(lines[:first] + expected + lines[last + 1 :]) + (
        "\n" if final_newline else ""
    )


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(WORD, min_size=1, max_size=10),
    data=st.data(),
    new=st.lists(WORD, min_size=0, max_size=4),
    indent=st.sampled_from(["", "  ", "\t"]),
)
def test_crlf_files_stay_crlf(lines: list[str], data, new: list[str], indent: str) -> None:
    lines = [f"<{n}>{line}" for n, line in enumerate(lines)]
    text = "\r\n".join(lines) + "\r\n"
    first = data.draw(st.integers(0, len(lines) - 1))
    last = data.draw(st.integers(first, len(lines) - 1))
    # The model writes LF, possibly with its own indentation.
    search = "\n".join(indent + line for line in lines[first : last + 1]) + "\n"
    result = apply_edit(text, search, "".join(f"{indent}{line}\n" for line in new))
    assert "\n" not in result.replace("\r\n", "")
    expected = lines[:first] + new + lines[last + 1 :]
    assert result == "".join(f"{line}\r\n" for line in expected)


@settings(max_examples=200, deadline=None)
@given(
    fillers=st.lists(st.integers(0, 4), min_size=2, max_size=8),
    block_size=st.integers(1, 3),
    mangle=st.booleans(),
)
def test_ambiguous_matches_always_raise_with_every_line_number(
    fillers: list[int], block_size: int, mangle: bool
) -> None:
    block = [f"    shared_{n}()" for n in range(block_size)]
    lines: list[str] = []
    starts = []
    for group, count in enumerate(fillers):
        lines += [f"    filler_{group}_{n}()" for n in range(count)]
        starts.append(len(lines) + 1)
        lines += block
    search = "\n".join(line.strip() + ("  " if mangle else "") for line in block)
    with pytest.raises(EditError) as caught:
        apply_edit("\n".join(lines) + "\n", search, "replaced()")
    message = str(caught.value)
    assert f"matches {len(fillers)} places" in message
    assert _listed_lines(message) == starts
