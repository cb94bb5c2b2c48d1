"""Languages by file name, and their tree-sitter grammars and definition queries."""

from __future__ import annotations

from functools import cache
from pathlib import PurePosixPath

from tree_sitter import Language, Parser, Query

_BY_SUFFIX = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    # Read with the plain fallback (no grammar here).
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".swift": "swift",
    ".scala": "scala",
    ".sh": "shell",
    ".md": "markdown",
    ".rst": "restructuredtext",
    ".txt": "text",
    ".toml": "toml",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".json": "json",
    ".html": "html",
    ".css": "css",
    ".sql": "sql",
}
_BY_NAME = {"Makefile": "make", "Dockerfile": "dockerfile"}


def language_of(path: str) -> str | None:
    """The file's language by its name, or None for an unknown kind."""
    pure = PurePosixPath(path)
    return _BY_NAME.get(pure.name) or _BY_SUFFIX.get(pure.suffix.lower())


# Definitions: `@name` is the defined name, `@definition.<kind>` the whole definition.
_DEFINITIONS = {
    "python": """
        (class_definition name: (identifier) @name) @definition.class
        (function_definition name: (identifier) @name) @definition.function
        (module (expression_statement (assignment left: (identifier) @name) @definition.constant))
    """,
    "javascript": """
        (class_declaration name: (_) @name) @definition.class
        (function_declaration name: (identifier) @name) @definition.function
        (generator_function_declaration name: (identifier) @name) @definition.function
        (method_definition name: (property_identifier) @name) @definition.method
        (variable_declarator name: (identifier) @name
            value: [(arrow_function) (function_expression) (class)]) @definition.function
    """,
    "typescript": """
        (class_declaration name: (_) @name) @definition.class
        (abstract_class_declaration name: (_) @name) @definition.class
        (interface_declaration name: (_) @name) @definition.interface
        (type_alias_declaration name: (_) @name) @definition.type
        (enum_declaration name: (_) @name) @definition.type
        (function_declaration name: (identifier) @name) @definition.function
        (method_definition name: (property_identifier) @name) @definition.method
        (method_signature name: (property_identifier) @name) @definition.method
        (variable_declarator name: (identifier) @name
            value: [(arrow_function) (function_expression)]) @definition.function
    """,
    "go": """
        (function_declaration name: (identifier) @name) @definition.function
        (method_declaration name: (field_identifier) @name) @definition.method
        (type_spec name: (type_identifier) @name) @definition.type
    """,
    "rust": """
        (struct_item name: (type_identifier) @name) @definition.class
        (enum_item name: (type_identifier) @name) @definition.class
        (trait_item name: (type_identifier) @name) @definition.interface
        (type_item name: (type_identifier) @name) @definition.type
        (function_item name: (identifier) @name) @definition.function
        (function_signature_item name: (identifier) @name) @definition.function
        (mod_item name: (identifier) @name) @definition.module
        (macro_definition name: (identifier) @name) @definition.macro
    """,
    "java": """
        (class_declaration name: (identifier) @name) @definition.class
        (interface_declaration name: (identifier) @name) @definition.interface
        (enum_declaration name: (identifier) @name) @definition.class
        (record_declaration name: (identifier) @name) @definition.class
        (method_declaration name: (identifier) @name) @definition.method
        (constructor_declaration name: (identifier) @name) @definition.method
    """,
}
_DEFINITIONS["tsx"] = _DEFINITIONS["typescript"]

# Comments and string literals: text that is not code, so names in it are not references.
# Only the literal parts of strings: code inside f-strings and `${…}` is code.
_NOT_CODE = {
    "python": ("comment", "string_content"),
    "javascript": ("comment", "string_fragment", "regex_pattern", "jsx_text"),
    "typescript": ("comment", "string_fragment", "regex_pattern"),
    "tsx": ("comment", "string_fragment", "regex_pattern", "jsx_text"),
    "go": ("comment", "interpreted_string_literal", "raw_string_literal"),
    "rust": ("line_comment", "block_comment", "string_literal", "raw_string_literal"),
    "java": ("line_comment", "block_comment", "string_literal"),
}

PARSED = frozenset(_DEFINITIONS)


def _grammar(language: str) -> object:
    if language == "python":
        import tree_sitter_python as grammar

        return grammar.language()
    if language == "javascript":
        import tree_sitter_javascript as grammar

        return grammar.language()
    if language in ("typescript", "tsx"):
        import tree_sitter_typescript as grammar

        return grammar.language_tsx() if language == "tsx" else grammar.language_typescript()
    if language == "go":
        import tree_sitter_go as grammar

        return grammar.language()
    if language == "rust":
        import tree_sitter_rust as grammar

        return grammar.language()
    if language == "java":
        import tree_sitter_java as grammar

        return grammar.language()
    raise KeyError(language)


@cache
def tree_sitter_language(language: str) -> Language:
    return Language(_grammar(language))


@cache
def parser(language: str) -> Parser:
    return Parser(tree_sitter_language(language))


@cache
def definitions_query(language: str) -> Query:
    return Query(tree_sitter_language(language), _DEFINITIONS[language])


@cache
def not_code_query(language: str) -> Query:
    nodes = " ".join(f"({name})" for name in _NOT_CODE[language])
    return Query(tree_sitter_language(language), f"[{nodes}] @skip")
