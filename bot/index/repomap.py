"""The repo map: the files that matter most for a task and their key definitions, in a budget.

Pure. The map lists files in ranked order, each with the signatures of its definitions, those
the task names first, then the ones the rest of the repository uses most; whatever does not fit
the token budget is left out, so the map never exceeds it.
"""

from __future__ import annotations

from collections import Counter

from bot.index.build import RepoIndex
from bot.index.rank import RankedFile, code_names
from bot.index.symbols import Definition

# Signatures shown per file at most; a file's own list is cut before the map drops the file.
_PER_FILE = 12


def estimate_tokens(text: str) -> int:
    """Tokens a text takes, estimated as one per four characters (no tokenizer is installed)."""
    return (len(text) + 3) // 4


def _used_names(index: RepoIndex) -> Counter[str]:
    """How many files use each name: a definition used widely matters more in a map."""
    used: Counter[str] = Counter()
    for file in index.files.values():
        used.update(file.symbols.references.keys())
    return used


def _key_definitions(
    definitions: list[Definition], named: set[str], used: Counter[str]
) -> list[Definition]:
    """The definitions worth showing, best first: named by the task, then the most used."""
    return sorted(
        definitions,
        key=lambda d: (d.name not in named, -used.get(d.name, 0), d.line),
    )[:_PER_FILE]


def _entry(path: str, definitions: list[Definition]) -> str:
    lines = [f"{path}:"]
    # Shown in file order; chosen (and cut) in order of worth.
    lines += [f"  {d.line}: {d.signature}" for d in sorted(definitions, key=lambda d: d.line)]
    return "\n".join(lines)


def render_map(index: RepoIndex, ranked: list[RankedFile], task: str, budget_tokens: int) -> str:
    """The map of the ranked files that fits `budget_tokens`."""
    named = code_names(task)
    used = _used_names(index)
    parts: list[str] = []
    left = budget_tokens
    for item in ranked:
        file = index.files.get(item.path)
        if file is None or (item.score <= 0 and not file.symbols.definitions):
            continue
        definitions = _key_definitions(file.symbols.definitions, named, used)
        # Fewer signatures rather than no file: cut the list until the entry fits.
        while True:
            entry = _entry(item.path, definitions)
            cost = estimate_tokens(entry) + 1
            if cost <= left or not definitions:
                break
            definitions = definitions[: len(definitions) // 2]
        if cost > left:
            break
        parts.append(entry)
        left -= cost
    return "\n".join(parts)
