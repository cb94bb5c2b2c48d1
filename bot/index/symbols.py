"""A file's symbols: what it defines (tree-sitter, or a plain fallback) and the names it uses.

Pure: bytes in, symbols out. Runs in worker processes, so everything here is picklable.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from tree_sitter import Node, QueryCursor

from bot.index.languages import PARSED, definitions_query, not_code_query, parser

# A signature longer than this is cut: the map shows where a symbol is, not all of it.
_SIGNATURE_CHARS = 160
# Over the source decoded as latin-1: one character per byte, so tree-sitter's byte offsets
# index the text as they are, and ASCII identifiers read the same.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
# Definitions in languages without a grammar here: keyword then name, at a line's start.
_PLAIN_DEFINITION = re.compile(
    rb"^[ \t]*(?:(?:export|public|private|protected|static|async|pub|abstract|final)[ \t]+)*"
    rb"(?P<kind>def|class|function|func|fn|sub|module|interface|struct|enum|trait|type|proc)"
    rb"[ \t]+(?:self\.)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)",
    re.MULTILINE,
)
_PLAIN_KINDS = {
    b"def": "function",
    b"function": "function",
    b"func": "function",
    b"fn": "function",
    b"sub": "function",
    b"proc": "function",
    b"class": "class",
    b"struct": "class",
    b"enum": "class",
    b"interface": "interface",
    b"trait": "interface",
    b"module": "module",
    b"type": "type",
}


@dataclass(frozen=True)
class Definition:
    """A name a file defines, where, and the first line of its definition."""

    name: str
    kind: str
    line: int
    signature: str
    # The class (or impl, interface, module) it is defined in, if any.
    parent: str = ""


@dataclass
class FileSymbols:
    """What one file defines and which names it uses (with how often)."""

    definitions: list[Definition] = field(default_factory=list)
    # Names used in code (comments and strings left out where tree-sitter reads the language).
    references: Counter[str] = field(default_factory=Counter)
    # Every identifier of the text, comments and strings included: what lexical search reads.
    words: Counter[str] = field(default_factory=Counter)
    parsed: bool = False  # True when tree-sitter read it, False for the plain fallback

    # Words whose count as a reference differs from their count as a word (0: never in code).
    # References are mostly the words with the same counts, so the cache keeps only this.
    differ: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        definitions: list[Definition],
        words: Counter[str],
        differ: dict[str, int],
        parsed: bool,
    ) -> FileSymbols:
        """Symbols from the words and how references differ from them."""
        references = Counter(words)
        # dict's own methods: Counter's item deletion is Python code, and this is a hot path.
        for name, count in differ.items():
            if count:
                dict.__setitem__(references, name, count)
            else:
                dict.pop(references, name, None)
        return cls(definitions, references, words, parsed, differ)

    def to_json(self) -> dict:
        return {
            "d": [[d.name, d.kind, d.line, d.signature, d.parent] for d in self.definitions],
            "w": dict(self.words),
            "r": self.differ,
            "p": self.parsed,
        }

    @classmethod
    def from_json(cls, data: dict) -> FileSymbols:
        return cls.of(
            [Definition(*d) for d in data["d"]],
            Counter(data["w"]),
            data["r"],
            bool(data.get("p")),
        )


def _signature(source: bytes, start: int) -> str:
    end = source.find(b"\n", start)
    line = source[start : end if end != -1 else len(source)]
    return line.decode("utf-8", errors="replace").strip()[:_SIGNATURE_CHARS]


# Definitions deeper than this (functions inside functions inside methods) are left out of the
# map; the limit also keeps the query from walking every node of a large file.
_DEFINITION_DEPTH = 7


# Definitions that hold others, and the field naming them (`impl Foo` names its type).
_CONTAINERS = {
    "class_definition": "name",
    "class_declaration": "name",
    "abstract_class_declaration": "name",
    "interface_declaration": "name",
    "enum_declaration": "name",
    "record_declaration": "name",
    "trait_item": "name",
    "impl_item": "type",
    "mod_item": "name",
    "class": "name",
}


def _parent(node: Node) -> str:
    """The name of the nearest definition that holds `node`, or ""."""
    current = node.parent
    while current is not None:
        field_name = _CONTAINERS.get(current.type)
        if field_name:
            named = current.child_by_field_name(field_name)
            if named is not None and named.text:
                return named.text.decode("utf-8", errors="replace")
        current = current.parent
    return ""


def _parsed(language: str, source: bytes) -> FileSymbols:
    tree = parser(language).parse(source)
    symbols = FileSymbols(parsed=True)
    seen: set[tuple[str, int]] = set()
    cursor = QueryCursor(definitions_query(language))
    cursor.set_max_start_depth(_DEFINITION_DEPTH)
    for _, captures in cursor.matches(tree.root_node):
        names = captures.get("name")
        if not names:
            continue
        name_node = names[0]
        kind = next((k.split(".", 1)[1] for k in captures if k.startswith("definition.")), "")
        name = (name_node.text or b"").decode("utf-8", errors="replace")
        # The declaration's own line (where its name is), not that of an annotation or a
        # decorator above it; the whole line, so `export` or `pub` stays in the signature.
        line = name_node.start_point[0] + 1
        if (name, line) in seen:
            continue
        seen.add((name, line))
        line_start = source.rfind(b"\n", 0, name_node.start_byte) + 1
        whole = captures[f"definition.{kind}"][0] if kind else name_node
        symbols.definitions.append(
            Definition(name, kind, line, _signature(source, line_start), _parent(whole))
        )
    # References are the names used in code: every identifier of the file less those inside
    # comments and string literals, which tree-sitter finds (far fewer nodes than identifiers,
    # so this costs a fraction of walking every identifier node).
    text = source.decode("latin-1")
    words = Counter(_IDENTIFIER.findall(text))
    not_code: list[str] = []
    for nodes in QueryCursor(not_code_query(language)).captures(tree.root_node).values():
        for node in nodes:
            not_code += _IDENTIFIER.findall(text, node.start_byte, node.end_byte)
    # A fragment of a string can cut a word (`"\\u00cdndex"` holds `ndex`): only whole words
    # of the file count, and never below zero.
    differ = {
        name: max(words[name] - count, 0)
        for name, count in Counter(not_code).items()
        if name in words
    }
    return FileSymbols.of(symbols.definitions, words, differ, parsed=True)


def _plain(source: bytes) -> FileSymbols:
    symbols = FileSymbols()
    # Lines counted from the previous match on, not from the start each time.
    line, counted_to = 1, 0
    for match in _PLAIN_DEFINITION.finditer(source):
        line += source.count(b"\n", counted_to, match.start())
        counted_to = match.start()
        line_start = source.rfind(b"\n", 0, match.start()) + 1
        symbols.definitions.append(
            Definition(
                match["name"].decode("utf-8", errors="replace"),
                _PLAIN_KINDS.get(match["kind"], "function"),
                line,
                _signature(source, line_start),
            )
        )
    words = Counter(_IDENTIFIER.findall(source.decode("latin-1")))
    return FileSymbols.of(symbols.definitions, words, {}, parsed=False)


def extract(language: str | None, source: bytes) -> FileSymbols:
    """The symbols of one file's bytes: tree-sitter for the languages it knows here, else plain."""
    if language in PARSED:
        return _parsed(language, source)
    return _plain(source)
