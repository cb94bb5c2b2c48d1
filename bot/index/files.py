"""Which files of a clone the index reads: tracked, not ignored, text, not vendored or generated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from bot import paths

MAX_FILE_BYTES = 1024 * 1024
# Bytes read to tell text from binary (git's own rule: a NUL byte in the first 8000).
BINARY_PROBE = 8000

# Why a tracked file is not indexed.
IGNORED = "ignored by .nimbusignore"
VENDORED = "vendored"
GENERATED = "generated"
LOCK = "lock file"
TOO_LARGE = "over 1 MiB"
BINARY = "binary"
LINK = "symbolic link or submodule"
UNREADABLE = "missing or unreadable"


@dataclass(frozen=True)
class TrackedFile:
    """One entry of a commit's tree (`git ls-tree -r`): the path, its blob and mode."""

    path: str
    blob: str
    mode: str


# Kinds of files that are never text: not even opened.
_BINARY_SUFFIXES = frozenset(
    ".png .jpg .jpeg .gif .bmp .ico .icns .webp .tif .tiff .psd .pdf .zip .gz .tgz .bz2 .xz .7z"
    " .jar .war .whl .egg .so .dll .dylib .a .o .obj .exe .bin .class .pyc .pyo .woff .woff2 .ttf"
    " .otf .eot .mp3 .mp4 .wav .ogg .flac .avi .mov .mkv .sqlite .db .npy .npz .pkl .h5".split()
)


def parse_ls_tree(output: str) -> list[TrackedFile]:
    """Entries of `git ls-tree -r -z <commit>` (`<mode> <type> <object>\\t<path>`)."""
    found = []
    for record in output.split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, _type, blob = meta.split(" ")
        found.append(TrackedFile(path, blob, mode))
    return found


def skip_reason(file: TrackedFile, ignored: set[str]) -> str | None:
    """Why the file is left out of the index (before reading it), or None to read it."""
    if file.mode not in ("100644", "100755"):
        return LINK
    if file.path in ignored:
        return IGNORED
    if PurePosixPath(file.path).suffix.lower() in _BINARY_SUFFIXES:
        return BINARY
    kind = paths.kind_of(file.path)
    if kind == paths.LOCK:
        return LOCK
    if kind == paths.VENDORED:
        return VENDORED
    if kind == paths.GENERATED:
        return GENERATED
    return None


def looks_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_PROBE]
