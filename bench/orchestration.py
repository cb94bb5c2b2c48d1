"""Orchestration benchmark: what Nimbus costs on top of the subprocess work a task drives.

Runs the real app (create_app + uvicorn, in this process, on 127.0.0.1 port 0) against a tiny
git repository whose test command is `true`, with an "instant" command agent written in sh.
Every task therefore does almost no work of its own: what is left is Nimbus's orchestration
(HTTP, SQLite, the claim loop, events, phase bookkeeping) plus the fixed cost of the subprocesses
it starts. The same subprocesses are also run directly, without Nimbus, as the baseline.

    /tmp/venv/bin/python bench/orchestration.py                 # sizes 1,20,100
    /tmp/venv/bin/python bench/orchestration.py --quick         # sizes 1,5 (smoke run)
    /tmp/venv/bin/python bench/orchestration.py --sizes 1,50 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from app import create_app  # noqa: E402
from bench.common import BenchError, cpu_model, git, give_up, leave_scratch  # noqa: E402
from bot.cli import _listen  # noqa: E402
from bot.settings import Settings  # noqa: E402

API_KEY = "bench-bootstrap-key-0123456789"
WORKSPACE = "ws-default"
# The status poller starts one GET /tasks/{id}/ every POLL_PERIOD seconds (or right after the
# previous answer when that took longer), so its load does not depend on the server's latency.
POLL_PERIOD = 0.050
# The event-loop lag probe sleeps this long and records how late it wakes up.
LAG_TICK = 0.010
# Git as Nimbus runs it on a clone (bot/git.py `_SAFE`).
SAFE = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
AUTHOR = ("Nimbus", "nimbus@localhost")

AGENT_SCRIPT = """#!/bin/sh
# The "instant" command agent of the benchmark (DESIGN section 4 contract).
case "$NIMBUS_PHASE" in
  plan) echo '{"plan": ["do it"]}' ;;
  implement|fix) echo "change for ${NIMBUS_TASK_ID:-unknown}" >> CHANGES.txt ;;
  review) echo '{"summary": "ok", "comments": []}' ;;
  *) echo "unknown NIMBUS_PHASE: $NIMBUS_PHASE" >&2; exit 2 ;;
esac
"""

REPO_FILES = {
    "README.md": "# bench\n\nA tiny repository for the Nimbus orchestration benchmark.\n",
    "CHANGES.txt": "changes:\n",
    ".github/nimbus.yml": 'test_command: "true"\n',
}


# ---------------------------------------------------------------------------------------------
# Fixture: repository, agent, agent configuration (synchronous, before the event loop runs)


@dataclass
class Fixture:
    root: Path
    work: Path
    agent: Path
    agents_toml: Path
    raw_remote: Path  # the sequential baseline's
    remotes: dict[int, Path] = field(default_factory=dict)  # Nimbus's, one per round
    raw_remotes: dict[int, Path] = field(default_factory=dict)  # raw parallel, one per round


def make_fixture(root: Path, sizes: Sequence[int]) -> Fixture:
    work = root / "work"
    work.mkdir(parents=True)
    for name, text in REPO_FILES.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial", cwd=work)

    def bare(name: str) -> Path:
        path = root / name
        git("clone", "-q", "--bare", str(work), str(path), cwd=root)
        return path

    agent = root / "agent.sh"
    agent.write_text(AGENT_SCRIPT)
    agent.chmod(0o755)
    agents_toml = root / "agents.toml"
    agents_toml.write_text(
        'default_agent = "instant"\n'
        "[agents.instant]\n"
        'kind = "command"\n'
        f"command = [{json.dumps(str(agent))}]\n"
        "timeout = 60\n"
    )
    fixture = Fixture(root, work, agent, agents_toml, raw_remote=bare("raw-seq.git"))
    for n in sizes:
        # Fresh remotes per round: every push adds a branch and loose objects, which later
        # clones copy, so each round (Nimbus's and the raw one) starts from the same remote.
        fixture.remotes[n] = bare(f"remote-{n}.git")
        fixture.raw_remotes[n] = bare(f"raw-{n}.git")
    return fixture


# ---------------------------------------------------------------------------------------------
# The baseline: the subprocesses of one task, run directly with asyncio, without Nimbus


async def _exec(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(argv)} exited with {proc.returncode}: {err.decode()[-800:]}")
    return out.decode()


RAW_COMMANDS = (
    "CLONING: git clone, rev-parse HEAD, rev-parse --abbrev-ref HEAD, checkout -b",
    "INDEXING: git ls-files -z; test command (sh -c true)",
    "PLANNING: agent (plan)",
    "IMPLEMENTING: git reset --hard, clean -fd; agent (implement); git add -N, diff --name-only,"
    " add --all, commit, rev-parse HEAD, diff base..sha",
    "VERIFYING: git reset --hard, clean -fd; test command (sh -c true)",
    "REVIEWING: agent (review)",
    "CLEANUP: git reset --soft base, add --all, commit, rev-parse HEAD, push",
)


async def raw_task(fx: Fixture, name: str, remote: Path) -> dict[str, float]:
    """One task's subprocess work, in the order Nimbus's phases run it (phases/*.py).

    Returns the seconds spent in each phase's share of the work.
    """
    task_dir = fx.root / "raw" / name
    clone = task_dir / "repo"
    home = task_dir / "home"
    base_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
    }
    git_env = {
        **base_env,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": AUTHOR[0],
        "GIT_AUTHOR_EMAIL": AUTHOR[1],
        "GIT_COMMITTER_NAME": AUTHOR[0],
        "GIT_COMMITTER_EMAIL": AUTHOR[1],
    }
    test_env = {**base_env, "CI": "true", "NIMBUS_TASK_ID": name}

    async def git(*args: str, cwd: Path = clone) -> str:
        return (await _exec(["git", *SAFE, *args], cwd, git_env)).strip()

    async def test() -> None:
        await _exec(["sh", "-c", "true"], clone, test_env)

    async def agent(phase: str) -> None:
        env = {**base_env, "NIMBUS_PHASE": phase, "NIMBUS_TASK_ID": name}
        await _exec([str(fx.agent)], clone, env)

    branch = f"nimbus/{name}"
    marks: list[tuple[str, float]] = []

    def phase(label: str) -> None:
        marks.append((label, time.perf_counter()))

    phase("CLONING")  # Nimbus removes the task folder in a thread first, as here
    await asyncio.to_thread(shutil.rmtree, task_dir, ignore_errors=True)
    home.mkdir(parents=True)
    await git("clone", "--no-recurse-submodules", "--", str(remote), str(clone), cwd=task_dir)
    base = await git("rev-parse", "HEAD")
    await git("rev-parse", "--abbrev-ref", "HEAD")
    await git("checkout", "--quiet", "-b", branch)
    phase("INDEXING")
    await git("ls-files", "-z")
    await git("rev-parse", "HEAD")
    await git("ls-tree", "-r", "-z", "--full-tree", base)
    await test()
    await git("status", "--porcelain", "-z", "--untracked-files=all")  # the test run left nothing
    phase("PLANNING")
    await agent("plan")
    phase("IMPLEMENTING")
    await git("reset", "--hard", "--quiet", base)
    await git("clean", "-fd", "--quiet")
    await agent("implement")
    await git("add", "--all", "--intent-to-add")
    await git("diff", "--name-only", "-z", base)
    await git("add", "--all")
    await git("commit", "--quiet", "--allow-empty", "--no-verify", "-m", "checkpoint")
    sha = await git("rev-parse", "HEAD")
    diff = await git("diff", "--no-color", "--no-ext-diff", base, sha)
    if "CHANGES.txt" not in diff:
        raise BenchError(f"raw task {name}: the agent changed nothing: {diff!r}")
    phase("VERIFYING")
    await git("reset", "--hard", "--quiet", sha)
    await git("clean", "-fd", "--quiet")
    await test()
    await git("status", "--porcelain", "-z", "--untracked-files=all")
    phase("REVIEWING")
    await agent("review")
    phase("CLEANUP")  # one commit of the approved tree on the base, as Git.squash makes it
    tree = await git("rev-parse", f"{sha}^{{tree}}")
    squashed = await git("commit-tree", tree, "-p", base, "-m", f"task {name}")
    await git("reset", "--hard", "--quiet", squashed)
    await git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{branch}")
    await asyncio.to_thread(shutil.rmtree, task_dir, ignore_errors=True)
    phase("DONE")
    return {label: marks[i + 1][1] - t for i, (label, t) in enumerate(marks[:-1])}


RAW_SUBPROCESSES = {"git": 23, "test": 2, "agent": 3}


async def raw_sequential(
    fx: Fixture, repeats: int, label: str
) -> tuple[list[float], list[dict[str, float]]]:
    """`repeats` raw tasks one after the other, after one warm-up run that is not counted."""
    await raw_task(fx, f"{label}-warmup", fx.raw_remote)  # page cache, git's first start
    times, phases = [], []
    for i in range(repeats):
        t = time.perf_counter()
        phases.append(await raw_task(fx, f"{label}-{i}", fx.raw_remote))
        times.append(time.perf_counter() - t)
    return times, phases


def cpu_now() -> tuple[float, float]:
    """CPU seconds of this process (all threads) and of its finished children so far."""
    times = os.times()
    return time.process_time(), times.children_user + times.children_system


def cpu_since(start: tuple[float, float]) -> tuple[float, float]:
    own, children = cpu_now()
    return own - start[0], children - start[1]


async def raw_parallel(fx: Fixture, n: int, concurrency: int) -> tuple[float, tuple[float, float]]:
    """N raw tasks with at most `concurrency` at once: the same CPU contention Nimbus meets.

    Returns the wall time and the CPU time (this process's, the children's) it took.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await raw_task(fx, f"par{n}-{i}", fx.raw_remotes[n])

    cpu = cpu_now()
    t = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t, cpu_since(cpu)


# ---------------------------------------------------------------------------------------------
# Measurement helpers

PHASES = (
    "QUEUED",
    "CLONING",
    "INDEXING",
    "PLANNING",
    "IMPLEMENTING",
    "VERIFYING",
    "REVIEWING",
    "CLEANUP",
)


def pct(values: Sequence[float], p: int) -> float:
    """The p-th percentile (inclusive method); the value itself for a single sample."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    if p == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


async def lag_probe(stop: asyncio.Event, out: list[tuple[float, float]]) -> None:
    """Sleep LAG_TICK again and again; how late each wake-up is, is the event loop's lag.

    Records (wake-up time, lag) pairs.
    """
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(LAG_TICK)
        woke = time.perf_counter()
        out.append((woke, max(0.0, woke - t - LAG_TICK)))


@dataclass
class Probes:
    """Read-only observation of the running app, by wrapping two methods at runtime.

    `Runner.run` (every command Nimbus starts) is timed, and `TaskEvents.change` notes when a
    task's DONE transition is committed. The product code itself is not changed.
    """

    calls: list[tuple[str, str, float]] = field(default_factory=list)  # task, kind, seconds
    done_at: dict[str, float] = field(default_factory=dict)

    def install(self, services: Any) -> None:
        runner, events = services.runner, services.events
        run: Callable[..., Awaitable[Any]] = runner.run
        change: Callable[..., Awaitable[Any]] = events.change

        async def timed_run(argv: Sequence[str], **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return await run(argv, **kwargs)
            finally:
                kind = {"git": "git", "sh": "test"}.get(argv[0], "agent")
                # Every command runs in the task's folder or its clone: tasks/<task-id>[/repo]
                parts = Path(kwargs.get("cwd", "")).parts
                task_id = next((p for p in parts if p.startswith("task-")), "?")
                self.calls.append((task_id, kind, time.perf_counter() - t))

        async def noted_change(task_id: str, **kwargs: Any) -> Any:
            task = await change(task_id, **kwargs)
            # From the change asked for, not from the task returned (see the report).
            if task is not None and str(kwargs.get("changes", {}).get("phase")) == "DONE":
                self.done_at[task_id] = time.perf_counter()
            return task

        runner.run = timed_run
        events.change = noted_change

    def reset(self) -> None:
        self.calls.clear()
        self.done_at.clear()


@dataclass
class Round:
    n: int
    wall: float
    seen: float
    post_latency: list[float]
    post_errors: list[str]
    get_latency: list[float]
    lag: list[float]
    lag_max_at: float  # seconds after the first POST
    calls: list[tuple[str, str, float]]
    phases: dict[str, list[float]]
    cpu: tuple[float, float]  # this process's CPU seconds, the children's
    raw_parallel_wall: float = 0.0
    raw_parallel_cpu: tuple[float, float] = (0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# The server


@dataclass
class Running:
    server: uvicorn.Server
    job: asyncio.Task[None]
    client: httpx2.AsyncClient
    app: Any
    probes: Probes


def nodelay_socket(host: str, port: int) -> socket.socket:
    """Like bot.cli._listen, but created with IPPROTO_TCP: asyncio then sets TCP_NODELAY on
    every accepted connection (it only does so when the socket's proto is IPPROTO_TCP)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


async def start_server(settings: Settings, *, nodelay: bool) -> Running:
    app = create_app(settings)
    probes = Probes()
    probes.install(app.state.services)
    config = uvicorn.Config(
        app,
        log_level="warning",
        log_config=None,  # keep the benchmark's logging set-up (one line per record)
        access_log=False,
        ws="websockets-sansio",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    sock = nodelay_socket("127.0.0.1", 0) if nodelay else _listen("127.0.0.1", 0)
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
    client = httpx2.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"X-API-Key": API_KEY},
        timeout=60,
        trust_env=False,
        limits=httpx2.Limits(max_connections=500, max_keepalive_connections=500),
    )
    return Running(server, job, client, app, probes)


async def stop_server(running: Running) -> None:
    await running.client.aclose()
    running.server.should_exit = True
    await asyncio.wait_for(running.job, 60)


async def count_pushed(remote: Path) -> int:
    out = await _exec(
        ["git", "for-each-ref", "--format=%(refname)", "refs/heads/nimbus/"],
        remote,
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(remote)},
    )
    return len(out.split())


async def tasks_of_repo(client: httpx2.AsyncClient, repo_id: str) -> list[dict[str, Any]]:
    """Every task of the repository through GET /tasks/ (all pages), oldest first."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"workspace_id": WORKSPACE, "repo_id": repo_id, "limit": "200"}
        if cursor:
            params["cursor"] = cursor
        answer = await client.get("/tasks/", params=params)
        if answer.status_code != 200:
            raise BenchError(f"GET /tasks/ answered {answer.status_code}: {answer.text}")
        page = answer.json()
        found += page["tasks"]
        cursor = page["next_cursor"]
        if not cursor:
            return found[::-1]


async def phase_times(app: Any, task_ids: Sequence[str]) -> dict[str, list[float]]:
    """Seconds each task spent in each phase, from its stored `phase` events' timestamps."""
    store = app.state.services.store
    spent: dict[str, list[float]] = {p: [] for p in (*PHASES, "total")}
    for task_id in task_ids:
        events = await store.events_after(task_id, 0, limit=10_000)
        marks = [(e.fields.get("phase"), e.ts_us) for e in events if e.event_type == "phase"]
        for (phase, t), (_, t_next) in itertools.pairwise(marks):
            if phase in spent:
                spent[phase].append((t_next - t) / 1e6)
        spent["total"].append((marks[-1][1] - marks[0][1]) / 1e6)
    return spent


async def nimbus_round(srv: Running, fx: Fixture, n: int, timeout: float) -> Round:
    client = srv.client
    response = await client.post(
        "/repos/", json={"workspace_id": WORKSPACE, "url": str(fx.remotes[n])}
    )
    if response.status_code not in (200, 201):
        raise BenchError(f"POST /repos/ answered {response.status_code}: {response.text}")
    repo_id = response.json()["id"]

    srv.probes.reset()
    stop = asyncio.Event()
    lag: list[tuple[float, float]] = []
    probe = asyncio.create_task(lag_probe(stop, lag))
    post_latency: list[float] = []
    post_errors: list[str] = []
    get_latency: list[float] = []

    async def create(i: int) -> None:
        body = {
            "workspace_id": WORKSPACE,
            "repo_id": repo_id,
            "description": f"Benchmark task {i} of {n}",
            "auto_approve": True,
        }
        t = time.perf_counter()
        answer = await client.post("/tasks/", json=body)
        post_latency.append(time.perf_counter() - t)
        if answer.status_code != 201:
            post_errors.append(f"{answer.status_code} {answer.text.strip()}")

    try:
        cpu = cpu_now()
        t0 = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(n)))
        if len(post_errors) == n or any(not e.startswith("5") for e in post_errors):
            raise BenchError(f"POST /tasks/ failed: {post_errors[0]}")
        # Ids from the listing rather than from the POST answers: a POST that answered 5xx may
        # still have stored its task, which then runs and must be waited for.
        ids = [t["id"] for t in await tasks_of_repo(client, repo_id)]
        for _ in range(40):
            # A listing can lag behind the POSTs that were answered (see the report); retry.
            if len(ids) == n:
                break
            await asyncio.sleep(0.05)
            ids = [t["id"] for t in await tasks_of_repo(client, repo_id)]
        if len(ids) != n:
            raise BenchError(
                f"round N={n}: {len(ids)} tasks stored for {n} POSTs"
                f" ({len(post_errors)} answered with an error: {post_errors[:1]})"
            )
        # The poller: GET the oldest task not yet seen DONE; every GET is a latency sample.
        deadline = t0 + timeout
        index = 0
        while index < len(ids):
            t = time.perf_counter()
            answer = await client.get(f"/tasks/{ids[index]}/")
            get_latency.append(time.perf_counter() - t)
            if answer.status_code != 200:
                raise BenchError(f"GET /tasks/{ids[index]}/ answered {answer.status_code}")
            task = answer.json()
            if task["phase"] == "FAILED":
                raise BenchError(
                    f"task {task['id']} FAILED (round N={n}, status {task['status']}):"
                    f" {task['error']}"
                )
            if task["phase"] == "DONE":
                index += 1
            elif time.perf_counter() > deadline:
                raise BenchError(
                    f"round N={n}: {len(ids) - index} tasks not done after {timeout:.0f}s;"
                    f" task {task['id']} is in {task['phase']}"
                )
            await asyncio.sleep(max(0.0, t + POLL_PERIOD - time.perf_counter()))
        seen = time.perf_counter() - t0
        cpu_used = cpu_since(cpu)
    finally:
        stop.set()
        await probe
    missing = [i for i in ids if i not in srv.probes.done_at]
    if missing:
        raise BenchError(f"round N={n}: no DONE transition observed for {missing[:3]}")
    pushed = await count_pushed(fx.remotes[n])
    if pushed != n:
        raise BenchError(f"round N={n}: {pushed} branches pushed to the remote, expected {n}")
    return Round(
        n=n,
        wall=max(srv.probes.done_at.values()) - t0,
        seen=seen,
        post_latency=post_latency,
        post_errors=post_errors,
        get_latency=get_latency,
        lag=[value for _, value in lag] or [0.0],
        lag_max_at=max(lag, key=lambda pair: pair[1], default=(t0, 0.0))[0] - t0,
        calls=list(srv.probes.calls),
        phases=await phase_times(srv.app, ids),
        cpu=cpu_used,
    )


# ---------------------------------------------------------------------------------------------
# Report


def machine_info() -> list[str]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    cpu = cpu_model()
    return [
        f"machine: nproc={nproc} (os.cpu_count()={os.cpu_count()}) {cpu};"
        f" {platform.system()} {platform.release()} {platform.machine()}",
        f"python:  {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})",
        f"git:     {git}",
        f"sqlite:  {sqlite3.sqlite_version}; uvicorn {uvicorn.__version__} (h11), in this"
        " process, on the same event loop as the benchmark's HTTP client",
    ]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(
    rounds: list[Round],
    raw_before: list[float],
    raw_after: list[float],
    raw_phases: list[dict[str, float]],
    concurrency: int,
) -> list[str]:
    raw_times = raw_before + raw_after
    raw = statistics.median(raw_times)
    lines = [
        "",
        f"Baseline, raw subprocess work of one task without Nimbus: median {ms(raw)} ms"
        f" (min {ms(min(raw_times))}, max {ms(max(raw_times))})",
        f"  of {len(raw_before)} sequential runs before the Nimbus rounds (median"
        f" {ms(statistics.median(raw_before))} ms) and {len(raw_after)} after them (median"
        f" {ms(statistics.median(raw_after))} ms), each set after one uncounted warm-up;",
        f"  one run = {sum(RAW_SUBPROCESSES.values())} subprocesses"
        f" ({RAW_SUBPROCESSES['git']} git, {RAW_SUBPROCESSES['test']} test command,"
        f" {RAW_SUBPROCESSES['agent']} agent) awaited one after the other with asyncio, in the"
        " order of Nimbus's phases, plus the two removals of the task folder:",
        *(f"    {step}" for step in RAW_COMMANDS),
        "",
        f"Throughput (max_concurrent_tasks c = {concurrency}; auto_approve; every task DONE):",
    ]
    header = (
        f"{'N':>5} {'wall s':>7} {'seen s':>7} {'tasks/s':>8} {'slot ms':>8} {'raw ms':>7}"
        f" {'ratio':>6} {'ovh ms':>7} {'sub ms':>7} {'orch ms':>8} {'rawpar s':>9}"
        f" {'vs rawpar':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in rounds:
        slot = r.wall * min(concurrency, r.n) / r.n
        sub = sum(d for _, _, d in r.calls) / r.n
        lines.append(
            f"{r.n:>5} {r.wall:>7.2f} {r.seen:>7.2f} {r.n / r.wall:>8.2f} {ms(slot):>8}"
            f" {ms(raw):>7} {slot / raw:>6.2f} {ms(slot - raw):>7} {ms(sub):>7}"
            f" {ms(slot - sub):>8} {r.raw_parallel_wall:>9.2f}"
            f" {r.wall / r.raw_parallel_wall:>8.2f}x"
        )
    lines += [
        "",
        "  wall s    from just before the N concurrent POST /tasks/ to the commit of the last"
        " task's DONE transition (perf_counter)",
        "  seen s    the same, ending when the HTTP poller (below) saw the last task DONE",
        "  tasks/s   N / wall",
        "  slot ms   Nimbus wall time per task at concurrency c = wall * min(c, N) / N"
        " (time one worker slot spends per task)",
        "  raw ms    median raw subprocess work per task (the baseline above)",
        "  ratio     slot / raw",
        "  ovh ms    overhead per task = (wall * min(c, N) / N) - raw",
        "  sub ms    time Nimbus spent inside its own subprocesses, per task: the sum of the"
        " durations of all Runner.run calls / N;",
        "            it exceeds raw when min(c, N) tasks' commands compete for the CPUs",
        "  orch ms   slot - sub: slot time per task spent outside any subprocess (HTTP, SQLite,"
        " claiming, events, waiting)",
        "  rawpar s  wall time of the same N raw tasks run directly, at most c at once"
        " (the same CPU contention, no Nimbus)",
        "  vs rawpar wall / rawpar: Nimbus against the contention-matched baseline",
        "",
        "Responsiveness while the tasks ran:",
    ]
    header = (
        f"{'N':>5} {'POST p50':>9} {'POST p99':>9} {'5xx':>4} {'GETs':>6} {'GET p50':>8}"
        f" {'GET p99':>8} {'GET max':>8} {'lag n':>6} {'lag p50':>8} {'lag p99':>8}"
        f" {'lag max':>8} {'at s':>6} {'procs/task':>11}"
    )
    lines += [header, "-" * len(header)]
    for r in rounds:
        kinds = {k: sum(1 for _, kind, _ in r.calls if kind == k) / r.n for k in RAW_SUBPROCESSES}
        procs = "+".join(f"{kinds[k]:g}" for k in ("git", "test", "agent"))
        lines.append(
            f"{r.n:>5} {ms(pct(r.post_latency, 50)):>9} {ms(pct(r.post_latency, 99)):>9}"
            f" {len(r.post_errors):>4} {len(r.get_latency):>6} {ms(pct(r.get_latency, 50)):>8}"
            f" {ms(pct(r.get_latency, 99)):>8} {ms(max(r.get_latency)):>8}"
            f" {len(r.lag):>6} {ms(pct(r.lag, 50)):>8} {ms(pct(r.lag, 99)):>8}"
            f" {ms(max(r.lag)):>8} {r.lag_max_at:>6.2f} {procs:>11}"
        )
    lines += [
        "",
        "  POST      latency of each of the N POST /tasks/, all sent at once, ms; 5xx: how many"
        " answered with a server error",
        "  GET       latency of GET /tasks/{id}/ from one poller that loops over the oldest task"
        f" not yet DONE, one every {POLL_PERIOD * 1000:.0f} ms (or back to back when slower), ms",
        f"  lag       event-loop lag: a coroutine sleeps {LAG_TICK * 1000:.0f} ms in a loop;"
        f" lag = measured sleep - {LAG_TICK * 1000:.0f} ms, ms; at s: when the max happened,"
        " seconds after the first POST",
        "  procs     subprocesses Nimbus ran per task: git + test command + agent"
        f" (baseline: {RAW_SUBPROCESSES['git']}+{RAW_SUBPROCESSES['test']}"
        f"+{RAW_SUBPROCESSES['agent']})",
        "  The HTTP client runs in the server's process and event loop: latencies include its"
        " own share of the loop.",
        "",
        "CPU time per task (ms): this Python process (server, worker, SQLite threads and the"
        " in-process client) and its subprocesses",
    ]
    header = (
        f"{'N':>5} {'nimbus py':>10} {'nimbus sub':>11} {'rawpar py':>10} {'rawpar sub':>11}"
        f" {'py extra':>9} {'py cores':>9}"
    )
    lines += [header, "-" * len(header)]
    for r in rounds:
        py, sub = (value / r.n for value in r.cpu)
        raw_py, raw_sub = (value / r.n for value in r.raw_parallel_cpu)
        lines.append(
            f"{r.n:>5} {ms(py):>10} {ms(sub):>11} {ms(raw_py):>10} {ms(raw_sub):>11}"
            f" {ms(py - raw_py):>9} {r.cpu[0] / r.wall:>9.2f}"
        )
    lines += [
        "",
        "  py: time.process_time() of this process over the round / N; sub: os.times() children"
        " user+sys / N (finished children)",
        "  rawpar: the same for the raw parallel baseline (asyncio starting and awaiting the"
        " same subprocesses)",
        "  py extra: nimbus py - rawpar py, the CPU Nimbus's own Python work costs per task;"
        " py cores: nimbus py CPU / wall (1.0 = one core busy)",
        "",
        "Where a task's time goes: median ms per task in each phase",
    ]
    header = f"{'phase':<13} {'raw':>7}" + "".join(f" {f'N={r.n}':>9}" for r in rounds)
    lines += [header, "-" * len(header)]
    for phase in (*PHASES, "total"):
        if phase == "total":
            raw_value = ms(raw)
        elif phase in raw_phases[0]:
            raw_value = ms(statistics.median(p[phase] for p in raw_phases))
        else:
            raw_value = "-"
        cells = "".join(f" {ms(pct(r.phases[phase], 50)):>9}" for r in rounds)
        lines.append(f"{phase:<13} {raw_value:>7}{cells}")
    lines += [
        "",
        "  Nimbus: from the commit of a task's `phase` event to the next one (stored event"
        " timestamps); QUEUED is the wait for a free slot.",
        "  raw: the same phase's share of the baseline (median of the sequential runs); total"
        " for Nimbus is QUEUED..DONE.",
        "  All durations use time.perf_counter except the phase table (the events' stored"
        " timestamps); percentiles are",
        "  statistics.quantiles(n=100, method='inclusive'), p50 is statistics.median.",
    ]
    for r in rounds:
        counts: dict[str, dict[str, int]] = {}
        for task_id, kind, _ in r.calls:
            counts.setdefault(task_id, dict.fromkeys(RAW_SUBPROCESSES, 0))[kind] += 1
        odd = {t: c for t, c in counts.items() if c != RAW_SUBPROCESSES}
        if odd:
            shown = "; ".join(
                f"{t}: {c['git']} git, {c['test']} test, {c['agent']} agent"
                for t, c in list(odd.items())[:5]
            )
            lines += [
                "",
                f"WARNING: N={r.n}: {len(odd)} task(s) ran other subprocesses than the"
                f" {RAW_SUBPROCESSES['git']} git, {RAW_SUBPROCESSES['test']} test and"
                f" {RAW_SUBPROCESSES['agent']} agent runs of one pass (a phase ran twice?):"
                f" {shown}",
            ]
    errors = [(r.n, e) for r in rounds for e in r.post_errors]
    if errors:
        lines += [
            "",
            f"WARNING: {len(errors)} POST /tasks/ answered with a server error; the tasks were"
            " stored anyway and were run and waited for. First: "
            f"N={errors[0][0]}: {errors[0][1]}",
        ]
    return lines


# ---------------------------------------------------------------------------------------------
# Main


class OneLineFormatter(logging.Formatter):
    """A record and, for an exception, only its type, message and innermost frame."""

    def formatException(self, ei: Any) -> str:
        frame = traceback.extract_tb(ei[2])[-1] if ei[2] else None
        where = f" at {frame.filename}:{frame.lineno} in {frame.name}" if frame else ""
        return f"    {ei[0].__name__}: {ei[1]}{where}"


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, fx: Fixture) -> tuple[list[str], bool]:
    progress(f"baseline: {args.raw_repeats} raw tasks one after the other")
    raw_before, raw_phases = await raw_sequential(fx, args.raw_repeats, "before")
    parallel: dict[int, tuple[float, tuple[float, float]]] = {}
    for n in args.sizes:
        progress(f"baseline: {n} raw tasks, at most {args.concurrency} at once")
        parallel[n] = await raw_parallel(fx, n, args.concurrency)

    settings = Settings(
        data_dir=fx.root / "data",
        api_key=API_KEY,
        config_path=fx.agents_toml,
        poll_seconds=0.05,
        max_concurrent_tasks=args.concurrency,
        worker_id="bench-worker",
        log_level="warning",
    )
    srv = await start_server(settings, nodelay=args.nodelay_socket)
    rounds: list[Round] = []
    try:
        for n in args.sizes:
            progress(f"nimbus: {n} tasks, max_concurrent_tasks={args.concurrency}")
            result = await nimbus_round(srv, fx, n, timeout=args.timeout + 3 * n)
            result.raw_parallel_wall, result.raw_parallel_cpu = parallel[n]
            progress(f"nimbus: {n} tasks DONE in {result.wall:.2f}s")
            rounds.append(result)
    finally:
        await stop_server(srv)
    clean = not any(r.post_errors for r in rounds)
    progress(f"baseline: {args.raw_repeats} raw tasks one after the other, again")
    raw_after, more_phases = await raw_sequential(fx, args.raw_repeats, "after")
    lines = report(rounds, raw_before, raw_after, raw_phases + more_phases, args.concurrency)
    return lines, clean


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", default="1,20,100", help="comma-separated task counts (default 1,20,100)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes 1,5")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        help="the server's max_concurrent_tasks (default 4, as in DESIGN)",
    )
    parser.add_argument(
        "--raw-repeats",
        type=int,
        default=5,
        help="sequential raw baseline runs, before and again after the rounds (default 5)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="seconds per round, plus 3 s per task"
    )
    parser.add_argument(
        "--nodelay-socket",
        action="store_true",
        help="listen on a socket made with IPPROTO_TCP (so connections get TCP_NODELAY)"
        " instead of bot.cli._listen's, for comparison",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any request answered 5xx"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    text = "1,5" if args.quick else args.sizes
    try:
        args.sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated whole numbers, got {text!r}")
    if not args.sizes or any(n < 1 for n in args.sizes) or len(set(args.sizes)) != len(args.sizes):
        parser.error("--sizes must be distinct whole numbers of at least 1")
    if args.concurrency < 1 or args.raw_repeats < 1:
        parser.error("--concurrency and --raw-repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # The app's own log (warnings and errors), one line per record, tracebacks cut to their end.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("[server] %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(lambda r: r.getMessage() != "Exception in ASGI application")
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    root = Path(tempfile.mkdtemp(prefix="nimbus-bench-"))
    started = time.perf_counter()
    try:
        print("Nimbus orchestration benchmark")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info():
            print(line)
        listen = "a socket made with IPPROTO_TCP" if args.nodelay_socket else "bot.cli._listen"
        print(
            f"sizes: {', '.join(map(str, args.sizes))}; max_concurrent_tasks={args.concurrency};"
            f" poll_seconds=0.05; listening on 127.0.0.1 port 0 via {listen};"
            " test_command: true; agent: a sh script"
        )
        sys.stdout.flush()
        fx = make_fixture(root, args.sizes)
        lines, clean = asyncio.run(run(args, fx))
        print("\n".join(lines))
        print(f"Total benchmark time: {time.perf_counter() - started:.1f} s")
        return 1 if args.strict and not clean else 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
