"""Webhook ingest benchmark: signed GitHub deliveries per second into a real `nimbus serve`.

Starts two servers, each in its own subprocess (own process group, loopback, port 0):

  nimbus   `nimbus serve --port 0` with a temporary NIMBUS_DATA_DIR, NIMBUS_GITHUB_WEBHOOK_SECRET
           set and NIMBUS_LOG_LEVEL=warning: POST /github/webhooks checks X-Hub-Signature-256,
           stores the delivery in SQLite and answers 202; its delivery worker processes the
           stored deliveries in the same process at the same time.
  ceiling  a bare Starlette app on the same uvicorn settings (one worker, the same listening
           socket as bot.cli._listen, the same uvicorn.Config) whose only route reads the body
           and answers 202 with the same small JSON, without verifying or storing anything.

Senders are asyncio tasks in this process, each sending GitHub's example `issue_comment`
(created) payload, with the `installation` an App's deliveries carry, back to back, every
delivery with its own X-GitHub-Delivery and its X-Hub-Signature-256, for a fixed time per
concurrency level. The two servers are measured
alternately (ceiling, nimbus, ceiling, nimbus when the time budget allows) so that drift hits both.

What is measured should be the server, not the load generator, which shares the machine:

  --client raw    (default) a minimal HTTP/1.1 keep-alive client on asyncio streams, one
                  connection per sender, requests encoded before the timed window; it needs a
                  fraction of the CPU per request that httpx2 does.
  --client httpx  the former sender, one httpx2.AsyncClient; `--client both` runs raw, then httpx
                  in each pass, for comparison (the targets are judged on raw).
  --pin none      (default) no CPU affinity: the servers may use every core, as they would in
                  a deployment, and the senders take what they need (the 'sender' column).
  --pin split     the servers, with every thread they start, on all CPUs but the last, this
                  process on the last one, the same for the ceiling and Nimbus. On 2 cores,
                  measured: the senders' core makes no difference to either server any more, but
                  confining Nimbus to one core makes it 20-40% faster (its event loop and its
                  SQLite thread hand work to each other; across cores every hand-over costs more),
                  which a deployment on several cores would not see. Hence not the default.

    /tmp/venv/bin/python bench/webhook_ingest.py                # levels 1,50,200; 10 s each
    /tmp/venv/bin/python bench/webhook_ingest.py --quick        # levels 1,50; 2 s each
    /tmp/venv/bin/python bench/webhook_ingest.py --seconds 5 --levels 1,50,200,500
    /tmp/venv/bin/python bench/webhook_ingest.py --client both --budget 330
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import json
import math
import os
import platform
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx2
import starlette
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import BenchError, cpu_model, give_up, leave_scratch  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "github"
EXAMPLES = SHARED / "webhooks" / "payload-examples" / "api.github.com"
PAYLOAD = EXAMPLES / "issue_comment" / "created.payload.json"
EVENT = "issue_comment"
SECRET = "It's a Secret to Everybody"
PATH = "/github/webhooks"
LISTENING = re.compile(r"listening on http://([^\s:]+|\[[^\]]+\]):(\d+)\s*$")
TARGET_RATIO = 0.5  # Nimbus throughput at least half the ceiling's
TARGET_P99_LEVEL = 50
TARGET_P99_MS = 50.0
REQUEST_TIMEOUT = 30.0  # seconds, per request, both clients
CLIENTS = ("raw", "httpx")

# The ceiling: the same listening socket (bot.cli._listen) and uvicorn.Config as bot.cli.serve,
# and a route that reads the body and answers 202 without verifying or storing anything.
CEILING_SOURCE = """
import asyncio

import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.cli import _listen


async def receive(request):
    await request.body()
    headers = request.headers
    return JSONResponse(
        {"event": headers.get("x-github-event"), "delivery": headers.get("x-github-delivery"),
         "new": True},
        202,
    )


app = Starlette(routes=[Route("/github/webhooks", receive, methods=["POST"])])
sock = _listen("127.0.0.1", 0)
host, port = sock.getsockname()[:2]
config = uvicorn.Config(
    app,
    log_level="warning",
    access_log=False,
    timeout_graceful_shutdown=10,
    ws="websockets-sansio",
    lifespan="on",
)
server = uvicorn.Server(config)
print(f"Ceiling listening on http://{host}:{port}", flush=True)
asyncio.run(server.serve(sockets=[sock]))
"""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def app_delivery(example: bytes) -> bytes:
    """GitHub's example as an App receives it: with the `installation` the example lacks."""
    payload = json.loads(example)
    payload.setdefault("installation", {"id": 4242, "node_id": "MDIzOkludGVncmF0aW9uNDI0Mg=="})
    return json.dumps(payload).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------------------------
# The servers, each a subprocess in its own process group


@dataclass
class Server:
    name: str
    proc: asyncio.subprocess.Process
    url: str
    stderr_path: Path
    db_path: Path | None = None  # Nimbus's SQLite file
    stdout_rest: list[bytes] = field(default_factory=list)
    drain_job: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """user + system CPU seconds of the server process so far (all its threads)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stderr_lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return self.stderr_path.read_text(errors="replace").splitlines()
        return []


def nimbus_argv() -> list[str]:
    script = Path(sys.executable).parent / "nimbus"
    base = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return [*base, "serve", "--host", "127.0.0.1", "--port", "0"]


async def start_server(
    name: str, argv: Sequence[str], env: dict[str, str], root: Path, cpus: set[int] | None
) -> Server:
    """The server's subprocess; with `cpus`, it and every thread it starts run only on them."""
    stderr_path = root / f"{name}.stderr"
    pin: Callable[[], None] | None = None
    if cpus is not None:

        def pin() -> None:  # in the child before exec, so all its later threads inherit it
            os.sched_setaffinity(0, cpus)

    with stderr_path.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,  # its own process group, killed as one at the end
            preexec_fn=pin,
        )
    server = Server(name, proc, "", stderr_path)
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.readline(), 60)
    except TimeoutError:
        first = b""
    match = LISTENING.search(first.decode(errors="replace"))
    if not match:
        await stop_server(server)
        tail = "\n".join(server.stderr_lines()[-15:])
        raise BenchError(
            f"{name} did not announce its address (first stdout line {first!r}); stderr:\n{tail}"
        )
    server.url = f"http://{match.group(1)}:{match.group(2)}"

    async def drain() -> None:  # keep the pipe from filling up
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            server.stdout_rest.append(line)

    server.drain_job = asyncio.create_task(drain())
    return server


async def stop_server(server: Server) -> int | None:
    """SIGTERM to the process group (uvicorn shuts down gracefully), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        code = await asyncio.wait_for(server.proc.wait(), 20)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        code = await server.proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)  # anything left in the group
    if server.drain_job is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(server.drain_job, 5)
    return code


def db_counts(db_path: Path) -> tuple[int, int, int]:
    """Rows in webhook_deliveries: all, not yet processed, processed with an error.

    Opened read-only (mode=ro), never written to.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(processed_us IS NULL), 0),"
            " coalesce(sum(error IS NOT NULL), 0) FROM webhook_deliveries"
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# Clients: each sender owns one slot (a keep-alive connection) and posts prepared requests


def github_headers(delivery: str, signature: str) -> dict[str, str]:
    """The headers GitHub sends with a delivery (the ones Nimbus or a proxy could look at)."""
    # https://docs.github.com/webhooks/webhook-events-and-payloads#delivery-headers
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/044aadd",
        "X-GitHub-Event": EVENT,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "292430182",
        "X-Hub-Signature-256": signature,
    }


class Client(Protocol):
    name: str

    def prepare(self, delivery: str) -> Any:
        """The request for one delivery, made before the timed window."""

    async def post(self, slot: int, request: Any) -> tuple[int, str]:
        """Status (0: no answer) and, unless it is 202, what went wrong."""

    async def aclose(self) -> None: ...


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server closes the connection, from a response head.

    Just the HTTP/1.1 this benchmark gets from uvicorn: a body is always framed by Content-Length.
    """
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    status = int(status_line[1])
    length: int | None = None
    close = status_line[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"transfer-encoding":
            raise ValueError(f"Transfer-Encoding {value.strip()!r} is not supported here")
    if length is None:
        if status in (204, 304):
            return status, 0, close
        raise ValueError(f"HTTP {status} answer without Content-Length")
    return status, length, close


class RawClient:
    """HTTP/1.1 keep-alive on asyncio streams, one connection per slot, opened on first use.

    Requests are bytes made before the timed window; a post writes them, reads the status line
    and headers, then the Content-Length body. After an error the slot's connection is dropped
    and the next post opens a new one.
    """

    name = "raw"

    def __init__(self, url: str, body: bytes, slots: int) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None and parts.port is not None
        self.host, self.port = parts.hostname, parts.port
        self.body = body
        self.streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]
        self.streams = [None] * slots
        # GitHub signs the body only, so all the deliveries of one body share their signature.
        fixed = github_headers("", sign(body))
        del fixed["X-GitHub-Delivery"]
        lines = [f"POST {PATH} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in fixed.items()]
        lines.append(f"Content-Length: {len(body)}")
        self.head = "\r\n".join(lines) + "\r\nX-GitHub-Delivery: "

    def prepare(self, delivery: str) -> bytes:
        return f"{self.head}{delivery}\r\n\r\n".encode()

    async def post(self, slot: int, request: bytes) -> tuple[int, str]:
        streams = self.streams[slot]
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                if streams is None:
                    # asyncio sets TCP_NODELAY on the connections it opens.
                    streams = await asyncio.open_connection(self.host, self.port)
                    self.streams[slot] = streams
                reader, writer = streams
                writer.write(request + self.body)  # one send, as a client with one buffer would
                await writer.drain()
                status, length, close = parse_head(await reader.readuntil(b"\r\n\r\n"))
                answer = await reader.readexactly(length)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError) as exc:
            # OSError includes TimeoutError and the connection errors; EOFError the server
            # closing mid-answer (IncompleteReadError).
            self.drop(slot)
            return 0, f"{type(exc).__name__}: {exc}"[:120]
        if close:
            self.drop(slot)
        if status == 202:
            return 202, ""
        return status, f"HTTP {status}: {answer[:100].decode(errors='replace')}"

    def drop(self, slot: int) -> None:
        streams, self.streams[slot] = self.streams[slot], None
        if streams is not None:
            streams[1].close()

    async def aclose(self) -> None:
        writers = [s[1] for s in self.streams if s is not None]
        for slot in range(len(self.streams)):
            self.drop(slot)
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class HttpxClient:
    """The former sender: one httpx2.AsyncClient with a keep-alive connection per slot."""

    name = "httpx"

    def __init__(self, url: str, body: bytes, slots: int) -> None:
        self.body = body
        self.signature = sign(body)
        self.client = httpx2.AsyncClient(
            base_url=url,
            timeout=REQUEST_TIMEOUT,
            trust_env=False,
            limits=httpx2.Limits(max_connections=slots, max_keepalive_connections=slots),
        )

    def prepare(self, delivery: str) -> dict[str, str]:
        return github_headers(delivery, self.signature)

    async def post(self, slot: int, request: dict[str, str]) -> tuple[int, str]:
        try:
            response = await self.client.post(PATH, content=self.body, headers=request)
        except httpx2.HTTPError as exc:
            return 0, f"{type(exc).__name__}: {exc}"[:120]
        if response.status_code == 202:
            return 202, ""
        return response.status_code, f"HTTP {response.status_code}: {response.text[:100]}"

    async def aclose(self) -> None:
        await self.client.aclose()


def make_client(kind: str, url: str, body: bytes, slots: int) -> Client:
    return RawClient(url, body, slots) if kind == "raw" else HttpxClient(url, body, slots)


# ---------------------------------------------------------------------------------------------
# Senders


@dataclass
class Run:
    server: str
    client: str
    level: int
    index: int  # 1 = first pass, 2 = second
    requests: int = 0
    accepted: int = 0  # answered 202
    warmup_accepted: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    unprepared: int = 0  # deliveries made inside the timed window: the prepared ones ran out
    sender_cpu: float = 0.0
    server_cpu: float = 0.0
    backlog: int | None = None  # Nimbus: deliveries not yet processed when the senders stopped
    drain: float | None = None  # Nimbus: seconds until the worker had processed them all
    processed: int | None = None  # Nimbus: deliveries the worker finished during the run
    stored: int | None = None  # Nimbus: rows added during warm-up + run


@dataclass
class Prepared:
    """Requests, each with a fresh delivery id, made ahead of the window that sends them."""

    client: Client
    requests: list[Any] = field(default_factory=list)

    def fill(self, count: int) -> None:
        missing = count - len(self.requests)
        self.requests += [self.client.prepare(str(uuid.uuid4())) for _ in range(missing)]


async def send_for(
    client: Client, prepared: Prepared, senders: int, seconds: float, run: Run
) -> None:
    """`senders` tasks, each posting deliveries back to back until `seconds` have passed.

    Requests in flight at the deadline are awaited and counted; elapsed ends with the last.
    """
    deadline = time.perf_counter() + seconds
    requests = prepared.requests

    async def sender(slot: int) -> None:
        while time.perf_counter() < deadline:
            if requests:
                request = requests.pop()
            else:
                request = client.prepare(str(uuid.uuid4()))
                run.unprepared += 1
            t = time.perf_counter()
            status, error = await client.post(slot, request)
            run.latencies.append(time.perf_counter() - t)
            run.requests += 1
            if status == 202:
                run.accepted += 1
            else:
                run.errors[error] += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender(slot) for slot in range(senders)))
    run.elapsed = time.perf_counter() - start


async def wait_drained(db_path: Path, cap: float) -> tuple[int, float]:
    """Deliveries pending right now, and seconds until none is (or `cap` ran out)."""
    t = time.perf_counter()
    _, pending, _ = await asyncio.to_thread(db_counts, db_path)
    first = pending
    while pending and time.perf_counter() - t < cap:
        await asyncio.sleep(0.05)
        _, pending, _ = await asyncio.to_thread(db_counts, db_path)
    return first, time.perf_counter() - t


async def measure(
    server: Server,
    kind: str,
    level: int,
    index: int,
    body: bytes,
    args: argparse.Namespace,
    peak: dict[str, float],
) -> Run:
    """One warm-up and one timed run; `peak` (fastest req/s per client) sizes the prepared pool."""
    if server.proc.returncode is not None:
        tail = "\n".join(server.stderr_lines()[-15:])
        raise BenchError(f"{server.name} exited ({server.proc.returncode}); stderr:\n{tail}")
    run = Run(server.name, kind, level, index)
    before = (await asyncio.to_thread(db_counts, server.db_path))[0] if server.db_path else 0
    client = make_client(kind, server.url, body, level)
    prepared = Prepared(client)
    try:
        # Warm-up: opens the `level` connections and warms both sides; not counted.
        prepared.fill(math.ceil(peak.get(kind, 2000.0) * args.warmup * 2) + 2 * level)
        warm = Run(server.name, kind, level, 0)
        await send_for(client, prepared, level, args.warmup, warm)
        run.warmup_accepted = warm.accepted
        run.errors.update({f"(warm-up) {k}": v for k, v in warm.errors.items()})
        rate = max(warm.requests / warm.elapsed, peak.get(kind, 0.0))
        # Twice the deliveries the run is expected to send, so that none is made in the window.
        prepared.fill(math.ceil(rate * args.seconds * 2) + 2 * level)
        pending_start = 0
        if server.db_path:
            await wait_drained(server.db_path, args.drain_cap)
            pending_start = (await asyncio.to_thread(db_counts, server.db_path))[1]
        cpu_server = server.cpu_seconds()
        cpu_self = time.process_time()
        await send_for(client, prepared, level, args.seconds, run)
        run.sender_cpu = time.process_time() - cpu_self
        run.server_cpu = server.cpu_seconds() - cpu_server
        peak[kind] = max(peak.get(kind, 0.0), run.requests / run.elapsed)
    finally:
        await client.aclose()
    if server.db_path:
        # Before the next run: the worker's backlog must not steal the CPU from the next server.
        run.backlog, run.drain = await wait_drained(server.db_path, args.drain_cap)
        # What was pending at the start or stored since, and is no longer pending, was processed.
        run.processed = pending_start + run.accepted - run.backlog
        run.stored = (await asyncio.to_thread(db_counts, server.db_path))[0] - before
    return run


# ---------------------------------------------------------------------------------------------
# Report


def pct(values: Sequence[float], p: int) -> float:
    """The p-th percentile (inclusive method); the value itself for a single sample."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    if p == 50:
        return statistics.median(values)
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def machine_info(args: argparse.Namespace) -> list[str]:
    cpu = cpu_model()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    http = "httptools" if has("httptools") else "h11"
    loop = "uvloop" if has("uvloop") else "asyncio"
    clients = {
        "raw": "raw (HTTP/1.1 keep-alive on asyncio streams, this file)",
        "httpx": f"httpx (httpx2 {httpx2.__version__} AsyncClient)",
    }
    servers, senders = cpu_plan(args.pin)
    if servers is None or senders is None:
        pinning = f"none: the kernel runs the servers and the senders on any of the {nproc} CPUs"
    else:
        pinning = (
            f"split: the servers (all their threads) on CPU {fmt_cpus(servers)}, this process"
            f" (the senders) on CPU {fmt_cpus(senders)}"
        )
    return [
        f"machine: nproc={nproc} (os.cpu_count()={os.cpu_count()}) {cpu};"
        f" {platform.system()} {platform.release()} {platform.machine()}; load avg {load}",
        f"python:  {platform.python_implementation()} {platform.python_version()}"
        f" ({sys.executable})",
        f"stack:   uvicorn {uvicorn.__version__} (http={http}, loop={loop}, one worker),"
        f" starlette {starlette.__version__}, sqlite {sqlite3.sqlite_version}",
        f"client:  {', then '.join(clients[k] for k in args.clients)}",
        f"pinning: {pinning}",
    ]


def cpu_plan(pin: str) -> tuple[set[int] | None, set[int] | None]:
    """CPUs for the servers and for this process: with `split`, the last one for the senders."""
    if pin == "none":
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise BenchError(f"--pin split needs at least 2 CPUs, this process may use {cpus}")
    return set(cpus[:-1]), {cpus[-1]}


def fmt_cpus(cpus: set[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def combined(runs: Sequence[Run]) -> Run:
    out = Run(runs[0].server, runs[0].client, runs[0].level, 0)
    for r in runs:
        out.requests += r.requests
        out.accepted += r.accepted
        out.elapsed += r.elapsed
        out.latencies += r.latencies
        out.errors.update(r.errors)
        out.unprepared += r.unprepared
        out.sender_cpu += r.sender_cpu
        out.server_cpu += r.server_cpu
    backlogs = [r.backlog for r in runs if r.backlog is not None]
    drains = [r.drain for r in runs if r.drain is not None]
    out.backlog = max(backlogs) if backlogs else None
    processed = [r.processed for r in runs if r.processed is not None]
    out.processed = sum(processed) if processed else None
    out.drain = max(drains) if drains else None
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def row(label: str, r: Run) -> str:
    rps = r.requests / r.elapsed if r.elapsed else float("nan")
    send = r.sender_cpu / r.elapsed * 100 if r.elapsed else float("nan")
    srv = r.server_cpu / r.elapsed * 100 if r.elapsed else float("nan")
    backlog = "-" if r.backlog is None else str(r.backlog)
    drain = "-" if r.drain is None else f"{r.drain:.1f}"
    done = "-" if r.processed is None else f"{r.processed / r.elapsed:.0f}"
    errors = sum(v for k, v in r.errors.items() if not k.startswith("(warm-up)"))
    return (
        f"{r.level:>6} {label:<12} {r.client:<6} {r.requests:>9} {rps:>8.0f}"
        f" {ms(pct(r.latencies, 50)):>7} {ms(pct(r.latencies, 99)):>7}"
        f" {ms(max(r.latencies, default=float('nan'))):>8}"
        f" {errors:>6} {send:>6.0f}% {srv:>6.0f}% {done:>7} {backlog:>8} {drain:>7}"
    )


@dataclass
class Pair:
    """One client's pooled ceiling and Nimbus runs at one concurrency level."""

    ceiling: Run
    nimbus: Run

    @property
    def ratio(self) -> float:
        return self.rps(self.nimbus) / self.rps(self.ceiling)

    @staticmethod
    def rps(r: Run) -> float:
        return r.requests / r.elapsed

    @staticmethod
    def p99(r: Run) -> float:
        return pct(r.latencies, 99) * 1000


def report(
    runs: list[Run], args: argparse.Namespace, check: dict[str, int]
) -> tuple[list[str], list[str], dict[str, dict[int, Pair]]]:
    """The table with its explanations, the target lines, and the pooled pairs per client."""
    header = (
        f"{'conc':>6} {'server':<12} {'client':<6} {'requests':>9} {'req/s':>8} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'max ms':>8} {'errors':>6} {'sender':>7} {'server':>7} {'proc/s':>7}"
        f" {'backlog':>8} {'drain s':>7}"
    )
    lines = [header, "-" * len(header)]
    pairs: dict[str, dict[int, Pair]] = {kind: {} for kind in args.clients}
    for level in args.levels:
        for kind in args.clients:
            mine = [r for r in runs if r.level == level and r.client == kind]
            if not {r.server for r in mine} >= {"ceiling", "nimbus"}:
                continue
            for r in mine:
                lines.append(row(f"{r.server} #{r.index}", r))
            both = {
                name: combined([r for r in mine if r.server == name])
                for name in ("ceiling", "nimbus")
            }
            if max(r.index for r in mine) > 1:
                for name in ("ceiling", "nimbus"):
                    lines.append(row(f"{name} all", both[name]))
            pair = pairs[kind][level] = Pair(both["ceiling"], both["nimbus"])
            lines.append(
                f"{'':>6} nimbus/ceiling throughput ({kind} client): {pair.ratio:.2f}"
                f" ({pair.rps(pair.nimbus):.0f} / {pair.rps(pair.ceiling):.0f} req/s)"
            )
        lines.append("")
    lines += [
        "  conc      concurrent senders: asyncio tasks in this process, one keep-alive"
        " connection each, each sending the next delivery as soon as",
        "            the previous one is answered",
        "  server    which server and which run (#1, #2: the servers alternate, ceiling first);"
        " 'all' pools a level's runs",
        "  client    raw: HTTP/1.1 written and parsed on asyncio streams by this file, requests"
        " encoded (fresh X-GitHub-Delivery each) before",
        "            the timed window; httpx: one httpx2.AsyncClient (max_connections = conc),"
        " header dicts made before the window",
        f"  requests  deliveries completed in the {args.seconds:g} s window (those in flight at"
        f" the deadline are awaited and counted); a {args.warmup:g} s warm-up before each run"
        " opens the connections and is not counted",
        "  req/s     requests / elapsed, elapsed = from the first send to the last answer",
        "  p50/p99/max  latency of one POST as the sender sees it, ms: perf_counter from"
        " writing the request to having read the whole answer",
        "            (httpx: around client.post); it includes the time this process's event"
        " loop takes to get to the answer, which the sender column bounds;",
        "            percentiles are statistics.quantiles(n=100, method='inclusive'), p50 is"
        " statistics.median",
        f"  errors    answers other than 202, and transport errors (timeout {REQUEST_TIMEOUT:g} s"
        " per request); target 0",
        "  sender    CPU of this benchmark process (senders + client) during the run, % of one"
        " core (time.process_time); Python runs it on one core",
        "  server    CPU of the server process during the run (utime+stime from /proc, all"
        " threads), % of one core; for Nimbus this includes",
        "            its SQLite threads and its delivery worker",
        "  proc/s    Nimbus: deliveries its worker finished processing during the run, per"
        " second = (pending at the start + 202s - backlog) / elapsed;"
        " 'all': the largest backlog and drain",
        "  backlog   Nimbus: stored deliveries its worker had not yet processed when the run"
        " ended; drain s: how long it then took to process them.",
        "            The next run starts only after that (so the backlog never competes with the"
        " ceiling); warm-up backlogs are drained before a run too",
        "  nimbus/ceiling  pooled Nimbus req/s / pooled ceiling req/s at that concurrency,"
        " per client",
    ]
    primary = args.clients[0]
    targets = [f"  (measured with the {primary} client)"]
    for level, pair in pairs[primary].items():
        verdict = "OK" if pair.ratio >= TARGET_RATIO else "MISSED"
        targets.append(
            f"  {verdict:<6} conc {level:>3}: Nimbus throughput {pair.ratio:.2f} x the ceiling's"
            f" (target >= {TARGET_RATIO:g})"
        )
    if TARGET_P99_LEVEL in pairs[primary]:
        pair = pairs[primary][TARGET_P99_LEVEL]
        p99 = pair.p99(pair.nimbus)
        verdict = "OK" if p99 < TARGET_P99_MS else "MISSED"
        targets.append(
            f"  {verdict:<6} conc {TARGET_P99_LEVEL:>3}: Nimbus p99 {p99:.1f} ms"
            f" (target < {TARGET_P99_MS:g} ms; the ceiling's p99 there:"
            f" {pair.p99(pair.ceiling):.1f} ms)"
        )
    else:
        targets.append(f"  SKIPPED p99 target: no run at {TARGET_P99_LEVEL} concurrent senders")
    measured_errors = sum(
        v for r in runs for k, v in r.errors.items() if not k.startswith("(warm-up)")
    )
    all_errors = sum(sum(r.errors.values()) for r in runs)
    verdict = "OK" if all_errors == 0 else "MISSED"
    targets.append(
        f"  {verdict:<6} errors: {measured_errors} in the measured runs,"
        f" {all_errors - measured_errors} in warm-ups, all clients (target 0)"
    )
    for r in runs:
        for text, count in r.errors.most_common(3):
            targets.append(
                f"           {r.server} #{r.index} {r.client} conc {r.level}: {count} x {text}"
            )
    stored, answered = check["rows"], check["accepted"]
    verdict = "OK" if stored == answered else "MISSED"
    targets.append(
        f"  {verdict:<6} no lost deliveries: {stored} rows in webhook_deliveries, {answered}"
        " deliveries answered 202 by Nimbus (warm-ups and all clients included)"
    )
    for r in runs:
        if r.stored is not None and r.stored != r.accepted + r.warmup_accepted:
            targets.append(
                f"           nimbus #{r.index} {r.client} conc {r.level}: {r.stored} rows added"
                f" for {r.accepted + r.warmup_accepted} answers 202"
            )
    return lines, targets, pairs


# ---------------------------------------------------------------------------------------------
# Main


async def run(args: argparse.Namespace, root: Path, body: bytes) -> tuple[list[str], int]:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    data_dir = root / "nimbus-data"
    data_dir.mkdir()
    nimbus_env = {
        **clean_env,
        "NIMBUS_DATA_DIR": str(data_dir),
        "NIMBUS_GITHUB_WEBHOOK_SECRET": SECRET,
        "NIMBUS_LOG_LEVEL": "warning",
    }
    server_cpus, sender_cpus = cpu_plan(args.pin)
    if sender_cpus is not None:
        # Before any thread or subprocess starts: the threads asyncio starts later inherit it.
        os.sched_setaffinity(0, sender_cpus)
    servers: dict[str, Server] = {}
    runs: list[Run] = []
    peak: dict[str, float] = {}
    started = time.perf_counter()
    try:
        progress("starting the ceiling and nimbus serve")
        servers["ceiling"] = await start_server(
            "ceiling", [sys.executable, "-c", CEILING_SOURCE], clean_env, root, server_cpus
        )
        servers["nimbus"] = await start_server(
            "nimbus", nimbus_argv(), nimbus_env, root, server_cpus
        )
        servers["nimbus"].db_path = data_dir / "nimbus.db"
        print(
            f"servers: ceiling pid {servers['ceiling'].pid} at {servers['ceiling'].url};"
            f" nimbus pid {servers['nimbus'].pid} at {servers['nimbus'].url}"
            f" ({' '.join(Path(a).name if i == 0 else a for i, a in enumerate(nimbus_argv()))})"
        )
        sys.stdout.flush()

        # One pass at one level: each client against the ceiling, then Nimbus.
        per_pass = len(args.clients) * 2 * (args.warmup + args.seconds + 1.0)
        drain_estimate = 0.0
        for i, level in enumerate(args.levels):
            for index in range(1, args.passes + 1):
                if index > 1:
                    # Another pass only when it and the first passes still to come fit the budget.
                    left = len(args.levels) - i - 1
                    need = (1 + left) * (per_pass + len(args.clients) * drain_estimate)
                    if time.perf_counter() - started + need > args.budget:
                        progress(f"conc {level}: no run #{index}, it would exceed the budget")
                        break
                for kind in args.clients:
                    for name in ("ceiling", "nimbus"):
                        progress(
                            f"conc {level}: {name} #{index}, {kind} client, {args.seconds:g} s"
                        )
                        result = await measure(servers[name], kind, level, index, body, args, peak)
                        runs.append(result)
                        if result.drain is not None:
                            drain_estimate = max(drain_estimate, result.drain)
                        rps = result.requests / result.elapsed
                        progress(
                            f"  {result.requests} requests, {rps:.0f} req/s,"
                            f" p99 {ms(pct(result.latencies, 99))} ms,"
                            f" {sum(result.errors.values())} errors"
                        )
    finally:
        codes = {}
        for name, server in servers.items():
            codes[name] = await stop_server(server)
    progress("servers stopped; counting the stored deliveries")
    nimbus = servers["nimbus"]
    assert nimbus.db_path is not None
    rows, pending, failed = db_counts(nimbus.db_path)
    accepted = sum(r.accepted + r.warmup_accepted for r in runs if r.server == "nimbus")
    lines, targets, pairs = report(runs, args, {"rows": rows, "accepted": accepted})
    notes = ["", "Notes:"]
    if sender_cpus is None:
        notes += [
            "  - The senders run in this process on the same machine: their CPU (the 'sender'"
            f" column) is taken from the {os.cpu_count()} cores the servers may use. With the raw"
            " client that is small: giving",
            "    the senders a core of their own changed neither server's figures measurably at"
            " 50 senders (confining Nimbus to the other core did: see --pin split).",
        ]
    else:
        assert server_cpus is not None
        notes += [
            f"  - The servers may use only CPU {fmt_cpus(server_cpus)} and the senders only"
            f" CPU {fmt_cpus(sender_cpus)}. Confined to one core, Nimbus's event loop and its",
            "    SQLite thread hand work to each other more cheaply than across cores: its"
            " figures are better than a deployment on several cores would see.",
        ]
    notes += [
        "  - Nimbus's delivery worker runs in the server process while the deliveries come in:"
        " it leases stored deliveries in batches (a write",
        "    transaction each), registers the delivery's installation and repository (written"
        " once, then known), routes it to the issue_comment",
        "    handler, which does nothing much here (no GitHub App credentials, no /nimbus"
        " command in the comment), and marks it processed",
        "    with the next lease. Receiving comes first: while deliveries keep arriving, each"
        " one processed waits up to 10 ms for a pause,",
        "    so under a flood the worker falls behind and catches up once it ends (the"
        " 'backlog' and 'drain s' columns).",
        f"  - After the run: {rows} rows, {pending} still unprocessed when Nimbus stopped,"
        f" {failed} processed with an error; exit codes after SIGTERM:"
        f" {', '.join(f'{k} {v}' for k, v in codes.items())} (-15: uvicorn shut down gracefully,"
        " then re-raised the signal)",
    ]
    unprepared = sum(r.unprepared for r in runs)
    if unprepared:
        notes.append(
            f"  - {unprepared} deliveries were made inside the timed windows because the"
            " prepared ones ran out (their making is in the latency)"
        )
    for level in args.levels:
        mine = [r for r in runs if r.level == level and r.server == "nimbus"]
        if mine:
            both = combined(mine)
            came = both.accepted / both.elapsed
            done = (both.processed or 0) / both.elapsed
            notes.append(
                f"  - conc {level}: deliveries were stored at {came:.0f}/s and processed by the"
                f" worker at {done:.0f}/s during the runs; the largest backlog left"
                f" ({both.backlog}) took {both.drain or 0:.1f} s to process once the senders"
                " stopped"
            )
    primary = args.clients[0]
    if TARGET_P99_LEVEL in pairs[primary]:
        pair = pairs[primary][TARGET_P99_LEVEL]
        rps = pair.rps(pair.ceiling)
        notes.append(
            f"  - The senders are a closed loop: mean latency = senders / throughput (Little's"
            f" law). At {TARGET_P99_LEVEL} senders the ceiling's {rps:.0f} req/s alone means"
            f" {TARGET_P99_LEVEL / rps * 1000:.0f} ms on average, so the p99 target is mostly a"
            " throughput target."
        )
    for kind in args.clients[1:]:
        notes.append(f"  - The {kind} client in the same run, for comparison (not a target):")
        for level, pair in pairs[kind].items():
            ours = pairs[primary].get(level)
            versus = ""
            if ours is not None:
                versus = (
                    f"; {primary}: {ours.rps(ours.ceiling):.0f} / {ours.rps(ours.nimbus):.0f}"
                    f" req/s, p99 {ours.p99(ours.ceiling):.1f} / {ours.p99(ours.nimbus):.1f} ms"
                )
            notes.append(
                f"      conc {level:>3}: ceiling / nimbus {pair.rps(pair.ceiling):.0f} /"
                f" {pair.rps(pair.nimbus):.0f} req/s, p99 {pair.p99(pair.ceiling):.1f} /"
                f" {pair.p99(pair.nimbus):.1f} ms, ratio {pair.ratio:.2f}{versus}"
            )
    for name, server in servers.items():
        errs = server.stderr_lines()
        if errs:
            notes.append(f"  - {name} wrote {len(errs)} line(s) to stderr; the first ones:")
            notes += [f"      {line[:200]}" for line in errs[:5]]
        else:
            notes.append(f"  - {name} wrote nothing to stderr (log level warning)")
    missed = sum(1 for t in targets if t.lstrip().startswith("MISSED"))
    out = [*lines, *notes, "", "Targets:", *targets]
    return out, missed


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--levels",
        help="comma-separated numbers of concurrent senders (default 1,50,200; quick 1,50)",
    )
    parser.add_argument(
        "--seconds", type=float, help="measured seconds per run (default 10, quick 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 2 s per run, levels 1 and 50"
    )
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each run (default 1, quick 0.5)"
    )
    parser.add_argument(
        "--client",
        choices=[*CLIENTS, "both"],
        default="raw",
        help="raw: HTTP/1.1 on asyncio streams (default); httpx: the httpx2.AsyncClient sender;"
        " both: raw then httpx in each pass, the targets judged on raw",
    )
    parser.add_argument(
        "--pin",
        choices=["none", "split"],
        default="none",
        help="none: no CPU affinity (default); split: the servers on all CPUs but the last,"
        " the senders on the last",
    )
    parser.add_argument(
        "--passes",
        type=int,
        default=2,
        help="runs per server and level, alternating, as the budget allows (default 2)",
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=165.0,
        help="seconds the measuring may take; a second pass is skipped beyond it (default 165)",
    )
    parser.add_argument(
        "--drain-cap",
        type=float,
        default=30.0,
        help="seconds to wait at most for Nimbus's worker to process its backlog (default 30)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    text = args.levels or ("1,50" if args.quick else "1,50,200")
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 10.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    args.clients = list(CLIENTS) if args.client == "both" else [args.client]
    try:
        args.levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        parser.error(f"--levels must be comma-separated whole numbers, got {text!r}")
    if not args.levels or any(n < 1 for n in args.levels):
        parser.error("--levels must be whole numbers of at least 1")
    if args.seconds <= 0 or args.warmup <= 0 or args.passes < 1:
        parser.error("--seconds and --warmup must be positive, --passes at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not PAYLOAD.is_file():
        print(f"BENCHMARK FAILED: no example payload at {PAYLOAD}", file=sys.stderr)
        return 1
    body = app_delivery(PAYLOAD.read_bytes())
    root = Path(tempfile.mkdtemp(prefix="nimbus-webhook-bench-"))
    started = time.perf_counter()
    try:
        print("Nimbus webhook ingest benchmark")
        print(f"command: {' '.join([sys.executable, *sys.argv])}")
        for line in machine_info(args):
            print(line)
        print(
            f"payload: {PAYLOAD.relative_to(SHARED.parent)} with an `installation` added, as"
            f" an App's deliveries carry ({len(body)} bytes);"
            f" {EVENT} event; per delivery a fresh X-GitHub-Delivery (uuid4) and the"
            " X-Hub-Signature-256 (HMAC-SHA256) of the body"
        )
        print(
            f"levels: {', '.join(map(str, args.levels))} concurrent senders; {args.seconds:g} s"
            f" per run after a {args.warmup:g} s warm-up; up to {args.passes} runs per server,"
            " client and level, alternating ceiling/nimbus"
        )
        sys.stdout.flush()
        lines, missed = asyncio.run(run(args, root, body))
        print()
        print("\n".join(lines))
        print()
        print(
            f"{'All targets hold' if not missed else f'{missed} target(s) MISSED'};"
            f" total benchmark time: {time.perf_counter() - started:.1f} s"
        )
        return 0
    except BenchError as exc:
        return give_up(exc)
    finally:
        leave_scratch(root, args.keep)


if __name__ == "__main__":
    sys.exit(main())
