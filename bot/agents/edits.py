"""Search-and-replace edits for the model agent: exact first, then tolerant of whitespace (pure)."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from difflib import SequenceMatcher


class EditError(ValueError):
    """An edit that cannot be applied; the message tells the model how to correct its request."""


# How many match positions an ambiguity error lists, and how much of a near miss it shows.
_MAX_LISTED = 30
_MAX_SHOWN_LINES = 40
_MAX_SHOWN_CHARS = 300
# Near-miss scoring computes full similarity for at most this many of the best candidate windows.
_MAX_SCORED = 60
_CHAR_LEVEL_LIMIT = 4000
_NUMBERED = re.compile(r"^\s*\d+\| ")


def apply_edit(text: str, search: str, replace: str, *, path: str = "the file") -> str:
    """Replace the one place in `text` that `search` names with `replace`; EditError otherwise."""
    if not search.strip():
        raise EditError(
            f"the search text is empty; to write a new file use create_file, otherwise put the"
            f" lines of {path} to change in search, with enough surrounding text to match once"
        )
    newline = _newline(text)
    search = _with_newline(search, newline)
    replace = _with_newline(replace, newline)
    starts = _exact_starts(text, search)
    if len(starts) == 1:
        return text[: starts[0]] + replace + text[starts[0] + len(search) :]
    if starts:
        raise _ambiguous(path, [text.count("\n", 0, at) + 1 for at in starts], "")
    return _tolerant(text, search, replace, newline, path)


def _newline(text: str) -> str:
    """The file's line ending: CRLF when most of its lines end so."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def _with_newline(text: str, newline: str) -> str:
    # Models write "\n" whatever the file uses; CRLF files must stay CRLF.
    text = text.replace("\r\n", "\n")
    return text.replace("\n", newline) if newline != "\n" else text


def _exact_starts(text: str, search: str) -> list[int]:
    """Every position where `search` starts, overlapping ones included."""
    starts: list[int] = []
    at = text.find(search)
    while at != -1:
        starts.append(at)
        at = text.find(search, at + 1)
    return starts


def _split_lines(text: str) -> list[str]:
    """Lines with their endings kept, so that joining them gives `text` back."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _content_lines(text: str) -> list[str]:
    """Lines without endings; a final newline does not make an extra empty line."""
    text = text.replace("\r\n", "\n")
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _tolerant(text: str, search: str, replace: str, newline: str, path: str) -> str:
    """Match line by line ignoring indentation and surrounding whitespace; re-indent `replace`."""
    file_lines = _split_lines(text)
    keys = [line.strip() for line in file_lines]
    wanted = _content_lines(search)
    new = _content_lines(replace)
    # Blank lines around the search text carry no location; drop them (and their mirror in
    # `replace`) so that a model adding or missing one still matches.
    while not wanted[0].strip():
        wanted.pop(0)
        if new and not new[0].strip():
            new.pop(0)
    while not wanted[-1].strip():
        wanted.pop()
        if new and not new[-1].strip():
            new.pop()
    wanted_keys = [line.strip() for line in wanted]
    size = len(wanted)
    found = [
        i
        for i in range(len(keys) - size + 1)
        if keys[i] == wanted_keys[0] and keys[i : i + size] == wanted_keys
    ]
    if not found:
        raise EditError(_not_found(file_lines, wanted, path))
    if len(found) > 1:
        raise _ambiguous(path, [i + 1 for i in found], " when whitespace is ignored")
    start = found[0]
    matched = [line.rstrip("\r\n") for line in file_lines[start : start + size]]
    last = file_lines[start + size - 1]
    ending = last[len(last.rstrip("\r\n")) :]
    block = newline.join(_reindent(new, matched, wanted)) + ending if new else ""
    before = file_lines[:start]
    if not new and not ending and before:
        # Deleting the last lines of a file without a final newline must not add one.
        before[-1] = before[-1].rstrip("\r\n")
    return "".join(before) + block + "".join(file_lines[start + size :])


def _reindent(new: list[str], matched: list[str], wanted: list[str]) -> list[str]:
    """`new` with each indentation of the search mapped to the file's one at the same place."""
    pairs = [(_indent(s), _indent(f)) for f, s in zip(matched, wanted, strict=True) if s.strip()]
    mapping: dict[str, str] = {}
    # The most common pairing wins; on a tie, not the first line's, which models often trim.
    for (search_indent, file_indent), _ in Counter(pairs[1:] + pairs[:1]).most_common():
        mapping.setdefault(search_indent, file_indent)
    search_unit, file_unit = _unit(mapping), _unit(mapping.values())
    first_search, first_file = pairs[0]
    out = []
    for n, line in enumerate(new):
        if n == 0 and line.strip() and _indent(line) == first_search:
            out.append(first_file + line[len(first_search) :])
        else:
            out.append(_map_indent(line, mapping, search_unit, file_unit))
    return out


def _map_indent(line: str, mapping: dict[str, str], search_unit: str, file_unit: str) -> str:
    """One line moved from the search's indentation to the file's (tabs and spaces alike)."""
    own = _indent(line)
    body = line[len(own) :]
    if not body:
        return line
    if own in mapping:
        return mapping[own] + body
    # Deeper than a known indentation: the file's one plus the extra levels in the file's unit.
    shallower = [known for known in mapping if own.startswith(known)]
    if shallower:
        known = max(shallower, key=len)
        extra = own[len(known) :]
        if search_unit != file_unit:
            extra = file_unit * _levels(extra, search_unit)
        return mapping[known] + extra + body
    # Shallower than every known one: take the missing levels off the closest.
    deeper = [known for known in mapping if known.startswith(own)]
    if deeper:
        known = min(deeper, key=len)
        cut = len(known) - len(own)
        if search_unit != file_unit:
            cut = _levels(known[len(own) :], search_unit) * len(file_unit)
        return mapping[known][: max(0, len(mapping[known]) - cut)] + body
    return line


def _unit(indents: Iterable[str]) -> str:
    """One level of indentation among `indents`: a tab, or the smallest step between spaces."""
    indents = list(indents)
    if any("\t" in indent for indent in indents):
        return "\t"
    widths = sorted({len(indent) for indent in indents} | {0})
    steps = [b - a for a, b in itertools.pairwise(widths)]
    return " " * min(steps) if steps else "    "


def _levels(indent: str, unit: str) -> int:
    return max(1, round(len(indent.expandtabs(len(unit))) / len(unit)))


def _ambiguous(path: str, lines: list[int], how: str) -> EditError:
    listed = ", ".join(str(n) for n in lines[:_MAX_LISTED])
    if len(lines) > _MAX_LISTED:
        listed += f" and {len(lines) - _MAX_LISTED} more"
    return EditError(
        f"the search text matches {len(lines)} places in {path}{how} (starting at lines"
        f" {listed}); include more of the surrounding lines in search so that it matches"
        " exactly one place"
    )


def _not_found(file_lines: list[str], wanted: list[str], path: str) -> str:
    """The miss, with the most similar region of the file so the model can correct itself."""
    message = f"the search text was not found in {path}"
    if not file_lines:
        return f"{message}: the file is empty; use create_file with overwrite=true to write it"
    if sum(bool(_NUMBERED.match(line)) for line in wanted) * 2 > len(wanted):
        message += (
            "; it seems to include the line-number prefixes of read_file ('  12| '), which are"
            " not part of the file: leave them out"
        )
    start, size, score = _most_similar(file_lines, wanted)
    shown = [line.rstrip("\r\n") for line in file_lines[start : start + size]]
    width = max(4, len(str(start + len(shown))))
    body = "\n".join(
        f"{start + n + 1:>{width}}| {_cut(line)}" for n, line in enumerate(shown[:_MAX_SHOWN_LINES])
    )
    if len(shown) > _MAX_SHOWN_LINES:
        body += f"\n[… {len(shown) - _MAX_SHOWN_LINES} more lines]"
    where = f"line {start + 1}" if len(shown) == 1 else f"lines {start + 1}-{start + len(shown)}"
    return (
        f"{message}. The most similar part ({score:.0%} alike) is {where}:\n{body}\n"
        "Copy the lines exactly as the file has them (without the line numbers), or read_file"
        " to see its current text, and try again"
    )


def _most_similar(file_lines: list[str], wanted: list[str]) -> tuple[int, int, float]:
    """Start, size and similarity of the window of the file most like the search lines."""
    # Similarity costs the square of the length: a long search text is located by its first
    # lines, which is where the model will look.
    probe: list[str] = []
    for line in wanted:
        probe.append(line.strip()[:_CHAR_LEVEL_LIMIT] + "\n")
        if sum(map(len, probe)) >= _CHAR_LEVEL_LIMIT:
            break
    keys = [line.strip()[:_CHAR_LEVEL_LIMIT] + "\n" for line in file_lines]
    size = min(len(probe), len(keys))
    target = "".join(probe)
    bounds = _quick_ratios(keys, size, target)
    order = sorted(range(len(bounds)), key=lambda i: -bounds[i])
    matcher = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(target)
    best_score, best = -1.0, 0
    for i in order[:_MAX_SCORED]:
        # quick_ratio bounds ratio from above: once the bound is below the best, nothing beats it.
        if bounds[i] <= best_score:
            break
        matcher.set_seq1("".join(keys[i : i + size]))
        score = matcher.ratio()
        if score > best_score:
            best_score, best = score, i
    return best, min(len(wanted), len(keys) - best), max(best_score, 0.0)


def _quick_ratios(keys: list[str], size: int, target: str) -> list[float]:
    """SequenceMatcher.quick_ratio of every window of `size` lines against `target`.

    Kept up to date as the window slides, one line in and one out: recounting every window
    would cost seconds on a large file.
    """
    wanted = Counter(target)
    counts: Counter[str] = Counter()
    common = length = 0

    def move(line: str, step: int) -> None:
        nonlocal common, length
        for char in line:
            have = counts[char]
            if (step > 0 and have < wanted[char]) or (step < 0 and have <= wanted[char]):
                common += step
            counts[char] = have + step
        length += step * len(line)

    for line in keys[:size]:
        move(line, 1)
    bounds = []
    for i in range(len(keys) - size + 1):
        if i:
            move(keys[i - 1], -1)
            move(keys[i + size - 1], 1)
        bounds.append(2.0 * common / (length + len(target)))
    return bounds


def _cut(line: str) -> str:
    if len(line) <= _MAX_SHOWN_CHARS:
        return line
    return f"{line[:_MAX_SHOWN_CHARS]}[… {len(line) - _MAX_SHOWN_CHARS} more characters]"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def describe_change(old: str, new: str) -> str:
    """Which lines an edit changed, from the lines the two texts share at each end."""
    before, after = old.splitlines(), new.splitlines()
    same = 0
    while same < min(len(before), len(after)) and before[same] == after[same]:
        same += 1
    tail = 0
    while (
        tail < min(len(before), len(after)) - same
        and before[len(before) - 1 - tail] == after[len(after) - 1 - tail]
    ):
        tail += 1
    first, last = same + 1, len(after) - tail
    if last < first:
        removed = (
            f"line {first}"
            if first == len(before) - tail
            else f"lines {first}-{len(before) - tail}"
        )
        return f"removed {removed}; the file now has {_count(len(after), 'line')}"
    changed = f"line {first} is" if first == last else f"lines {first}-{last} are"
    return f"{changed} new or changed; the file now has {_count(len(after), 'line')}"
