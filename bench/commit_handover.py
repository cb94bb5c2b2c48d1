"""What storing a delivery costs the event loop: the hand-over to the database thread, measured.

One process, one event loop, one temporary database. Each figure is N sequential calls, so that
it is the latency a lone sender sees (bench/webhook_ingest.py at 1 sender), not a throughput:

  hop          `run_in_executor` of a no-op on a one-thread pool: two thread wake-ups, nothing else
  stored       `SqliteStore.record_delivery`: the group commit on the deliveries' own thread, as
               `POST /github/webhooks` stores a delivery before it answers 202
  on the loop  the same transaction (`bot.store.deliveries._insert`, BEGIN IMMEDIATE ... COMMIT)
               run on the event loop's thread itself, taking turns with the store's writers and
               yielding between calls as a server would: what Nimbus does not do
  held         of 'on the loop', the commit alone: how long the loop could do nothing else, which
               is why Nimbus does not (a WAL write can stall behind the disk or a checkpoint)

The rounds alternate (hop, stored, on the loop, and again) so that drift hits all three.

    /tmp/venv/bin/python bench/commit_handover.py            # 3,000 calls per round, 2 rounds
    /tmp/venv/bin/python bench/commit_handover.py --calls 500 --rounds 1
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from bench.common import cpu_model, leave_scratch  # noqa: E402
from bot.store.checkpoint import connect  # noqa: E402
from bot.store.deliveries import _insert  # noqa: E402  (the transaction itself, to run inline)
from bot.store.sqlite import SqliteStore  # noqa: E402

PAYLOAD = (
    Path(__file__).resolve().parents[2]
    / "shared/github/webhooks/payload-examples/api.github.com/issue_comment/created.payload.json"
)


async def timed(call: Callable[[], Awaitable[object]], calls: int) -> list[float]:
    """Microseconds each of `calls` sequential awaits took."""
    spent = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        spent.append((time.perf_counter() - started) * 1e6)
    return spent


async def measure(root: Path, calls: int, rounds: int) -> dict[str, list[float]]:
    payload = PAYLOAD.read_bytes() if PAYLOAD.is_file() else b"{}" * 7_000
    store = SqliteStore(root / "nimbus.db")
    await store.open()
    pool = ThreadPoolExecutor(1)
    inline = connect(root / "nimbus.db", busy_timeout_ms=10_000)
    loop = asyncio.get_running_loop()

    async def hop() -> None:
        await loop.run_in_executor(pool, int)

    async def stored() -> None:
        await store.record_delivery(str(uuid.uuid4()), "issue_comment", payload)

    async def on_the_loop() -> None:
        # Taking turns with the store's writers and its checkpointer, as they all do.
        async with store._write_lock:
            started = time.perf_counter()
            inline.execute("BEGIN IMMEDIATE")
            _insert(inline, [(str(uuid.uuid4()), "issue_comment", payload)])
            inline.execute("COMMIT")
            held.append((time.perf_counter() - started) * 1e6)
        store._checkpointer.written()
        # A server reads the next request in between: the checkpointer gets its turns.
        await asyncio.sleep(0)

    held: list[float] = []  # how long each commit on the loop kept it from anything else
    figures: dict[str, list[float]] = {"hop": [], "stored": [], "on the loop": [], "held": held}
    try:
        await timed(stored, 200)  # warm-up: the file, the page cache, the threads
        for _ in range(rounds):
            figures["hop"] += await timed(hop, calls)
            figures["stored"] += await timed(stored, calls)
            figures["on the loop"] += await timed(on_the_loop, calls)
    finally:
        inline.close()
        pool.shutdown()
        await store.close()
    return figures


def report(figures: dict[str, list[float]]) -> list[str]:
    lines = [f"{'':12} {'calls':>6} {'p50 µs':>8} {'mean µs':>8} {'p99 µs':>8} {'max µs':>8}"]
    for name, spent in figures.items():
        p99 = statistics.quantiles(spent, n=100, method="inclusive")[98]
        lines.append(
            f"{name:12} {len(spent):>6} {statistics.median(spent):>8.0f}"
            f" {statistics.fmean(spent):>8.0f} {p99:>8.0f} {max(spent):>8.0f}"
        )
    stored, inline = (statistics.median(figures[k]) for k in ("stored", "on the loop"))
    lines += [
        "",
        f"stored / on the loop (p50): {stored / inline:.2f}x; the difference, {stored - inline:.0f}"
        f" µs, is what the hand-over adds to each delivery a lone sender waits for",
        "held: of 'on the loop', the commit alone, during which the event loop can do nothing"
        " else (no request, no WebSocket)",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=3_000, help="calls per round (3,000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (2)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    if args.calls < 100 or args.rounds < 1:
        parser.error("--calls must be at least 100 and --rounds at least 1")
    root = Path(tempfile.mkdtemp(prefix="nimbus-handover-bench-"))
    try:
        print("Nimbus commit hand-over benchmark")
        print(f"machine: {cpu_model()}; sqlite {sqlite3.sqlite_version}; payload {PAYLOAD.name}")
        print("\n".join(report(asyncio.run(measure(root, args.calls, args.rounds)))))
    finally:
        leave_scratch(root, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
