"""What kind of file a path is: source, test, generated, vendored, a lock file. Pure."""

from __future__ import annotations

import re
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import PurePosixPath

SOURCE, TEST, OTHER, GENERATED, VENDORED, LOCK = range(6)

LOCK_FILES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "poetry.lock",
        "pdm.lock",
        "uv.lock",
        "pipfile.lock",
        "cargo.lock",
        "gemfile.lock",
        "composer.lock",
        "go.sum",
        "mix.lock",
        "pubspec.lock",
        "podfile.lock",
        "flake.lock",
        "packages.lock.json",
    }
)
_VENDORED_DIRS = frozenset(
    {
        "vendor",
        "vendors",
        "vendored",
        "_vendor",
        "extern",
        "cextern",
        "third_party",
        "third-party",
        "thirdparty",
        "node_modules",
        "bower_components",
    }
)
_GENERATED_GLOBS = (
    "*.min.js",
    "*.min.css",
    "*.map",
    "*_pb2.py",
    "*_pb2_grpc.py",
    "*.pb.go",
    "*.pb.cc",
    "*.pb.h",
    "*.generated.*",
    "*.g.dart",
    "*.snap",
)
_GENERATED_DIRS = frozenset({"dist", "__snapshots__", "__generated__", "generated"})
# The markers code generators put in their output's first lines (Go's convention and @generated).
_GENERATED_MARK = re.compile(r"(?:Code generated .* DO NOT EDIT|@generated\b)")
_TEST_DIRS = frozenset({"test", "tests", "spec", "specs", "__tests__", "testing"})
_TEST_NAMES = (
    "test_*",
    "*_test.*",
    "*.test.*",
    "*.spec.*",
    "*Test.java",
    "*Tests.cs",
    "conftest.py",
)
SOURCE_SUFFIXES = frozenset(
    ".py .pyi .js .jsx .mjs .cjs .ts .tsx .go .rs .java .kt .kts .scala .rb .php .c .h .cc .cpp"
    " .cxx .hpp .hh .cs .swift .m .mm .ex .exs .erl .hs .ml .clj .lua .pl .r .jl .dart .sh .bash"
    " .sql .vue .svelte".split()
)


def is_generated_text(head: str) -> bool:
    """Whether a file's first lines say a generator wrote it."""
    return bool(_GENERATED_MARK.search(head[:2000]))


def kind_of(path: str, head: str = "") -> int:
    """The path's kind, SOURCE … LOCK in the order a reader would care for them.

    `head` is the start of the file's text (or of its diff), where generators leave their mark.
    """
    kind = _path_kind(path)
    if kind in (SOURCE, TEST, OTHER) and head and is_generated_text(head):
        return GENERATED
    return kind


@lru_cache(maxsize=65_536)
def _path_kind(path: str) -> int:
    """The kind the path alone tells (indexes ask again for the same paths: cached)."""
    pure = PurePosixPath(path)
    name = pure.name
    dirs = {part.lower() for part in pure.parts[:-1]}
    if name.lower() in LOCK_FILES:
        return LOCK
    if dirs & _VENDORED_DIRS:
        return VENDORED
    if dirs & _GENERATED_DIRS or any(fnmatch(name, g) for g in _GENERATED_GLOBS):
        return GENERATED
    if dirs & _TEST_DIRS or any(fnmatch(name, t) for t in _TEST_NAMES):
        return TEST
    return SOURCE if pure.suffix.lower() in SOURCE_SUFFIXES else OTHER
