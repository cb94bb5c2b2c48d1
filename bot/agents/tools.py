"""The file tools the built-in model agent works with, confined to one clone (DESIGN §7).

Synchronous on purpose: the agent runs `CloneTools.call` in a thread. Every mistake the model can
make raises ToolError, whose message is meant for the model and says what to do instead.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from bot.agents.edits import EditError, apply_edit, describe_change
from bot.repo_config import CONFIG_PATH, path_matches


class ToolError(Exception):
    """The model called a tool wrongly; the message is the tool's answer to it."""


MAX_LISTED_FILES = 500
# Lines of minified code can be megabytes long; the model needs to see that, not all of it.
MAX_LINE_CHARS = 1000
MAX_SEARCH_LINE_CHARS = 300
MAX_SEARCH_RESULTS = 500
BINARY_SNIFF_BYTES = 8192
_RELATIVE = "give a path relative to the repository root, such as 'src/app.py'"

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "list_files",
        "description": "List the files under a folder of the repository (paths relative to the"
        " repository root, sorted, one per line; .git is left out).",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Folder to list; default '.'."},
                "pattern": {
                    "type": "string",
                    "description": "Glob on the path or file name, e.g. '*.py' or 'test_*'.",
                },
            },
            "required": [],
            "additionalProperties": False,
        },
    },
    {
        "name": "read_file",
        "description": "Read a text file with numbered lines ('  12| code'); at most 400 lines per"
        " call, use start_line and end_line for more. The numbers are not part of the file.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path relative to the root."},
                "start_line": {"type": "integer", "minimum": 1, "description": "Default 1."},
                "end_line": {"type": "integer", "minimum": 1, "description": "Inclusive."},
            },
            "required": ["path"],
            "additionalProperties": False,
        },
    },
    {
        "name": "search",
        "description": "Find lines containing a text (or a Python regular expression with"
        " regex=true) in the repository's text files; answers 'path:line: text'.",
        "parameters": {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Text or regular expression."},
                "path": {"type": "string", "description": "Folder or file; default '.'."},
                "regex": {"type": "boolean", "description": "Default false."},
                "max_results": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SEARCH_RESULTS,
                    "description": "Default 100.",
                },
            },
            "required": ["pattern"],
            "additionalProperties": False,
        },
    },
    {
        "name": "edit_file",
        "description": "Replace one place in an existing file: `search` is the current text"
        " (copied from read_file without the line numbers, with enough lines to match exactly"
        " once), `replace` is what it becomes. An empty `replace` deletes the text.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path relative to the root."},
                "search": {"type": "string", "description": "The exact text to replace."},
                "replace": {"type": "string", "description": "The new text."},
            },
            "required": ["path", "search", "replace"],
            "additionalProperties": False,
        },
    },
    {
        "name": "create_file",
        "description": "Create a file (and its folders) with the given content. To change an"
        " existing file use edit_file; overwrite=true replaces a whole file.",
        "parameters": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "File path relative to the root."},
                "content": {"type": "string", "description": "The whole file's text."},
                "overwrite": {"type": "boolean", "description": "Default false."},
            },
            "required": ["path", "content"],
            "additionalProperties": False,
        },
    },
]
_SPECS = {spec["name"]: spec for spec in TOOL_SPECS}
_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "integer": (int,), "boolean": (bool,)}


class CloneTools:
    """list_files, read_file, search, edit_file and create_file inside one clone."""

    def __init__(
        self,
        root: Path,
        protected: Callable[[str], bool],
        max_read_lines: int = 400,
        max_file_bytes: int = 1_048_576,
        *,
        protected_patterns: Sequence[str] = (),
    ) -> None:
        self.root = Path(root).resolve()
        self.protected = protected
        self.max_read_lines = max_read_lines
        self.max_file_bytes = max_file_bytes
        # Only used to name the rule in refusals; `protected` decides.
        self.protected_patterns = tuple(protected_patterns)

    def call(self, name: str, arguments: dict[str, Any]) -> str:
        """Run tool `name` with the model's arguments, checked against its spec first."""
        spec = _SPECS.get(name)
        if spec is None:
            raise ToolError(f"there is no tool {name!r}; the tools are {', '.join(_SPECS)}")
        if not isinstance(arguments, dict):
            raise ToolError(f"{name} takes a JSON object of arguments, not {arguments!r:.80}")
        schema = spec["parameters"]
        properties = schema["properties"]
        extra = sorted(set(arguments) - set(properties))
        if extra:
            raise ToolError(
                f"{name} has no argument {', '.join(map(repr, extra))}; its arguments are"
                f" {', '.join(properties) or 'none'}"
            )
        # Models often send null for an optional argument they mean to leave out.
        given = {k: v for k, v in arguments.items() if v is not None or k in schema["required"]}
        missing = [k for k in schema["required"] if k not in given]
        if missing:
            raise ToolError(f"{name} needs the argument {', '.join(map(repr, missing))}")
        for key, value in given.items():
            kind = properties[key]["type"]
            if kind == "integer" and isinstance(value, float) and value.is_integer():
                value = given[key] = int(value)
            # bool is an int in Python, but `true` is no line number.
            if not isinstance(value, _TYPES[kind]) or (
                kind != "boolean" and isinstance(value, bool)
            ):
                raise ToolError(
                    f"{name}: argument {key!r} must be {'an' if kind == 'integer' else 'a'}"
                    f" {kind}, not {type(value).__name__} {value!r:.80}"
                )
        return getattr(self, name)(**given)

    def list_files(self, path: str = ".", pattern: str | None = None) -> str:
        """Files under `path`, relative to the root, sorted, one per line."""
        target, rel = self._resolve(path)
        if not target.exists():
            raise ToolError(f"there is no {rel!r} in the repository; list_files('.') shows all")
        names = [
            name
            for name in sorted(self._walk(target))
            if pattern is None
            or fnmatch.fnmatchcase(name, pattern)
            or fnmatch.fnmatchcase(posixpath.basename(name), pattern)
        ]
        if not names:
            where = f" matching {pattern!r}" if pattern else ""
            return f"no files{where} under {rel}"
        shown = names[:MAX_LISTED_FILES]
        if len(names) > MAX_LISTED_FILES:
            shown.append(
                f"… and {len(names) - MAX_LISTED_FILES} more (narrow with path or pattern)"
            )
        return "\n".join(shown)

    def read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> str:
        """Lines `start_line`..`end_line` of a text file, numbered, at most max_read_lines."""
        target, rel = self._existing_file(path)
        if start_line < 1:
            raise ToolError(f"start_line must be 1 or more, not {start_line}")
        if end_line is not None and end_line < start_line:
            raise ToolError(f"end_line ({end_line}) must not be before start_line ({start_line})")
        last = start_line + self.max_read_lines - 1
        if end_line is not None:
            last = min(last, end_line)
        lines: list[str] = []
        total = 0
        with self._open(target, rel) as handle:
            for total, raw in enumerate(handle, start=1):
                if start_line <= total <= last:
                    lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        if total == 0:
            return f"{rel} is empty (0 lines)"
        if start_line > total:
            raise ToolError(
                f"{rel} has {total} lines; start_line={start_line} is past its end"
                f" (read from start_line=1 to {total})"
            )
        shown_end = start_line + len(lines) - 1
        width = max(4, len(str(shown_end)))
        text = "\n".join(f"{start_line + n:>{width}}| {_cut(line)}" for n, line in enumerate(lines))
        if shown_end < total and (end_line is None or shown_end < end_line):
            text += (
                f"\n[{rel} has {total} lines; this shows {start_line}-{shown_end}. Read on with"
                f" start_line={shown_end + 1}]"
            )
        elif start_line > 1 or shown_end < total:
            text += f"\n[{rel} has {total} lines; this shows {start_line}-{shown_end}]"
        return text

    def search(
        self, pattern: str, path: str = ".", regex: bool = False, max_results: int = 100
    ) -> str:
        """Lines matching `pattern` in the text files under `path`, as `path:line: text`."""
        if not pattern:
            raise ToolError("the search pattern is empty; give the text to look for")
        if not 1 <= max_results <= MAX_SEARCH_RESULTS:
            raise ToolError(f"max_results must be 1 to {MAX_SEARCH_RESULTS}, not {max_results}")
        if regex:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ToolError(
                    f"invalid regular expression {pattern!r}: {exc}; fix it, or search for"
                    " plain text with regex=false"
                ) from None
            matches: Callable[[str], bool] = lambda line: compiled.search(line) is not None  # noqa: E731
        else:
            matches = lambda line: pattern in line  # noqa: E731
        target, rel = self._resolve(path)
        if not target.exists():
            raise ToolError(f"there is no {rel!r} in the repository; list_files('.') shows all")
        found: list[str] = []
        for name in sorted(self._walk(target)):
            file = self.root / name
            try:
                info = file.lstat()
                # Symlinks lead out of the clone or to a file found under its own name; a FIFO
                # would block the read forever.
                if not stat.S_ISREG(info.st_mode) or info.st_size > self.max_file_bytes:
                    continue
                data = file.read_bytes()
            except OSError:
                continue
            if b"\0" in data[:BINARY_SNIFF_BYTES]:
                continue
            # Lines end at "\n" only, as read_file counts them.
            lines = data.decode("utf-8", "replace").removesuffix("\n").split("\n")
            for number, line in enumerate(lines, 1):
                if matches(line):
                    if len(found) == max_results:
                        found.append(
                            f"[stopped at {max_results} matches: narrow the pattern or the path]"
                        )
                        return "\n".join(found)
                    found.append(f"{name}:{number}: {_cut(line.strip(), MAX_SEARCH_LINE_CHARS)}")
        return "\n".join(found) if found else f"no matches for {pattern!r} under {rel}"

    def edit_file(self, path: str, search: str, replace: str) -> str:
        """Replace the one place `search` names in an existing file with `replace`."""
        target, rel = self._writable(path)
        if not target.exists():
            raise ToolError(f"{rel} does not exist; use create_file to make a new file")
        target, rel = self._existing_file(path)
        size = target.stat().st_size
        if size > self.max_file_bytes:
            raise ToolError(
                f"{rel} is {size} bytes, over the {self.max_file_bytes}-byte limit for edits"
            )
        with self._open(target, rel) as handle:
            # surrogateescape keeps bytes that are not UTF-8 exactly as they were.
            old = handle.read().decode("utf-8", "surrogateescape")
        try:
            new = apply_edit(old, search, replace, path=rel)
        except EditError as exc:
            raise ToolError(str(exc)) from None
        if new == old:
            return f"no change to {rel}: the replacement is the text it replaces"
        self._write(target, rel, _encode(new))
        return f"edited {rel}: {describe_change(old, new)}"

    def create_file(self, path: str, content: str, overwrite: bool = False) -> str:
        """Write a new file (and its folders); an existing one only with overwrite."""
        target, rel = self._writable(path)
        if target.is_dir():
            raise ToolError(f"{rel} is a folder; give a file path inside it")
        existed = target.exists()
        if existed and not overwrite:
            raise ToolError(
                f"{rel} already exists; use edit_file to change part of it, or create_file"
                " with overwrite=true to replace all of it"
            )
        data = _encode(content)
        if len(data) > self.max_file_bytes:
            raise ToolError(f"the content is over the {self.max_file_bytes}-byte limit")
        try:
            # `target` is resolved and inside the root, so every missing folder is too.
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ToolError(f"cannot create the folders of {rel}: {exc.strerror}") from None
        self._write(target, rel, data)
        lines = len(content.splitlines())
        done = "overwrote" if existed else "created"
        return f"{done} {rel} ({lines} line{'' if lines == 1 else 's'})"

    def _resolve(self, path: str) -> tuple[Path, str]:
        """The resolved location of `path` and its name relative to the root; refuses escapes."""
        if not isinstance(path, str) or "\0" in path:
            raise ToolError(f"path {path!r} is not a valid path")
        norm = posixpath.normpath(path or ".")
        if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
            raise ToolError(f"path {path!r} is outside the repository; {_RELATIVE}")
        try:
            # resolve() follows symlinks (before any `..` after them, as the system does), so a
            # link inside the clone cannot lead out of it.
            target = (self.root / path).resolve()
        except (OSError, RuntimeError, ValueError):
            # RuntimeError: a symlink loop; ValueError: text no file name can hold.
            raise ToolError(f"path {path!r} cannot be resolved to a file or folder") from None
        if not target.is_relative_to(self.root):
            raise ToolError(
                f"path {path!r} is outside the repository: a symlink in it leads out of the"
                " clone, and the tools do not follow such links"
            )
        rel = target.relative_to(self.root).as_posix()
        if any(part.lower() == ".git" for part in (*norm.split("/"), *rel.split("/"))):
            raise ToolError(f"path {path!r} is inside .git, which the tools do not touch")
        return target, rel

    def _existing_file(self, path: str) -> tuple[Path, str]:
        target, rel = self._resolve(path)
        if target.is_dir():
            raise ToolError(f"{rel} is a folder; use list_files to see what is in it")
        if not target.exists():
            raise ToolError(
                f"there is no file {rel!r}; use list_files or search to find the right path"
            )
        if not target.is_file():
            raise ToolError(f"{rel} is not a regular file; the tools only read and edit text files")
        return target, rel

    def _writable(self, path: str) -> tuple[Path, str]:
        target, rel = self._resolve(path)
        norm = posixpath.normpath(path)
        # Both names count: a symlink must not be a way into a protected file.
        for name in dict.fromkeys((norm, rel)):
            if self.protected(name):
                via = f"{norm} leads to {rel}, which" if name != norm else name
                raise ToolError(
                    f"{via} is protected ({self._rule(name)}): Nimbus refuses changes there;"
                    " leave it as it is and say in your summary what it would need"
                )
        return target, rel

    def _rule(self, name: str) -> str:
        for pattern in self.protected_patterns:
            if path_matches(name, pattern):
                return f"it matches protected_paths pattern {pattern!r} of {CONFIG_PATH}"
        return f"protected_paths of {CONFIG_PATH}"

    def _open(self, target: Path, rel: str) -> BinaryIO:
        """The file opened for reading; binary files are refused."""
        try:
            handle = target.open("rb")
        except OSError as exc:
            raise ToolError(f"cannot read {rel}: {exc.strerror}") from None
        if b"\0" in handle.read(BINARY_SNIFF_BYTES):
            handle.close()
            raise ToolError(f"{rel} is a binary file; the tools only read and edit text")
        handle.seek(0)
        return handle

    def _write(self, target: Path, rel: str, data: bytes) -> None:
        try:
            target.write_bytes(data)
        except OSError as exc:
            raise ToolError(f"cannot write {rel}: {exc.strerror}") from None

    def _walk(self, target: Path) -> Iterator[str]:
        """Names relative to the root of the files at or under `target`, skipping .git."""
        if not target.is_dir():
            yield target.relative_to(self.root).as_posix()
            return
        # followlinks=False: a symlinked folder may lead out of the clone.
        for folder, dirs, files in os.walk(target):
            dirs[:] = [d for d in dirs if d.lower() != ".git"]
            base = Path(folder).relative_to(self.root)
            for file in files:
                # A submodule's `.git` is a file naming its git folder.
                if file.lower() != ".git":
                    yield (base / file).as_posix()


def _encode(text: str) -> bytes:
    # surrogateescape writes back the bytes that were not UTF-8 when the file was read.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ToolError("the text has characters that cannot be written as UTF-8") from None


def _cut(line: str, limit: int = MAX_LINE_CHARS) -> str:
    if len(line) <= limit:
        return line
    return f"{line[:limit]}[… {len(line) - limit} more characters]"
