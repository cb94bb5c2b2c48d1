"""A git host on loopback: bare repositories served over smart HTTP by `git http-backend`.

`GitRemote` stands in for github.com's git endpoint. It accepts only HTTP Basic auth
`x-access-token:<token>` with a token that its token checker (a `FakeGitHub`) says is live for an
installation owning the repository; anything else is answered 401 with GitHub's
`WWW-Authenticate: Basic realm="GitHub"`, so git fails at once when `GIT_TERMINAL_PROMPT=0`.
Each request is handed to `git http-backend` as a CGI subprocess (receive-pack is enabled in every
bare repository this remote creates), with a timeout.

Usage::

    async with running(FakeGitHub()) as github, running(GitRemote(tmp_path, github)) as remote:
        remote.create("octo-org", "hello", files={"README.md": "hi\\n"})
        github.add_repo("octo-org", "hello", installation_id=1, remote=remote)
        url = remote.clone_url("octo-org", "hello")  # http://127.0.0.1:PORT/octo-org/hello.git
        # git -c http.extraHeader="Authorization: Basic base64(x-access-token:TOKEN)" clone URL

The module also holds the loopback server plumbing shared with `tests.fakes.github`, and the reads
of a bare repository (refs, diffs, commits, blobs) that `FakeGitHub` answers from.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.models import _Uvicorn, serve_on_loopback, stop_serving

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
S = TypeVar("S", bound="LoopbackServer")


class LoopbackServer:
    """A Starlette app under uvicorn on 127.0.0.1, on a port picked by the kernel."""

    def __init__(self) -> None:
        self.url = ""
        self._server: _Uvicorn | None = None
        self._job: asyncio.Task[None] | None = None

    def _app(self) -> Starlette:
        raise NotImplementedError

    async def start(self) -> str:
        """Serve; returns the base URL."""
        self._server, self._job, self.url = await serve_on_loopback(
            self._app(), type(self).__name__
        )
        return self.url

    async def stop(self) -> None:
        """Shut the server down."""
        await stop_serving(self._server, self._job)


@asynccontextmanager
async def running(fake: S) -> AsyncIterator[S]:
    """Start the fake for the block and stop it after."""
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


def _git_env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }


async def git_output(git_dir: Path, *args: str, timeout: float = 10) -> bytes | None:
    """Run a read-only git command in a bare repository; its stdout, or None when it fails."""
    proc = await asyncio.create_subprocess_exec(
        "git", "--git-dir", str(git_dir), "-c", "core.quotePath=false", *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=_git_env(git_dir),
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out if proc.returncode == 0 else None


async def resolve(git_dir: Path, ref: str) -> str | None:
    """The commit a branch, tag or sha names, or None."""
    if not ref or ref.startswith("-"):  # never an option to git
        return None
    for name in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        out = await git_output(git_dir, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        if out:
            return out.decode().strip()
    return None


async def read_blob(git_dir: Path, commit: str, path: str) -> bytes | None:
    """The file at `path` in `commit`, or None if there is no such file."""
    kind = await git_output(git_dir, "cat-file", "-t", f"{commit}:{path}")
    if kind is None or kind.strip() != b"blob":
        return None
    return await git_output(git_dir, "cat-file", "blob", f"{commit}:{path}")


@dataclass
class FileDiff:
    """One file of a diff, as GitHub's `diff-entry` describes it."""

    filename: str
    status: str = "modified"
    previous_filename: str | None = None
    additions: int = 0
    deletions: int = 0
    sha: str = "0" * 40
    patch: str | None = None
    # One row per diff position (1 = the line after the first `@@`): (kind, old line, new line).
    rows: list[tuple[str, int | None, int | None]] = field(default_factory=list)

    def locate(
        self, position: int | None = None, line: int | None = None, side: str = "RIGHT"
    ) -> tuple[int, int, str] | None:
        """The (position, line, side) of a comment given by position or by line, or None."""
        # https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request
        for number, (kind, old, new) in enumerate(self.rows, start=1):
            if kind == "@":
                continue
            row_side, row_line = ("LEFT", old) if kind == "-" else ("RIGHT", new)
            if position == number:
                return number, row_line or 0, row_side
            if position is None and line is not None:
                if (side == "RIGHT" and kind != "-" and new == line) or (
                    side == "LEFT" and kind != "+" and old == line
                ):
                    return number, line, side
        return None


HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def parse_diff(text: str) -> list[FileDiff]:
    """Split `git diff --full-index` output into files with GitHub's `patch` (hunks only)."""
    files: list[FileDiff] = []
    for chunk in re.split(r"^diff --git ", text, flags=re.MULTILINE)[1:]:
        head, sep, hunks = chunk.partition("\n@@")
        lines = head.split("\n")
        old = new = None
        entry = FileDiff(filename="")
        for line in lines:
            if line.startswith("--- a/"):
                old = line[6:]
            elif line.startswith("+++ b/"):
                new = line[6:]
            elif line.startswith("rename from "):
                old = line[12:]
                entry.status = "renamed"
            elif line.startswith("rename to "):
                new = line[10:]
            elif line.startswith("new file mode"):
                entry.status = "added"
            elif line.startswith("deleted file mode"):
                entry.status = "removed"
            elif line.startswith("index "):
                blobs = line.split()[1].split("..")
                entry.sha = blobs[1] if len(blobs) == 2 else entry.sha
        if new is None and old is None:  # binary, or a mode change: names only in the first line
            match = re.match(r"a/(.*) b/(.*)$", lines[0])
            old, new = (match[1], match[2]) if match else (lines[0], lines[0])
        entry.filename = new if new is not None else old or ""
        if entry.status == "renamed":
            entry.previous_filename = old
        if sep:
            entry.patch = ("@@" + hunks).rstrip("\n")
            _rows(entry)
        files.append(entry)
    return files


def _rows(entry: FileDiff) -> None:
    assert entry.patch is not None
    old = new = 0
    for number, line in enumerate(entry.patch.split("\n")):
        match = HUNK.match(line)
        if match:
            old, new = int(match[1]), int(match[2])
            if number:
                entry.rows.append(("@", None, None))  # a later hunk header is a position too
        elif line.startswith("+"):
            entry.additions += 1
            entry.rows.append(("+", None, new))
            new += 1
        elif line.startswith("-"):
            entry.deletions += 1
            entry.rows.append(("-", old, None))
            old += 1
        elif line.startswith(" "):
            entry.rows.append((" ", old, new))
            old, new = old + 1, new + 1
        else:  # "\ No newline at end of file"
            entry.rows.append(("\\", None, None))


async def diff_files(git_dir: Path, base: str, head: str) -> list[FileDiff] | None:
    """The files changed from the merge base of `base` and `head` to `head`, as on GitHub."""
    out = await git_output(git_dir, "diff", "--full-index", "-M", "--no-color", f"{base}...{head}")
    return None if out is None else parse_diff(out.decode("utf-8", "replace"))


async def diff_text(git_dir: Path, base: str, head: str) -> str | None:
    """The unified diff of `base...head` (GitHub's `application/vnd.github.diff`)."""
    out = await git_output(git_dir, "diff", "--full-index", "-M", "--no-color", f"{base}...{head}")
    return None if out is None else out.decode("utf-8", "replace")


async def commits(git_dir: Path, spec: str) -> list[dict[str, str]]:
    """The commits of `spec` (`a..b`, or `sha^!` for one), oldest first, as dicts."""
    fmt = "%H%x1f%T%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e"
    out = await git_output(git_dir, "log", "--reverse", f"--format={fmt}", spec)
    found = []
    for record in (out or b"").decode("utf-8", "replace").split("\x1e"):
        parts = record.strip("\n").split("\x1f")
        if len(parts) == 6:
            keys = ("sha", "tree", "name", "email", "date", "message")
            found.append(dict(zip(keys, [*parts[:5], parts[5].strip()], strict=True)))
    return found


class TokenChecker(Protocol):
    """What the remote asks about a token (FakeGitHub answers)."""

    def git_access(self, token: str, owner: str, repo: str) -> str | None:
        """None when the token may use the repository, else why not."""


REPO_PATH = re.compile(r"^/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+?)\.git(/.*)?$")


class GitRemote(LoopbackServer):
    """Bare repositories under `root`, served over git's smart HTTP to installation tokens."""

    def __init__(self, root: Path, github: TokenChecker, *, timeout: float = 30) -> None:
        super().__init__()
        self.root = Path(root) / "remote"
        self.root.mkdir(parents=True, exist_ok=True)
        self.github = github
        self.timeout = timeout
        self.requests: list[dict[str, Any]] = []
        self.denied: list[str] = []
        self.errors: list[str] = []

    def path(self, owner: str, name: str) -> Path:
        """Where the bare repository lives."""
        return self.root / owner / f"{name}.git"

    def clone_url(self, owner: str, name: str) -> str:
        """The URL git clones from (GitHub's `clone_url`)."""
        assert self.url, "start the remote first"
        return f"{self.url}/{owner}/{name}.git"

    def create(
        self,
        owner: str,
        name: str,
        *,
        default_branch: str = "main",
        files: Mapping[str, str | bytes] | None = None,
        message: str = "Initial commit",
    ) -> Path:
        """Make a bare repository that accepts pushes, with one commit of `files` if given."""
        path = self.path(owner, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = _git_env(self.root)
        run = {"env": env, "check": True, "capture_output": True, "timeout": 30}
        subprocess.run(["git", "init", "-q", "--bare", "-b", default_branch, str(path)], **run)
        git = ["git", "--git-dir", str(path)]
        subprocess.run([*git, "config", "http.receivepack", "true"], **run)
        if not files:
            return path
        with tempfile.TemporaryDirectory() as scratch:
            index = {**env, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
            for file, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                blob = subprocess.run([*git, "hash-object", "-w", "--stdin"], input=data, **run)
                info = f"100644,{blob.stdout.decode().strip()},{file}"
                subprocess.run([*git, "update-index", "--add", "--cacheinfo", info], **{
                    **run, "env": index})  # fmt: skip
            tree = subprocess.run([*git, "write-tree"], **{**run, "env": index})
            commit = subprocess.run(
                [*git, "commit-tree", tree.stdout.decode().strip(), "-m", message], **run
            )
            sha = commit.stdout.decode().strip()
            subprocess.run([*git, "update-ref", f"refs/heads/{default_branch}", sha], **run)
        return path

    def branch(self, owner: str, name: str, branch: str) -> str | None:
        """The commit a branch points at, or None."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.path(owner, name)), "rev-parse", "--verify", "--quiet",
             f"refs/heads/{branch}"],
            env=_git_env(self.root), capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.stdout.strip() or None

    def _app(self) -> Starlette:
        return Starlette(routes=[Route("/{rest:path}", self._handle, methods=METHODS)])

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        record: dict[str, Any] = {
            "method": request.method, "path": path, "query": request.url.query, "status": None,
        }  # fmt: skip
        self.requests.append(record)
        answer = await self._answer(request, path, body)
        record["status"] = answer.status_code
        return answer

    async def _answer(self, request: Request, path: str, body: bytes) -> Response:
        match = REPO_PATH.match(path)
        if match is None or match[1].startswith(".") or match[2].startswith("."):
            return Response("Not Found\n", 404, media_type="text/plain")
        owner, name = match[1], match[2]
        reason = self._refusal(request.headers.get("authorization", ""), owner, name)
        if reason is not None:
            self.denied.append(f"{request.method} {path}: {reason}")
            # What github.com answers, so git reports an authentication failure.
            return Response(
                "Invalid username or token. Password authentication is not supported for Git "
                "operations.\n",
                401,
                headers={"www-authenticate": 'Basic realm="GitHub"'},
                media_type="text/plain",
            )
        if not self.path(owner, name).is_dir():
            return Response("Repository not found.\n", 404, media_type="text/plain")
        return await self._backend(request, path, body)

    def _refusal(self, authorization: str, owner: str, name: str) -> str | None:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "basic" or not credential:
            return "no Basic credentials"
        try:
            user, _, token = base64.b64decode(credential, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "malformed Basic credentials"
        if user != "x-access-token":
            return f"user {user!r} is not x-access-token"
        return self.github.git_access(token, owner, name)

    async def _backend(self, request: Request, path: str, body: bytes) -> Response:
        env = {
            **_git_env(self.root),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": path,
            "QUERY_STRING": request.url.query,
            "CONTENT_TYPE": request.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        for key, value in request.headers.items():
            if key not in {"authorization", "content-type", "content-length"}:
                env["HTTP_" + key.upper().replace("-", "_")] = value  # Git-Protocol, gzip
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(body), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            self.errors.append(f"{request.method} {path}: git http-backend timed out")
            return Response("timed out\n", 504, media_type="text/plain")
        if err.strip():
            self.errors.append(f"{request.method} {path}: {err.decode(errors='replace').strip()}")
        return _cgi_response(out)


def _cgi_response(out: bytes) -> Response:
    """Turn a CGI program's output (headers, a blank line, the body) into a response."""
    ends = [i for i in (out.find(b"\r\n\r\n"), out.find(b"\n\n")) if i >= 0]
    if not ends:
        return Response(out, 502, media_type="text/plain")
    end = min(ends)
    head, rest = out[:end], out[end:]
    rest = rest[4:] if rest.startswith(b"\r\n\r\n") else rest[2:]
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
        elif name.strip():
            headers[name.strip().lower()] = value.strip()
    return Response(rest, status, headers=headers)
