"""Agent-context benchmark: the prompt tokens each phase of the built-in model agent sends.

The baseline a future repository index must cut. Runs the real app (create_app + uvicorn, in this
process, on 127.0.0.1 port 0) with the built-in model agent ("builtin", provider openai) pointed
at the fake OpenAI server of tests/fakes/models.py, on a real repository: a bare clone of this
very repository (or of `--repo PATH`), plus one commit that adds `.github/nimbus.yml` with
`test_command: "true"`, so that INDEXING and VERIFYING run no real test suite.

The fake plays a plausible agent, the same for every task except which folder it lists, what it
searches for and which two files it reads (chosen from the task, see TASKS):
  plan       list_files(folder), search(text), read_file(A), read_file(B), then a JSON plan
  implement  read_file(A), read_file(B), edit_file(A) adding a comment line above a line it
             picks from what read_file showed it, then a one-sentence summary
  review     a JSON review with one non-blocking comment on the first added line of the diff
  fix        (only if VERIFYING fails or the review blocks, which this script never causes)
Every request body the agent sends is recorded by the fake and measured afterwards.

    /tmp/venv/bin/python bench/agent_context.py                 # 5 tasks on this repository
    /tmp/venv/bin/python bench/agent_context.py --quick         # 2 tasks
    /tmp/venv/bin/python bench/agent_context.py --repo ../other # another local git repository
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2
import uvicorn
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.common import BenchError, cpu_model, git, give_up, leave_scratch  # noqa: E402
from bot.cli import _listen  # noqa: E402
from bot.inventory import take_inventory  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes.models import FakeOpenAI, Reply, ToolCall, running  # noqa: E402

API_KEY = "bench-bootstrap-key-0123456789"
WORKSPACE = "ws-default"
CONFIG_PATH = ".github/nimbus.yml"
# More than any phase of the scripted agent asks for; the rest stays unused.
SCRIPTED_ANSWERS = 60
PHASES = ("plan", "implement", "fix", "review")
SYSTEM_PHASE = re.compile(r"This is the (\w+) phase of a task")
NUMBERED_LINE = re.compile(r"^\s*(\d+)\| (.*)$")
HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


# ---------------------------------------------------------------------------------------------
# The tasks


@dataclass(frozen=True)
class TaskSpec:
    """A task, and what the scripted agent looks at for it.

    `files` are read when the repository has them (they are this repository's); otherwise the
    two text files with the most lines containing `search`, then files whose path holds a word
    of the description, then the first text files of the repository.
    """

    key: str
    description: str
    folder: str  # listed in PLANNING; "." when the repository has no such folder
    search: str  # searched for in PLANNING
    files: tuple[str, str]


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec(
        "ws-json",
        "Add a `--json` flag to `nimbus workspace list` that prints the workspaces as a JSON"
        " array of {id, name} objects",
        "bot",
        "_workspace_list",
        ("bot/cli.py", "tests/test_cli.py"),
    ),
    TaskSpec(
        "status-list",
        "Make GET /tasks/ accept `status` as a comma-separated list (e.g."
        " `status=running,queued`), rejecting unknown statuses with a 422 that names them",
        "bot/api",
        "STATUSES",
        ("bot/api/tasks.py", "bot/store/sqlite.py"),
    ),
    TaskSpec(
        "phase-times",
        "Log how long each phase took when a task finishes, one line per phase in the task's"
        " events",
        "phases",
        "_run_phase",
        ("phases/worker.py", "phases/phase_events.py"),
    ),
    TaskSpec(
        "push-retry",
        "Retry `git push` in CLEANUP once after a short pause when it fails with a network"
        " error, and say so in the task's log",
        "phases",
        "async def push",
        ("phases/cleanup.py", "bot/git.py"),
    ),
    TaskSpec(
        "repo-max-steps",
        "Let `.github/nimbus.yml` set `max_steps` for the built-in model agent, capped by the"
        " server's NIMBUS_AGENT_MAX_STEPS",
        "bot/agents",
        "max_steps",
        ("bot/repo_config.py", "bot/agents/model.py"),
    ),
)
QUICK_TASKS = 2


# ---------------------------------------------------------------------------------------------
# Counting tokens


class TokenCounter:
    """tiktoken when it is importable and has its encoding; otherwise characters / 4."""

    def __init__(self) -> None:
        self.exact = False
        self.method = "estimate: characters / 4 (tiktoken is not importable)"
        self._encode: Callable[[str], list[int]] | None = None
        try:
            import tiktoken  # type: ignore[import-not-found]
        except ImportError:
            return
        try:
            encoding = tiktoken.get_encoding("o200k_base")
        except Exception as exc:  # the encoding file is downloaded on first use
            self.method = (
                f"estimate: characters / 4 (tiktoken {tiktoken.__version__} is importable but"
                f" its o200k_base encoding could not be loaded: {type(exc).__name__})"
            )
            return
        self._encode = lambda text: encoding.encode(text, disallowed_special=())
        self.exact = True
        self.method = f"tiktoken {tiktoken.__version__}, encoding o200k_base"

    def __call__(self, text: str) -> float:
        if not text:
            return 0.0
        if self._encode is not None:
            return float(len(self._encode(text)))
        return len(text) / 4


@dataclass
class Parts:
    """One request, measured in tokens, by part."""

    system: float = 0.0
    tools: float = 0.0
    overview: float = 0.0  # the repository overview (render_context) inside the prompt
    prompt: float = 0.0  # the rest of the phase's prompt (task, plan, diff, instructions)
    conversation: float = 0.0  # everything after the prompt: calls, tool results, nudges
    chars: int = 0  # the same text, in characters
    wire_bytes: int = 0  # the whole JSON body as sent

    @property
    def total(self) -> float:
        return self.system + self.tools + self.overview + self.prompt + self.conversation

    @property
    def fixed(self) -> float:
        return self.system + self.tools + self.overview + self.prompt


def message_text(message: dict[str, Any]) -> str:
    """The text a chat message carries to the model: its content and its tool calls."""
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    else:
        text = content or ""
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        text += f"{function.get('name', '')}{function.get('arguments', '')}"
    return text


def measure(body: dict[str, Any], count: TokenCounter, overview: str | None = None) -> Parts:
    """Tokens of a chat-completions body: system + prompt + conversation + tools JSON."""
    messages = body.get("messages") or []
    tools = json.dumps(body.get("tools") or [], ensure_ascii=False)
    parts = Parts(tools=count(tools), wire_bytes=len(json.dumps(body).encode()))
    chars = len(tools)
    for n, message in enumerate(messages):
        text = message_text(message)
        chars += len(text)
        if n == 0 and message.get("role") == "system":
            parts.system += count(text)
        elif n == 1 and message.get("role") == "user":
            if overview and overview in text:
                parts.overview += count(overview)
                parts.prompt += count(text.replace(overview, "", 1))
            else:
                parts.prompt += count(text)
        else:
            parts.conversation += count(text)
    parts.chars = chars
    return parts


def phase_of(body: dict[str, Any]) -> str:
    messages = body.get("messages") or [{}]
    match = SYSTEM_PHASE.search(message_text(messages[0]))
    return match.group(1) if match else "?"


# ---------------------------------------------------------------------------------------------
# The scripted agent (answers the fake model server's requests)


COMMENTS = {
    **dict.fromkeys(
        (".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx", ".go", ".rs", ".java", ".kt", ".c", ".h"),
        ("// ", ""),
    ),
    **dict.fromkeys((".cc", ".cpp", ".hpp", ".cs", ".swift", ".scala", ".php"), ("// ", "")),
    **dict.fromkeys((".md", ".html", ".xml"), ("<!-- ", " -->")),
    ".css": ("/* ", " */"),
    ".sql": ("-- ", ""),
}


def comment_line(path: str, text: str) -> str:
    start, end = COMMENTS.get(PurePosixPath(path).suffix.lower(), ("# ", ""))
    return f"{start}{text}{end}"


def tool_results(messages: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], str]]:
    """(tool name, arguments, result) for every answered tool call of the conversation."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    found = []
    for message in messages:
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                arguments = {}
            calls[call.get("id", "")] = (function.get("name", ""), arguments)
        if message.get("role") == "tool" and message.get("tool_call_id") in calls:
            name, arguments = calls[message["tool_call_id"]]
            found.append((name, arguments, message.get("content") or ""))
    return found


def anchors(read_result: str) -> list[tuple[int, str]]:
    """Lines that read_file showed which appear exactly once in what it showed: (number, text).

    Definitions first (a comment above them reads naturally), then other unindented lines, then
    any other line.
    """
    shown = [
        (int(m.group(1)), m.group(2))
        for m in map(NUMBERED_LINE.match, read_result.split("\n"))
        if m
    ]
    text = "".join(f"{line}\n" for _, line in shown)
    unique = [
        (n, line)
        for n, line in shown
        if line.strip() and "[… " not in line and text.count(f"{line}\n") == 1
    ]

    def rank(item: tuple[int, str]) -> int:
        line = item[1]
        if re.match(r"(async def|def|class|func|fn|pub fn|function|export) ", line):
            return 0
        return 1 if not line[:1].isspace() else 2

    return sorted(unique, key=rank)


def first_added_line(prompt: str) -> tuple[str, int] | None:
    """The path and new line number of the first added line of the diff in a prompt."""
    path, line = None, None
    for row in prompt.split("\n"):
        if row.startswith("+++ "):
            path = row[6:] if row.startswith("+++ b/") else None
            line = None
        elif (hunk := HUNK.match(row)) is not None:
            line = int(hunk.group(1))
        elif line is not None and path is not None:
            if row.startswith("+"):
                return path, line
            if not row.startswith("-"):
                line += 1
    return None


@dataclass
class ScriptedAgent:
    """The fake model's behaviour for one task: the same steps for every task."""

    spec: TaskSpec
    folder: str
    files: tuple[str, str]
    count: TokenCounter
    edit_attempts: int = 0
    fallback_create: bool = False

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body.get("messages") or []
        phase = phase_of(body)
        if phase == "plan":
            reply = self.plan(messages)
        elif phase in ("implement", "fix"):
            reply = self.implement(messages, phase)
        elif phase == "review":
            reply = self.review(messages)
        else:
            reply = Reply(f"(benchmark: unexpected phase {phase!r})")
        # The usage the fake reports is the estimate, so the task's usage can be checked
        # against the requests the fake recorded.
        reply.input_tokens = round(measure(body, self.count).total)
        said = (reply.text or "") + "".join(json.dumps(c.arguments) for c in reply.tool_calls)
        reply.output_tokens = max(1, round(self.count(said)))
        return reply

    def plan(self, messages: list[dict[str, Any]]) -> Reply:
        steps = [
            ToolCall("list_files", {"path": self.folder}),
            ToolCall("search", {"pattern": self.spec.search}),
            ToolCall("read_file", {"path": self.files[0]}),
            ToolCall("read_file", {"path": self.files[1]}),
        ]
        done = sum(1 for m in messages if m.get("role") == "assistant")
        if done < len(steps):
            return Reply(tool_calls=[steps[done]])
        a, b = self.files
        plan = [
            {"title": f"Make the change in {a}", "files": [a], "detail": self.spec.description},
            {"title": f"Follow it up in {b}", "files": [b], "detail": "Keep them consistent."},
            {"title": "Add a test for it", "files": [b], "detail": "Cover the new behaviour."},
        ]
        return Reply(json.dumps({"plan": plan}))

    def implement(self, messages: list[dict[str, Any]], phase: str) -> Reply:
        results = tool_results(messages)
        read = {args.get("path"): out for name, args, out in results if name == "read_file"}
        writes = [(name, out) for name, _, out in results if name in ("edit_file", "create_file")]
        if phase == "fix":
            return Reply("Nothing to fix: the scripted benchmark agent does not fix.")
        for path in self.files:
            if path not in read:
                return Reply(tool_calls=[ToolCall("read_file", {"path": path})])
        if writes and writes[-1][1].startswith(("edited ", "created ")):
            return Reply(f"Marked where the change goes in {self.files[0]}.")
        # Candidates from both files, the first file's first (JSON, which has no comments,
        # last); a failed edit tries the next one.
        order = sorted(self.files, key=lambda p: p.lower().endswith(".json"))
        candidates = [(p, n, line) for p in order for n, line in anchors(read[p])]
        if self.edit_attempts < min(3, len(candidates)):
            path, _, line = candidates[self.edit_attempts]
            self.edit_attempts += 1
            indent = line[: len(line) - len(line.lstrip())]
            note = comment_line(path, f"nimbus-bench ({self.spec.key}): the change goes here")
            call = ToolCall(
                "edit_file",
                {"path": path, "search": f"{line}\n", "replace": f"{indent}{note}\n{line}\n"},
            )
            return Reply(tool_calls=[call])
        self.fallback_create = True
        content = f"nimbus-bench ({self.spec.key}): {self.spec.description}\n"
        call = ToolCall("create_file", {"path": "NIMBUS_BENCH.txt", "content": content})
        return Reply(tool_calls=[call])

    def review(self, messages: list[dict[str, Any]]) -> Reply:
        prompt = message_text(messages[1]) if len(messages) > 1 else ""
        added = first_added_line(prompt)
        comments = []
        if added is not None:
            comments.append(
                {
                    "path": added[0],
                    "line": added[1],
                    "body": "This marks where the change goes; the change itself is missing.",
                    "blocking": False,
                }
            )
        summary = "The diff only marks the place of the change; fine for a benchmark."
        return Reply(json.dumps({"summary": summary, "comments": comments}))


# ---------------------------------------------------------------------------------------------
# The repository


@dataclass
class Repository:
    source: Path
    commit: str
    branch: str
    remote: Path  # the bare repository Nimbus clones
    work: Path  # a checkout of it, for choosing files and counting
    files: list[str]
    text_files: int
    lines: int
    size: int
    languages: str
    config_note: str


def is_text(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
    except OSError:
        return False
    return bool(head) and b"\0" not in head


def prepare_repository(source: Path, root: Path) -> Repository:
    """A bare clone of `source` with one more commit: `.github/nimbus.yml` testing with `true`."""
    if not source.exists():
        raise BenchError(f"--repo {source}: no such folder")
    try:
        top = Path(git("rev-parse", "--show-toplevel", cwd=source))
    except BenchError:
        top = source  # a bare repository
    commit = git("rev-parse", "HEAD", cwd=source)
    remote = root / "remote.git"
    git("clone", "-q", "--bare", str(top), str(remote), cwd=root)
    work = root / "work"
    git("clone", "-q", str(remote), str(work), cwd=root)
    branch = git("rev-parse", "--abbrev-ref", "HEAD", cwd=work)
    if branch == "HEAD":  # the source's HEAD is detached: give its commit a branch
        branch = "nimbus-bench-base"
        git("checkout", "-q", "-b", branch, cwd=work)
    config_file = work / CONFIG_PATH
    config: dict[str, Any] = {}
    if config_file.is_file():
        try:
            loaded = yaml.safe_load(config_file.read_text("utf-8"))
        except yaml.YAMLError:
            loaded = None
        config = loaded if isinstance(loaded, dict) else {}
        note = f"its {CONFIG_PATH} changed by one commit: test_command 'true', no setup_command"
    else:
        note = f"plus one commit adding {CONFIG_PATH} with test_command 'true'"
    config["test_command"] = "true"
    config.pop("setup_command", None)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    git("add", CONFIG_PATH, cwd=work)
    git("commit", "-q", "--no-verify", "-m", "benchmark: instant test command", cwd=work)
    git("push", "-q", "origin", f"HEAD:{branch}", cwd=work)
    files = [f for f in git("ls-files", "-z", cwd=work).split("\0") if f]
    text_files = lines = size = 0
    for name in files:
        path = work / name
        if path.is_symlink() or not path.is_file():
            continue
        size += path.stat().st_size
        if is_text(path):
            text_files += 1
            lines += path.read_bytes().count(b"\n")
    return Repository(
        source=top,
        commit=commit,
        branch=branch,
        remote=remote,
        work=work,
        files=files,
        text_files=text_files,
        lines=lines,
        size=size,
        languages=", ".join(f"{k} {v}" for k, v in take_inventory(files).languages.items()),
        config_note=note,
    )


def choose(spec: TaskSpec, repo: Repository) -> tuple[str, tuple[str, str]]:
    """The folder to list and the two files to read for `spec` in `repo`."""
    readable = [f for f in repo.files if f != CONFIG_PATH and is_text(repo.work / f)]
    chosen = [f for f in spec.files if f in readable]
    if len(chosen) < 2:
        hits: dict[str, int] = {}
        for path in readable:
            text = (repo.work / path).read_text("utf-8", errors="replace")
            n = sum(1 for line in text.split("\n") if spec.search in line)
            if n:
                hits[path] = n
        chosen += [f for f in sorted(hits, key=lambda f: (-hits[f], f)) if f not in chosen]
    if len(chosen) < 2:
        words = {w.lower() for w in re.findall(r"[A-Za-z]{4,}", spec.description)}
        chosen += [f for f in readable if f not in chosen and any(w in f.lower() for w in words)]
    chosen += [f for f in readable if f not in chosen]
    if len(chosen) < 2:
        raise BenchError(f"{repo.source} has fewer than two text files to read")
    folder = spec.folder if any(f.startswith(f"{spec.folder}/") for f in repo.files) else "."
    return folder, (chosen[0], chosen[1])


# ---------------------------------------------------------------------------------------------
# Running one task


@dataclass
class PhaseFigures:
    runs: int = 0
    requests: int = 0
    tokens: float = 0.0
    first: Parts = field(default_factory=Parts)
    largest: float = 0.0
    largest_wire: int = 0


@dataclass
class TaskResult:
    spec: TaskSpec
    folder: str
    files: tuple[str, str]
    task: dict[str, Any]
    seconds: float
    phases: dict[str, PhaseFigures]
    overview: str
    requests: int
    reported_input: int
    problems: list[str]
    diff: str
    fallback_create: bool


async def start_server(settings: Settings) -> tuple[uvicorn.Server, asyncio.Task[None], Any, str]:
    app = create_app(settings)
    config = uvicorn.Config(
        app, log_level="warning", log_config=None, access_log=False, lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    sock = _listen("127.0.0.1", 0)
    port = sock.getsockname()[1]
    job = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 15
    while not server.started:
        if job.done():
            job.result()
            raise BenchError("the server stopped before it started")
        if time.monotonic() > deadline:
            raise BenchError("the server did not start within 15s")
        await asyncio.sleep(0.01)
    return server, job, app, f"http://127.0.0.1:{port}"


def figures(
    requests: list[dict[str, Any]], count: TokenCounter, overview: str
) -> dict[str, PhaseFigures]:
    """Per phase: the requests the fake recorded, in order, measured."""
    found: dict[str, PhaseFigures] = {}
    previous: str | None = None
    for body in requests:
        phase = phase_of(body)
        parts = measure(body, count, overview)
        size = len(body.get("messages") or [])
        into = found.setdefault(phase, PhaseFigures())
        # A new conversation starts with [system, prompt]; a second FIXING round is a new run.
        new_run = previous != phase or size == 2
        if new_run:
            into.runs += 1
            if into.runs == 1:
                into.first = parts
        into.requests += 1
        into.tokens += parts.total
        into.largest = max(into.largest, parts.total)
        into.largest_wire = max(into.largest_wire, parts.wire_bytes)
        previous = phase
    return found


async def run_task(
    spec: TaskSpec, repo: Repository, root: Path, count: TokenCounter, timeout: float
) -> TaskResult:
    folder, files = choose(spec, repo)
    agent = ScriptedAgent(spec, folder, files, count)
    async with running(FakeOpenAI()) as fake:
        fake.script(*[agent] * SCRIPTED_ANSWERS)
        settings = Settings(
            data_dir=root / f"data-{spec.key}",
            api_key=API_KEY,
            poll_seconds=0.05,
            worker_id=f"bench-{spec.key}",
            log_level="warning",
            model_provider="openai",
            model="gpt-test",
            model_base_url=fake.url,
            model_api_key=fake.api_key,
            model_max_retries=1,
            model_retry_base=0.01,
            git_timeout=60,
            setup_timeout=60,
            test_timeout=60,
        )
        server, job, app, url = await start_server(settings)
        client = httpx2.AsyncClient(
            base_url=url, headers={"X-API-Key": API_KEY}, timeout=30, trust_env=False
        )
        try:
            answer = await client.post(
                "/repos/",
                json={
                    "workspace_id": WORKSPACE,
                    "url": str(repo.remote),
                    "default_branch": repo.branch,
                },
            )
            if answer.status_code not in (200, 201):
                raise BenchError(f"POST /repos/ answered {answer.status_code}: {answer.text}")
            body = {
                "workspace_id": WORKSPACE,
                "repo_id": answer.json()["id"],
                "description": spec.description,
                "auto_approve": True,
                "agent_name": "builtin",
            }
            started = time.perf_counter()
            answer = await client.post("/tasks/", json=body)
            if answer.status_code != 201:
                raise BenchError(f"POST /tasks/ answered {answer.status_code}: {answer.text}")
            task_id = answer.json()["id"]
            deadline = time.monotonic() + timeout
            while True:
                answer = await client.get(f"/tasks/{task_id}/")
                if answer.status_code != 200:
                    raise BenchError(f"GET /tasks/{task_id}/ answered {answer.status_code}")
                task = answer.json()
                if task["phase"] in ("DONE", "FAILED"):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"task {spec.key} not ended after {timeout:.0f}s (in {task['phase']})"
                    )
                await asyncio.sleep(0.05)
            seconds = time.perf_counter() - started
            answer = await client.get(f"/tasks/{task_id}/diff")
            diff = answer.text if answer.status_code == 200 else ""
            stored = await app.state.services.store.get_task(task_id)
            overview = (stored.state.get("context") if stored else None) or ""
        finally:
            await client.aclose()
            server.should_exit = True
            await asyncio.wait_for(job, 30)
        requests = list(fake.requests)
        problems = list(fake.problems)
    return TaskResult(
        spec=spec,
        folder=folder,
        files=files,
        task=task,
        seconds=seconds,
        phases=figures(requests, count, overview),
        overview=overview,
        requests=len(requests),
        reported_input=sum(round(measure(b, count).total) for b in requests),
        problems=problems,
        diff=diff,
        fallback_create=agent.fallback_create,
    )


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> list[str]:
    def out(*argv: str, cwd: Path = ROOT) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=10)
            return done.stdout.strip()
        return "?"

    cpu = cpu_model()
    head = out("git", "rev-parse", "--short", "HEAD")
    dirty = " (uncommitted changes)" if out("git", "status", "--porcelain") else ""
    return [
        f"machine: nproc={out('nproc')} {cpu}; {platform.system()} {platform.release()}"
        f" {platform.machine()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})",
        f"git:     {out('git', '--version')}; Nimbus at {head}{dirty} ({ROOT})",
    ]


def tok(value: float) -> str:
    return f"{round(value):,}"


def med_max(values: Sequence[float], fmt: Callable[[float], str] = tok) -> str:
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} / {fmt(max(values))}"


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def report(results: list[TaskResult], count: TokenCounter) -> list[str]:
    lines: list[str] = []
    overview_tokens = [count(r.overview) for r in results]
    listed = results[0].overview.count("\n  ") if results else 0
    lines += [
        "",
        f"Repository overview (render_context, in the plan and implement prompts):"
        f" {len(results[0].overview) if results else 0:,} characters,"
        f" {tok(statistics.median(overview_tokens))} tokens, listing {listed} file paths",
        "",
        "Per phase, over the tasks: median / max (tokens unless said otherwise)",
    ]
    header = (
        f"{'phase':<10} {'tasks':>5} {'requests':>9} {'prompt tokens':>16} {'first request':>15}"
        f" {'largest request':>16} {'overview/first':>15} {'overview/all':>13}"
        f" {'fixed/all':>11}"
    )
    lines += [header, "-" * len(header)]
    for phase in PHASES:
        got = [r.phases[phase] for r in results if phase in r.phases]
        if not got:
            lines.append(f"{phase:<10} {0:>5}  (did not happen)")
            continue
        with_overview = [(f.first.overview / f.first.total if f.first.total else 0.0) for f in got]
        # How much of all the phase's prompt tokens is the overview, sent again with each request.
        resent = [(f.first.overview * f.requests / f.tokens if f.tokens else 0.0) for f in got]
        fixed = [(f.first.total * f.requests / f.tokens if f.tokens else 0.0) for f in got]
        lines.append(
            f"{phase:<10} {len(got):>5} {med_max([f.requests for f in got]):>9}"
            f" {med_max([f.tokens for f in got]):>16}"
            f" {med_max([f.first.total for f in got]):>15}"
            f" {med_max([f.largest for f in got]):>16}"
            f" {med_max(with_overview, lambda v: f'{100 * v:.0f}%'):>15}"
            f" {med_max(resent, lambda v: f'{100 * v:.0f}%'):>13}"
            f" {med_max(fixed, lambda v: f'{100 * v:.0f}%'):>11}"
        )
    totals = [sum(f.tokens for f in r.phases.values()) for r in results]
    counts = [r.requests for r in results]
    resent_all = [
        sum(f.first.overview * f.requests for f in r.phases.values()) / total
        for r, total in zip(results, totals, strict=True)
        if total
    ]
    fixed_all = [
        sum(f.first.total * f.requests for f in r.phases.values()) / total
        for r, total in zip(results, totals, strict=True)
        if total
    ]
    lines.append(
        f"{'all':<10} {len(results):>5} {med_max(counts):>9} {med_max(totals):>16}"
        f" {'':>15} {'':>16} {'':>15} {med_max(resent_all, lambda v: f'{100 * v:.0f}%'):>13}"
        f" {med_max(fixed_all, lambda v: f'{100 * v:.0f}%'):>11}"
    )
    lines += [
        "",
        "  requests         model requests the phase sent (one per step of its conversation)",
        "  prompt tokens    the sum over those requests of each whole request: system message,"
        " every message, tool specs",
        "  first request    the phase's fixed context: system + prompt + tool specs (its first"
        " request, before any tool result)",
        "  largest request  the phase's biggest single request (its last, as the conversation"
        " only grows)",
        "  overview/first   share of the first request that is the repository overview",
        "  overview/all     overview tokens x requests / prompt tokens: the share of the phase's"
        " prompt tokens spent re-sending the overview",
        "  fixed/all        first request x requests / prompt tokens: the share of the phase's"
        " prompt tokens that is its fixed context, sent",
        "                   again with every request (the rest is the conversation: tool calls"
        " and their results)",
        "",
        "What the first request of each phase is made of: median tokens over the tasks (share of"
        " the request)",
    ]
    header = (
        f"{'phase':<10} {'system':>13} {'tool specs':>13} {'overview':>13}"
        f" {'rest of prompt':>15} {'total':>8} {'wire bytes':>11}"
    )
    lines += [header, "-" * len(header)]
    for phase in PHASES:
        got = [r.phases[phase].first for r in results if phase in r.phases]
        if not got:
            continue
        total = statistics.median(p.total for p in got)
        cells = []
        for name in ("system", "tools", "overview", "prompt"):
            value = statistics.median(getattr(p, name) for p in got)
            cells.append(f"{tok(value)} ({pct(value, total)})")
        wire = statistics.median(p.wire_bytes for p in got)
        lines.append(
            f"{phase:<10} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13} {cells[3]:>15}"
            f" {tok(total):>8} {tok(wire):>11}"
        )
    lines += [
        "  rest of prompt: the task, plan, diff and the phase's instructions (prompts/*.md)",
        "  wire bytes (and largest bytes below): the request body as recorded by the fake,"
        " re-serialised with json.dumps (escaped, ASCII)",
        "",
        "Per task",
    ]
    header = (
        f"{'task':<15} {'phase':<10} {'requests':>8} {'prompt tok':>11} {'first':>7}"
        f" {'overview':>9} {'largest':>8} {'largest bytes':>14}"
    )
    lines += [header, "-" * len(header)]
    for r in results:
        for phase in PHASES:
            f = r.phases.get(phase)
            if f is None:
                continue
            runs = f" ({f.runs} runs)" if f.runs > 1 else ""
            lines.append(
                f"{r.spec.key:<15} {phase:<10} {f.requests:>8} {tok(f.tokens):>11}"
                f" {tok(f.first.total):>7} {tok(f.first.overview):>9} {tok(f.largest):>8}"
                f" {f.largest_wire:>14,}{runs}"
            )
        total = sum(f.tokens for f in r.phases.values())
        lines.append(
            f"{r.spec.key:<15} {'all':<10} {r.requests:>8} {tok(total):>11}"
            f"   ({r.task['status']} in {r.seconds:.1f} s)"
        )
    lines += ["", "Tasks (what the scripted agent listed, searched for and read):"]
    for r in results:
        lines += [
            f"  {r.spec.key}: {r.spec.description}",
            f"      list_files {r.folder!r}, search {r.spec.search!r},"
            f" read {r.files[0]} and {r.files[1]}",
        ]
    return lines


def checks(results: list[TaskResult]) -> list[str]:
    """Whatever did not go as scripted; empty when every task ran as intended."""
    found = []
    for r in results:
        where = f"task {r.spec.key}"
        if r.task["status"] != "completed":
            found.append(f"{where} ended {r.task['status']} ({r.task['phase']}): {r.task['error']}")
        found += [f"{where}: the fake model server saw a problem: {p}" for p in r.problems]
        if r.task["usage"]["input_tokens"] != r.reported_input:
            found.append(
                f"{where}: the task's usage says {r.task['usage']['input_tokens']} input tokens,"
                f" the fake reported {r.reported_input} over {r.requests} requests"
            )
        if "nimbus-bench" not in r.diff:
            found.append(f"{where}: the task's diff does not hold the scripted edit")
        if r.fallback_create:
            found.append(f"{where}: no edit_file applied; the agent created a file instead")
        if not r.overview:
            found.append(f"{where}: no repository overview stored by INDEXING")
        for phase in ("plan", "implement"):
            f = r.phases.get(phase)
            if f is not None and r.overview and not f.first.overview:
                found.append(f"{where}: the {phase} prompt does not hold the overview")
    return found


# ---------------------------------------------------------------------------------------------
# Main


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def run(
    tasks: Sequence[TaskSpec], repo: Repository, root: Path, count: TokenCounter, timeout: float
) -> list[TaskResult]:
    results = []
    for n, spec in enumerate(tasks, 1):
        progress(f"task {n}/{len(tasks)}: {spec.key}")
        result = await run_task(spec, repo, root, count, timeout)
        progress(
            f"task {n}/{len(tasks)}: {spec.key} {result.task['status']} in {result.seconds:.1f}"
            f" s, {result.requests} model requests"
        )
        results.append(result)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--repo",
        type=Path,
        default=ROOT,
        help="a local git repository to measure (default: this repository, at HEAD)",
    )
    parser.add_argument("--quick", action="store_true", help=f"run {QUICK_TASKS} tasks, not all")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per task (default 60)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="[server] %(levelname)s %(name)s: %(message)s",
    )
    tasks = TASKS[:QUICK_TASKS] if args.quick else TASKS
    count = TokenCounter()
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-context-"))
    started = time.perf_counter()
    try:
        print("Nimbus agent-context benchmark: prompt tokens per phase of the built-in model agent")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info():
            print(line)
        repo = prepare_repository(args.repo.resolve(), root)
        print(
            f"repository: {repo.source} at {repo.commit[:12]} (branch {repo.branch}),"
            f" {repo.config_note}: {len(repo.files)} files ({repo.text_files} text,"
            f" {repo.lines:,} lines, {repo.size / 1024:,.0f} KiB);"
            f" languages: {repo.languages or 'none known'}"
        )
        print(f"tokens: {count.method}")
        if not count.exact:
            print(
                "  (counted on the text the model reads: message contents, tool-call names and"
                " arguments, and the tool specs as JSON;"
            )
            print(
                "  per-message framing tokens are left out; roughly English and code at ~4"
                " characters a token)"
            )
        print(
            f"tasks: {len(tasks)}{' (--quick)' if args.quick else ''}; agent 'builtin', provider"
            " openai, model gpt-test on the fake server; auto_approve; test_command: true"
        )
        sys.stdout.flush()
        results = asyncio.run(run(tasks, repo, root, count, args.timeout))
        print("\n".join(report(results, count)))
        problems = checks(results)
        if problems:
            print("\nWARNING: the run did not go as scripted; the figures may not compare:")
            print("\n".join(f"  {p}" for p in problems))
        else:
            print(
                "\nChecks: every task completed with the scripted edit in its diff; the fake"
                " saw no malformed request; each task's usage equals the tokens measured here."
            )
        print(f"Total benchmark time: {time.perf_counter() - started:.1f} s")
        return 1 if problems else 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
