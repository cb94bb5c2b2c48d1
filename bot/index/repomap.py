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

_CONTAINER_KINDS = frozenset({"class", "interface", "type", "module"})
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
    """The definitions worth showing, best first: named by the task, then the most used.

    A module-level constant is shown only when the task names it: a map of settings says little.
    """
    worth = [d for d in definitions if d.kind != "constant" or d.name in named]
    return sorted(
        worth,
        key=lambda d: (d.name not in named, -used.get(d.name, 0), d.line),
    )[:_PER_FILE]


def _entry(path: str, chosen: list[Definition], all_definitions: list[Definition]) -> str:
    """A file's lines of the map: its chosen definitions in file order, each under its class."""
    shown = {(d.name, d.line) for d in chosen}
    parents = {d.name: d for d in all_definitions if d.kind in _CONTAINER_KINDS}
    lines_of: dict[int, str] = {}
    for definition in chosen:
        indent = "      " if definition.parent else "  "
        lines_of[definition.line] = f"{indent}{definition.line}: {definition.signature}"
        holder = parents.get(definition.parent)
        # A method is read with its class: show the class line too, once.
        if holder is not None and (holder.name, holder.line) not in shown:
            lines_of[holder.line] = f"  {holder.line}: {holder.signature}"
    return "\n".join([f"{path}:", *(lines_of[line] for line in sorted(lines_of))])


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
            entry = _entry(item.path, definitions, file.symbols.definitions)
            cost = estimate_tokens(entry) + 1
            if cost <= left or not definitions:
                break
            definitions = definitions[: len(definitions) // 2]
        if cost > left:
            break
        parts.append(entry)
        left -= cost
    return "\n".join(parts)
