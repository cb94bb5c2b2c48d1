"""Load benchmark: webhooks, running tasks and WebSocket followers at once on a real `nimbus serve`.

One `nimbus serve --port 0` subprocess (loopback, a temporary NIMBUS_DATA_DIR, NIMBUS_API_KEY,
NIMBUS_GITHUB_WEBHOOK_SECRET, NIMBUS_MAX_CONCURRENT_TASKS = --tasks, NIMBUS_CONFIG naming the
scripted command agent of tests/agents/scripted_agent.py) gets, during one window of --seconds:

  webhooks   an open-loop schedule of --rate signed deliveries per second (GitHub's example
             `issue_comment` created payload, which holds no /nimbus command, so no task comes of
             it), each with a fresh X-GitHub-Delivery; a delivery is sent at its scheduled time
             on a free keep-alive connection, or a new one (the raw client of webhook_ingest.py).
  tasks      --tasks tasks on a local bare repository, POST /tasks/ with auto_approve, created
             in the first 5% of the window; the agent ("good" mode: edits calc.py, adds a test)
             sleeps 60-90% of the window in `implement`, so all of them run at once for most of
             the window and finish one after another towards its end.
  followers  --ws-clients WebSocket clients on WS /tasks/{id}/ws, spread over the tasks (two per
             task by default), each keeping every event it gets; every other one closes its
             socket after two events and resumes with ?since=<last seq>.
  probe      GET /tasks/{id}/ every 100 ms, round robin over the tasks.

Then it waits for the tasks to end and the delivery worker to drain, and checks: every delivery
answered 202 is a row of webhook_deliveries, processed without error; every follower has every
event of its task as stored (task_events), in seq order, none twice. The SQLite file is read
read-only. Memory is the RSS of the server process and of its process tree (/proc, every 0.5 s).

    /tmp/venv/bin/python bench/load.py            # 200/s for 60 s, 50 tasks, 100 followers
    /tmp/venv/bin/python bench/load.py --quick    # 50/s for 10 s, 10 tasks, 20 followers
    /tmp/venv/bin/python bench/load.py --quick --test-command pytest
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, WebSocketException

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import BenchError, cpu_model, git, give_up, leave_scratch  # noqa: E402
from bench.webhook_ingest import (  # noqa: E402
    PAYLOAD,
    SECRET,
    RawClient,
    Server,
    app_delivery,
    nimbus_argv,
    pct,
    progress,
    start_server,
    stop_server,
)
from bot.models import Event  # noqa: E402

API_KEY = "bench-load-key-0123456789abcdef"
WORKSPACE = "ws-default"
AGENT_SCRIPT = ROOT / "tests" / "agents" / "scripted_agent.py"
AGENT_KINDS = 5  # agents load0..load4 sleep 60%, 67.5%, ... 90% of the window in `implement`
CREATE_SPREAD = 0.05  # tasks are created over this share of the window
PROBE_PERIOD = 0.1
SAMPLE_PERIOD = 0.5
MAX_CONNECTIONS = 4000  # webhook connections the open-loop sender may open
# uvicorn closes a keep-alive connection idle for 5 s (timeout_keep_alive); a request written
# on one it is closing reads nothing. Like any HTTP client's pool, the sender drops its
# connections idle for longer than this instead of reusing them.
IDLE_LIMIT = 2.0
RESUME_AFTER = 2  # a resuming follower closes after this many events, then uses ?since=
WS_RETRIES = 20  # reconnections after an unplanned close, per follower
FINAL = ("completed", "failed", "cancelled")
TEST_COMMANDS = {"true": '"true"', "pytest": f"{sys.executable} -m pytest -q -p no:cacheprovider"}


# ---------------------------------------------------------------------------------------------
# Fixture: the repository and the agents (before the event loop runs)


def make_repo(root: Path, test_command: str) -> Path:
    """The scripted agent's small Python project, pushed to a bare repository."""
    work = root / "work"
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/__init__.py": "",
        "tests/test_calc.py": (
            "from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
        ),
        "conftest.py": "",
        ".github/nimbus.yml": f"test_command: {TEST_COMMANDS[test_command]}\n",
    }
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "initial", cwd=work)
    bare = root / "remote.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return bare


def agent_sleeps(seconds: float) -> list[float]:
    return [seconds * (0.6 + 0.3 * k / (AGENT_KINDS - 1)) for k in range(AGENT_KINDS)]


def write_agents(path: Path, seconds: float) -> Path:
    lines = ['default_agent = "load0"']
    for k, sleep in enumerate(agent_sleeps(seconds)):
        env = {"AGENT_MODE": "good", "AGENT_SLEEP_IN": "implement", "AGENT_SLEEP": f"{sleep:.2f}"}
        lines += [
            f"[agents.load{k}]",
            'kind = "command"',
            f"command = {json.dumps([sys.executable, str(AGENT_SCRIPT)])}",
            f"timeout = {int(sleep) + 300}",
            "env = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in env.items()) + " }",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Webhooks:
    scheduled: int = 0
    latencies: list[float] = field(default_factory=list)  # from the write to the whole answer
    delays: list[float] = field(default_factory=list)  # from the scheduled time to the answer
    lateness: list[float] = field(default_factory=list)  # scheduled time to the write
    accepted: list[str] = field(default_factory=list)  # delivery ids answered 202
    failed: list[str] = field(default_factory=list)  # delivery ids not answered 202
    errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0  # slots, each one connection at a time
    idle_drops: int = 0  # connections dropped for being idle over IDLE_LIMIT
    slow: list[tuple[float, float]] = field(default_factory=list)  # (due after t0, latency) > 100ms
    elapsed: float = 0.0


@dataclass
class Follower:
    index: int
    task_id: str
    resume_after: int | None
    events: list[dict[str, Any]] = field(default_factory=list)
    connects: int = 0
    resumes: int = 0
    drops: list[str] = field(default_factory=list)  # unplanned closes and failed connects
    close_code: int | None = None  # the server's, after the final event
    finished: bool = False


@dataclass
class Probe:
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass
class Resources:
    server_rss: int = 0
    tree_rss: int = 0
    processes: int = 0
    samples: int = 0


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat from field 3 (state) on."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_of(pid: int) -> tuple[float, float]:
    """CPU seconds of the process (all threads) and of its children it has waited for."""
    f = stat_fields(pid)
    tck = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tck, (int(f[13]) + int(f[14])) / tck


def sample_tree(pid: int) -> tuple[int, int, int]:
    """RSS of the process, summed RSS of its process tree, and the tree's size."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                children.setdefault(int(stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    page = os.sysconf("SC_PAGE_SIZE")
    own = total = 0
    for p in tree:
        with contextlib.suppress(OSError, IndexError, ValueError):
            rss = int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
            total += rss
            own = rss if p == pid else own
    return own, total, len(tree)


async def sample_resources(pid: int, out: Resources, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(OSError):
            own, total, count = await asyncio.to_thread(sample_tree, pid)
            out.server_rss = max(out.server_rss, own)
            out.tree_rss = max(out.tree_rss, total)
            out.processes = max(out.processes, count)
            out.samples += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_PERIOD)


async def send_webhooks(url: str, body: bytes, rate: float, seconds: float, t0: float) -> Webhooks:
    """Delivery k is written at t0 + k / rate on a free connection (a new one if none is)."""
    result = Webhooks(scheduled=round(rate * seconds))
    client = RawClient(url, body, MAX_CONNECTIONS)
    ids = [str(uuid.uuid4()) for _ in range(result.scheduled)]
    requests = [client.prepare(delivery) for delivery in ids]
    free: list[int] = []
    last_used: dict[int, float] = {}
    jobs: set[asyncio.Task[None]] = set()

    async def one(k: int, due: float) -> None:
        if free:
            slot = free.pop()
        elif result.connections < MAX_CONNECTIONS:
            slot, result.connections = result.connections, result.connections + 1
        else:
            result.errors["no free connection (the sender's cap)"] += 1
            result.failed.append(ids[k])
            return
        start = time.perf_counter()
        if start - last_used.get(slot, start) > IDLE_LIMIT and client.streams[slot] is not None:
            client.drop(slot)
            result.idle_drops += 1
        result.lateness.append(start - due)
        status, error = await client.post(slot, requests[k])
        end = last_used[slot] = time.perf_counter()
        free.append(slot)
        result.latencies.append(end - start)
        result.delays.append(end - due)
        if end - start > 0.1:
            result.slow.append((due - t0, end - start))
        if status == 202:
            result.accepted.append(ids[k])
        else:
            result.failed.append(ids[k])
            result.errors[error] += 1

    try:
        for k in range(result.scheduled):
            due = t0 + k / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            job = asyncio.create_task(one(k, due))
            jobs.add(job)
            job.add_done_callback(jobs.discard)
        if jobs:
            # Every post has its own timeout (REQUEST_TIMEOUT); this only guards the harness.
            await asyncio.wait_for(asyncio.gather(*jobs), 120)
        result.elapsed = time.perf_counter() - t0
    finally:
        for job in jobs:
            job.cancel()
        await client.aclose()
    return result


async def probe_tasks(client: httpx2.AsyncClient, ids: list[str], until: float, out: Probe) -> None:
    """GET /tasks/{id}/ every PROBE_PERIOD seconds (or right after a slower answer)."""
    n = 0
    while (t := time.perf_counter()) < until:
        if ids:
            try:
                answer = await client.get(f"/tasks/{ids[n % len(ids)]}/")
                if answer.status_code != 200:
                    out.errors[f"HTTP {answer.status_code}: {answer.text[:80]}"] += 1
            except httpx2.HTTPError as exc:
                out.errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
            out.latencies.append(time.perf_counter() - t)
            n += 1
        await asyncio.sleep(max(0.0, t + PROBE_PERIOD - time.perf_counter()))


async def follow(ws_url: str, f: Follower, deadline: float) -> None:
    """Every event of the task, reconnecting with ?since= after a planned or unplanned close."""
    since = 0
    while len(f.drops) <= WS_RETRIES:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            f.drops.append("bench deadline before the final event")
            return
        query = f"?since={since}" if since else ""
        planned = False
        try:
            async with asyncio.timeout(remaining):
                async with connect(
                    f"{ws_url}/tasks/{f.task_id}/ws{query}",
                    additional_headers={"X-API-Key": API_KEY},
                    open_timeout=30,
                    close_timeout=10,
                    max_size=None,
                ) as ws:
                    f.connects += 1
                    async for message in ws:
                        event = json.loads(message)
                        f.events.append(event)
                        since = max(since, int(event.get("seq", 0)))
                        if event.get("event_type") in ("done", "error"):
                            f.finished = True
                        elif f.resume_after and len(f.events) == f.resume_after and not f.resumes:
                            planned = True
                            break
                    if f.finished:
                        # The server closes after the final event; wait for its close frame.
                        await ws.wait_closed()
                        f.close_code = ws.close_code
                        return
            if planned:
                f.resumes += 1
            else:
                f.drops.append("closed normally before the final event")
        except TimeoutError as exc:
            if time.perf_counter() >= deadline:
                f.drops.append("bench deadline before the final event")
                return
            f.drops.append(f"TimeoutError: {exc}"[:100])  # the handshake's open_timeout
        except ConnectionClosedError as exc:
            f.drops.append(f"closed: {exc}"[:100])
            if f.finished:  # after the final event: nothing more to come
                f.close_code = exc.rcvd.code if exc.rcvd else None
                return
        except (OSError, WebSocketException) as exc:
            f.drops.append(f"{type(exc).__name__}: {exc}"[:100])
        await asyncio.sleep(0.1 if planned else 0.5)


# ---------------------------------------------------------------------------------------------
# After the run: what SQLite holds (read-only)


def read_db(db_path: Path, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


async def pending_deliveries(db_path: Path) -> tuple[int, int]:
    rows = await asyncio.to_thread(
        read_db,
        db_path,
        "SELECT count(*), coalesce(sum(processed_us IS NULL), 0) FROM webhook_deliveries",
    )
    return int(rows[0][0]), int(rows[0][1])


async def wait_drained(db_path: Path, cap: float) -> float:
    """Seconds until no stored delivery is left unprocessed (or `cap` ran out)."""
    t = time.perf_counter()
    while True:
        _, pending = await pending_deliveries(db_path)
        if not pending or time.perf_counter() - t > cap:
            return time.perf_counter() - t
        await asyncio.sleep(0.25)


def stored_events(db_path: Path, task_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each task's events as the WebSocket sends them (Event.to_json), in seq order."""
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in task_ids}
    rows = read_db(
        db_path, "SELECT task_id, seq, event_type, ts_us, fields FROM task_events ORDER BY seq"
    )
    for task_id, seq, event_type, ts_us, fields in rows:
        if task_id in out:
            out[task_id].append(
                Event(task_id, seq, event_type, ts_us, json.loads(fields)).to_json()
            )
    return out


@dataclass
class EventCheck:
    expected: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0
    disordered: int = 0
    different: int = 0
    unknown: int = 0  # received with a seq the store does not have
    store_gaps: int = 0  # tasks whose stored seqs are not 1..n
    examples: list[str] = field(default_factory=list)


def check_events(followers: list[Follower], stored: dict[str, list[dict[str, Any]]]) -> EventCheck:
    check = EventCheck()
    for events in stored.values():
        if [e["seq"] for e in events] != list(range(1, len(events) + 1)):
            check.store_gaps += 1
    for f in followers:
        want = {e["seq"]: e for e in stored[f.task_id]}
        seqs = [e.get("seq") for e in f.events]
        check.expected += len(want)
        check.received += len(seqs)
        lost = sorted(set(want) - set(seqs))
        dup = len(seqs) - len(set(seqs))
        disorder = sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        different = sum(1 for e in f.events if e.get("seq") in want and e != want[e["seq"]])
        unknown = sum(1 for s in seqs if s not in want)
        check.lost += len(lost)
        check.duplicates += dup
        check.disordered += disorder
        check.different += different
        check.unknown += unknown
        if (lost or dup or disorder or different or unknown) and len(check.examples) < 5:
            check.examples.append(
                f"follower {f.index} of {f.task_id}: lost seqs {lost[:8]}, {dup} duplicate(s),"
                f" {disorder} out of order, {different} different, {unknown} unknown;"
                f" {f.connects} connection(s), {f.resumes} planned resume(s), drops {f.drops[:2]}"
            )
    return check


def count_branches(bare: Path) -> int:
    done = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)", "refs/heads/nimbus/"],
        cwd=bare,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return len(done.stdout.split())


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Result:
    """Everything measured, filled in as the run goes."""

    hooks: Webhooks = field(default_factory=Webhooks)
    probe: Probe = field(default_factory=Probe)
    followers: list[Follower] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    create_latency: list[float] = field(default_factory=list)
    create_errors: Counter[str] = field(default_factory=Counter)
    tasks: list[dict[str, Any]] = field(default_factory=list)  # the last GET /tasks/{id}/ of each
    resources: Resources = field(default_factory=Resources)
    cpu_window: tuple[float, float] = (0.0, 0.0)  # server, its children
    cpu_total: tuple[float, float] = (0.0, 0.0)
    self_cpu: float = 0.0
    at_window_end: tuple[int, int] = (0, 0)  # deliveries stored, still unprocessed
    task_wait: float = 0.0  # seconds after the window until every task had ended
    drain: float = 0.0
    deliveries: dict[str, tuple[bool, str | None]] = field(default_factory=dict)
    events: EventCheck = field(default_factory=EventCheck)
    task_times: list[tuple[float, float, float]] = field(default_factory=list)  # created/start/end
    pushed: int = 0  # nimbus/ branches in the bare repository
    stderr: list[str] = field(default_factory=list)
    exit_code: int | None = None


def server_env(args: argparse.Namespace, data_dir: Path, agents: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    # The sandbox keeps what PATH names reachable: the venv holds the agent's Python and pytest.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        NIMBUS_DATA_DIR=str(data_dir),
        NIMBUS_API_KEY=API_KEY,
        NIMBUS_GITHUB_WEBHOOK_SECRET=SECRET,
        NIMBUS_MAX_CONCURRENT_TASKS=str(args.tasks),
        NIMBUS_CONFIG=str(agents),
        NIMBUS_LOG_LEVEL="warning",
    )
    return env


def alive(server: Server) -> None:
    if server.proc.returncode is not None:
        tail = "\n".join(server.stderr_lines()[-15:])
        raise BenchError(f"nimbus serve exited ({server.proc.returncode}); stderr:\n{tail}")


@dataclass
class Load:
    """The run's server side: its client, repository and followers' endpoint."""

    server: Server
    client: httpx2.AsyncClient
    repo_id: str
    args: argparse.Namespace
    result: Result
    follow_deadline: float
    jobs: list[asyncio.Task[None]] = field(default_factory=list)

    def start_followers(self, n: int, task_id: str) -> None:
        """The followers of the n-th task: clients n, n + tasks, ...; every other one resumes."""
        ws_url = self.server.url.replace("http://", "ws://")
        for j in range(n, self.args.ws_clients, self.args.tasks):
            f = Follower(j, task_id, RESUME_AFTER if (j // self.args.tasks) % 2 else None)
            self.result.followers.append(f)
            self.jobs.append(asyncio.create_task(follow(ws_url, f, self.follow_deadline)))

    async def create_tasks(self, t0: float) -> None:
        """POST /tasks/ spread over the first CREATE_SPREAD of the window, followers on answer."""
        # Each POST is sent on time however long the earlier ones take (open loop).
        jobs = []
        for i in range(self.args.tasks):
            due = t0 + i * CREATE_SPREAD * self.args.seconds / self.args.tasks
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            jobs.append(asyncio.create_task(self.create_task(i)))
        await asyncio.gather(*jobs)

    async def create_task(self, i: int) -> None:
        r = self.result
        body = {
            "workspace_id": WORKSPACE,
            "repo_id": self.repo_id,
            "description": f"Add multiply (load benchmark task {i})",
            "auto_approve": True,
            "agent_name": f"load{i % AGENT_KINDS}",
        }
        t = time.perf_counter()
        try:
            answer = await self.client.post("/tasks/", json=body)
        except httpx2.HTTPError as exc:
            r.create_errors[f"{type(exc).__name__}: {exc}"[:100]] += 1
            return
        r.create_latency.append(time.perf_counter() - t)
        if answer.status_code != 201:
            r.create_errors[f"HTTP {answer.status_code}: {answer.text[:80]}"] += 1
            return
        r.task_ids.append(answer.json()["id"])
        self.start_followers(len(r.task_ids) - 1, r.task_ids[-1])

    async def wait_tasks(self, deadline: float) -> None:
        """The tasks once each has ended, or as they are at the deadline."""
        last: dict[str, dict[str, Any]] = {}
        ids = self.result.task_ids

        def ended(task_id: str) -> bool:
            return last.get(task_id, {}).get("status") in FINAL

        while True:
            alive(self.server)
            for task_id in ids:
                if not ended(task_id):
                    with contextlib.suppress(httpx2.HTTPError):
                        answer = await self.client.get(f"/tasks/{task_id}/")
                        if answer.status_code == 200:
                            last[task_id] = answer.json()
            if all(map(ended, ids)) or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.5)
        self.result.tasks = [last.get(t, {"id": t, "status": "?", "phase": "?"}) for t in ids]


def task_times(db_path: Path, ids: Sequence[str], t0_us: int) -> list[tuple[float, float, float]]:
    """Per task, seconds after t0: created, first phase after QUEUED, last update."""
    out = []
    for task_id in ids:
        rows = read_db(db_path, "SELECT created_us, updated_us FROM tasks WHERE id = ?", (task_id,))
        first = read_db(
            db_path,
            "SELECT min(ts_us) FROM task_events WHERE task_id = ? AND event_type = 'phase'"
            " AND json_extract(fields, '$.phase') != 'QUEUED'",
            (task_id,),
        )
        if rows:
            created, updated = rows[0]
            start = first[0][0] if first and first[0][0] is not None else updated
            out.append(((created - t0_us) / 1e6, (start - t0_us) / 1e6, (updated - t0_us) / 1e6))
    return out


def cpu_since(pid: int, before: tuple[float, float]) -> tuple[float, float]:
    now = cpu_of(pid)
    return now[0] - before[0], now[1] - before[1]


async def run(args: argparse.Namespace, root: Path, body: bytes) -> Result:
    bare = await asyncio.to_thread(make_repo, root / "repo", args.test_command)
    agents = write_agents(root / "agents.toml", args.seconds)
    data_dir = root / "nimbus-data"
    data_dir.mkdir()
    db_path = data_dir / "nimbus.db"
    progress("starting nimbus serve")
    server = await start_server(
        "nimbus", nimbus_argv(), server_env(args, data_dir, agents), root, None
    )
    r = Result()
    stop = asyncio.Event()
    background = [asyncio.create_task(sample_resources(server.pid, r.resources, stop))]
    client = httpx2.AsyncClient(
        base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=30, trust_env=False
    )
    load: Load | None = None
    try:
        answer = await client.post("/repos/", json={"workspace_id": WORKSPACE, "url": str(bare)})
        if answer.status_code not in (200, 201):
            raise BenchError(f"POST /repos/ answered {answer.status_code}: {answer.text}")
        deadline = time.perf_counter() + args.seconds + args.task_timeout + 30
        load = Load(server, client, answer.json()["id"], args, r, deadline)
        progress(
            f"load window: {args.rate:g} deliveries/s for {args.seconds:g} s, {args.tasks} tasks,"
            f" {args.ws_clients} WebSocket clients"
        )
        cpu0, self0 = cpu_of(server.pid), time.process_time()
        # Half a second for the sender to prepare its requests.
        t0, t0_us = time.perf_counter() + 0.5, time.time_ns() // 1000 + 500_000
        sender = asyncio.create_task(send_webhooks(server.url, body, args.rate, args.seconds, t0))
        background.append(sender)
        await asyncio.sleep(max(0.0, t0 - time.perf_counter()))
        creator = asyncio.create_task(load.create_tasks(t0))
        prober = asyncio.create_task(probe_tasks(client, r.task_ids, t0 + args.seconds, r.probe))
        background += [creator, prober]
        r.hooks = await sender
        await asyncio.wait_for(asyncio.gather(creator, prober), 60)
        r.cpu_window = cpu_since(server.pid, cpu0)
        r.self_cpu = time.process_time() - self0
        alive(server)
        r.at_window_end = await pending_deliveries(db_path)
        progress(
            f"window over: {len(r.hooks.accepted)}/{r.hooks.scheduled} deliveries answered 202,"
            f" {r.at_window_end[1]} stored but not yet processed; waiting for the tasks"
        )
        ended = time.perf_counter()
        await load.wait_tasks(ended + args.task_timeout)
        r.task_wait = time.perf_counter() - ended
        if load.jobs:
            # Followers end with their task's final event; the deadline only guards the harness.
            await asyncio.wait(load.jobs, timeout=max(1.0, deadline - time.perf_counter()))
        progress(f"tasks ended after {r.task_wait:.1f} s; draining the deliveries")
        r.drain = await wait_drained(db_path, args.drain_cap)
        alive(server)
        r.cpu_total = cpu_since(server.pid, cpu0)
        rows = await asyncio.to_thread(
            read_db,
            db_path,
            "SELECT delivery_id, processed_us IS NOT NULL, error FROM webhook_deliveries",
        )
        r.deliveries = {row[0]: (bool(row[1]), row[2]) for row in rows}
        stored = await asyncio.to_thread(stored_events, db_path, r.task_ids)
        r.events = check_events(r.followers, stored)
        r.task_times = await asyncio.to_thread(task_times, db_path, r.task_ids, t0_us)
        r.pushed = await asyncio.to_thread(count_branches, bare)
    finally:
        stop.set()
        for job in [*background[1:], *(load.jobs if load else [])]:
            job.cancel()
        await asyncio.gather(*background, *(load.jobs if load else []), return_exceptions=True)
        await client.aclose()
        r.exit_code = await stop_server(server)
        r.stderr = server.stderr_lines()
    return r


# ---------------------------------------------------------------------------------------------
# Report


def ms(values: Sequence[float]) -> str:
    """p50 / p99 / max in ms."""
    if not values:
        return "- / - / -"
    return " / ".join(f"{v * 1000:.1f}" for v in (pct(values, 50), pct(values, 99), max(values)))


def mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB"


def machine_info() -> list[str]:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"machine: nproc={nproc} {cpu_model()}; {platform.system()} {platform.release()};"
        f" load avg {load}",
        f"python:  {platform.python_version()} ({sys.executable}); sqlite {sqlite3.sqlite_version};"
        f" bwrap {'found' if shutil.which('bwrap') else 'not found'} (NIMBUS_SANDBOX=auto)",
    ]


def report(r: Result, args: argparse.Namespace) -> tuple[list[str], list[str]]:
    h = r.hooks
    accepted = set(h.accepted)
    missing = [d for d in accepted if d not in r.deliveries]
    unprocessed = [d for d in accepted if d in r.deliveries and not r.deliveries[d][0]]
    errored = Counter(r.deliveries[d][1] for d in accepted if r.deliveries.get(d, (0, None))[1])
    extra = [d for d in h.failed if d in r.deliveries]
    stored_at_end, pending_at_end = r.at_window_end
    slow = f"{len(h.slow)} over 100 ms"
    if h.slow:
        worst = max(h.slow, key=lambda pair: pair[1])
        slow += (
            f" ({sum(1 for _, x in h.slow if x > 1)} over 1 s), written between"
            f" +{min(d for d, _ in h.slow):.1f} s and +{max(d for d, _ in h.slow):.1f} s of the"
            f" window; the slowest at +{worst[0]:.1f} s took {worst[1] * 1000:.0f} ms"
        )
    rate_stored = stored_at_end / args.seconds
    rate_processed = (stored_at_end - pending_at_end) / args.seconds
    lines = [
        f"Webhooks ({h.scheduled} scheduled, open loop at {args.rate:g}/s; sent in"
        f" {h.elapsed:.1f} s over {h.connections} connection(s)):",
        f"  answered 202: {len(h.accepted)}; errors: {sum(h.errors.values())}",
        *(f"    {n} x {text}" for text, n in h.errors.most_common(5)),
        f"  latency p50 / p99 / max, ms: {ms(h.latencies)} from the write;"
        f" {ms(h.delays)} from the scheduled time",
        f"  sender lateness (scheduled time to write) p99 / max: "
        f"{pct(h.lateness, 99) * 1000:.1f} / {max(h.lateness, default=0) * 1000:.1f} ms;"
        f" connections dropped after {IDLE_LIMIT:g} s idle: {h.idle_drops}",
        f"  {slow}",
        f"  during the window: stored {rate_stored:.0f}/s, processed by the worker"
        f" {rate_processed:.0f}/s; {pending_at_end} unprocessed at its end, drained"
        f" {r.drain:.1f} s after the tasks had ended",
        f"  after the drain: {len(accepted) - len(missing)} of the {len(accepted)} 202s stored,"
        f" {len(unprocessed)} of them unprocessed, {sum(errored.values())} processed with an"
        f" error; {len(extra)} stored though not answered 202",
        *(f"    error {n} x {text[:120]}" for text, n in errored.most_common(3)),
    ]
    statuses = Counter(t.get("status", "?") for t in r.tasks)
    durations = [end - created for created, _, end in r.task_times]
    waits = [start - created for created, start, _ in r.task_times]
    if r.task_times:
        # All ran at once between the last start and the first end, if that came later.
        together = (max(s for _, s, _ in r.task_times), min(e for _, _, e in r.task_times))
        marks = sorted([(s, 1) for _, s, _ in r.task_times] + [(e, -1) for _, _, e in r.task_times])
        peak = max(itertools.accumulate(step for _, step in marks))
        overlap = (
            f"all {len(r.task_times)} running from +{together[0]:.1f} s to +{together[1]:.1f} s"
            if together[0] < together[1]
            else f"at most {peak} running at once"
        )
    else:
        overlap = "none ran"
    sleeps = agent_sleeps(args.seconds)
    lines += [
        "",
        f"Tasks ({args.tasks}; agent sleeps {sleeps[0]:.1f}-{sleeps[-1]:.1f} s in implement;"
        f" test_command {TEST_COMMANDS[args.test_command]}):",
        f"  created {len(r.task_ids)}/{args.tasks}, POST /tasks/ p50 / p99 / max"
        f" {ms(r.create_latency)} ms; errors {sum(r.create_errors.values())}",
        *(f"    {n} x {text}" for text, n in r.create_errors.most_common(3)),
        f"  outcome: {', '.join(f'{n} {s}' for s, n in statuses.most_common())};"
        f" all ended {r.task_wait:.1f} s after the window",
        f"  duration (created to last update) min / p50 / max: {min(durations, default=0):.1f} /"
        f" {pct(durations, 50):.1f} / {max(durations, default=0):.1f} s; wait for a worker p50 /"
        f" max: {pct(waits, 50) * 1000:.0f} / {max(waits, default=0) * 1000:.0f} ms",
        f"  {overlap} (window: +0 to +{args.seconds:g} s); branches pushed {r.pushed}",
    ]
    for t in r.tasks:
        if t.get("status") != "completed":
            lines.append(
                f"    {t.get('id')}: {t.get('status')} in {t.get('phase')}:"
                f" {str(t.get('error'))[:150]}"
            )
    p = r.probe
    lines += [
        "",
        f"API: GET /tasks/{{id}}/ every {PROBE_PERIOD * 1000:.0f} ms during the window:"
        f" {len(p.latencies)} requests, p50 / p99 / max {ms(p.latencies)} ms,"
        f" errors {sum(p.errors.values())}",
        *(f"    {n} x {text}" for text, n in p.errors.most_common(3)),
    ]
    e = r.events
    fs = r.followers
    drops = Counter(d for f in fs for d in f.drops)
    closed = sum(1 for f in fs if f.finished and f.close_code == 1000)
    lines += [
        "",
        f"WebSocket followers ({len(fs)}, {sum(1 for f in fs if f.resume_after)} of them resuming"
        f" with ?since= after {RESUME_AFTER} events):",
        f"  events received {e.received}, stored for their tasks {e.expected}; lost {e.lost},"
        f" duplicated {e.duplicates}, out of order {e.disordered}, different {e.different},"
        f" unknown seq {e.unknown}; tasks with gaps in their stored seqs {e.store_gaps}",
        f"  connections {sum(f.connects for f in fs)}, planned resumes"
        f" {sum(f.resumes for f in fs)}, unplanned closes / failed connects {sum(drops.values())};"
        f" closed 1000 after the final event {closed}/{len(fs)}",
        *(f"    {n} x {text}" for text, n in drops.most_common(3)),
        *(f"    {text}" for text in e.examples),
    ]
    res = r.resources
    lines += [
        "",
        f"Server (pid tree sampled every {SAMPLE_PERIOD:g} s, {res.samples} samples):",
        f"  peak RSS: server process {mb(res.server_rss)}; server and its children summed"
        f" {mb(res.tree_rss)} (shared pages counted per process), at most {res.processes}"
        " processes",
        f"  CPU seconds in the window: server {r.cpu_window[0]:.1f}, its finished children"
        f" {r.cpu_window[1]:.1f}; to the end of the drain: {r.cpu_total[0]:.1f} /"
        f" {r.cpu_total[1]:.1f}; this benchmark process in the window {r.self_cpu:.1f}",
        f"  exit code after SIGTERM {r.exit_code}; stderr (log level warning): {len(r.stderr)}"
        " line(s)",
        *(f"    {line[:200]}" for line in r.stderr[:8]),
    ]
    errors = sum(h.errors.values()) + sum(p.errors.values()) + sum(r.create_errors.values())
    lost = len(missing) + len(unprocessed) + sum(errored.values())
    lost_events = e.lost + e.duplicates + e.disordered + e.different + e.unknown
    completed = statuses.get("completed", 0)
    stuck = sum(1 for t in r.tasks if t.get("status") not in FINAL)
    ws_broken = sum(drops.values()) + len(fs) - closed

    def verdict(ok: bool) -> str:
        return "MET   " if ok else "MISSED"

    targets = [
        f"  {verdict(errors == 0)} errors: {errors} (webhooks {sum(h.errors.values())}, GET probe"
        f" {sum(p.errors.values())}, POST /tasks/ {sum(r.create_errors.values())}; target 0)",
        f"  {verdict(lost == 0)} lost deliveries: {lost} (202 but not stored {len(missing)},"
        f" unprocessed after {args.drain_cap:g} s {len(unprocessed)}, failed"
        f" {sum(errored.values())}; target 0)",
        f"  {verdict(lost_events == 0)} lost events: {lost_events} (lost {e.lost}, duplicated"
        f" {e.duplicates}, out of order {e.disordered}, different {e.different}, unknown"
        f" {e.unknown}; target 0)",
        f"  {verdict(ws_broken == 0)} WebSocket followers: {ws_broken} unplanned close(s) or"
        " follower(s) without the final event and close 1000 (target 0)",
        f"  {verdict(completed == args.tasks)} tasks completed: {completed}/{args.tasks}"
        f" ({stuck} not ended within {args.task_timeout:g} s after the window)",
        f"  (figure) p99 ms: webhook {pct(h.latencies, 99) * 1000:.1f}, GET /tasks/{{id}}/"
        f" {pct(p.latencies, 99) * 1000:.1f}, POST /tasks/ {pct(r.create_latency, 99) * 1000:.1f}",
        f"  (figure) peak memory: server {mb(res.server_rss)}, with children {mb(res.tree_rss)}",
    ]
    return lines, targets


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, help="load window (default 60; quick 10)")
    parser.add_argument("--rate", type=float, help="webhook deliveries per second (200; quick 50)")
    parser.add_argument("--tasks", type=int, help="tasks run at once (default 50; quick 10)")
    parser.add_argument(
        "--ws-clients", type=int, help="WebSocket followers over the tasks (100; quick 20)"
    )
    parser.add_argument("--quick", action="store_true", help="10 s, 50/s, 10 tasks, 20 clients")
    parser.add_argument(
        "--test-command",
        choices=sorted(TEST_COMMANDS),
        default="true",
        help="the repository's test_command: true (default; the load stays on the server) or"
        " pytest (python -m pytest -q on the tiny project)",
    )
    parser.add_argument(
        "--task-timeout",
        type=float,
        default=180.0,
        help="seconds after the window for the tasks to end (default 180)",
    )
    parser.add_argument(
        "--drain-cap",
        type=float,
        default=300.0,
        help="seconds for the delivery worker to process what is stored (default 300)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    defaults = (10.0, 50.0, 10, 20) if args.quick else (60.0, 200.0, 50, 100)
    for name, value in zip(("seconds", "rate", "tasks", "ws_clients"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.seconds <= 0 or args.rate <= 0 or args.tasks < 1 or args.ws_clients < 0:
        parser.error("--seconds and --rate must be positive, --tasks at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not PAYLOAD.is_file():
        return give_up(BenchError(f"no example payload at {PAYLOAD}"))
    if not AGENT_SCRIPT.is_file():
        return give_up(BenchError(f"no scripted agent at {AGENT_SCRIPT}"))
    body = app_delivery(PAYLOAD.read_bytes())
    root = Path(tempfile.mkdtemp(prefix="nimbus-load-bench-"))
    started = time.perf_counter()
    try:
        print("Nimbus load benchmark")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info():
            print(line)
        print(
            f"load:    {args.rate:g} webhook deliveries/s for {args.seconds:g} s"
            f" ({round(args.rate * args.seconds)}; {PAYLOAD.parent.name}/{PAYLOAD.name} with an"
            f" installation, {len(body)} bytes), {args.tasks} tasks"
            f" (NIMBUS_MAX_CONCURRENT_TASKS={args.tasks}),"
            f" {args.ws_clients} WebSocket followers, GET /tasks/{{id}}/ every"
            f" {PROBE_PERIOD * 1000:.0f} ms"
        )
        sys.stdout.flush()
        result = asyncio.run(run(args, root, body))
        lines, targets = report(result, args)
        print()
        print("\n".join(lines))
        print("\nTargets:")
        print("\n".join(targets))
        missed = sum(1 for t in targets if t.lstrip().startswith("MISSED"))
        print(
            f"\n{'All targets met' if not missed else f'{missed} target(s) MISSED'};"
            f" total benchmark time {time.perf_counter() - started:.1f} s"
        )
        return 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
