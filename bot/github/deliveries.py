"""The GitHub layer's worker: stored deliveries, leased one at a time, routed to their handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterator

from gidgethub import routing, sansio

from bot.github import installations, issues, pulls
from bot.github.client import GitHubApp
from bot.github.context import GitHubContext
from phases.context import Services

log = logging.getLogger("nimbus.github")

ROUTER = routing.Router(installations.router, issues.router, pulls.router)
# Deliveries leased at once when there is a backlog (a lone delivery is taken on its own).
BATCH = 16
LINGER = 0.02  # seconds between batches while deliveries keep coming
# While deliveries are being received, each one processed first waits this long at most for a
# moment when none is: answering comes first, since GitHub gives a delivery 10 s to be answered
# and does not send it again on its own, where a stored one only waits its turn. Under a flood
# the worker still processes one delivery per this interval, and the rest once it is over.
GIVE_WAY = 0.01


class DeliveryWorker:
    """Processes stored deliveries; a crash after the 202 loses nothing, it is leased again."""

    def __init__(self, services: Services, app: GitHubApp | None) -> None:
        self.services = services
        self.context = GitHubContext(services, app)
        self.name = f"{services.settings.worker_name}:github"
        self._loop: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        # Processed (with the error, if any) or handed back, not yet written to the store.
        self._finished: list[tuple[str, str | None]] = []
        self._released: list[str] = []
        self.give_way = GIVE_WAY
        self._arriving = 0  # deliveries being received now
        self._quiet = asyncio.Event()
        self._quiet.set()

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """Around the receipt of a delivery: processing waits for it (up to `give_way`)."""
        self._arriving += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._arriving -= 1
            if not self._arriving:
                self._quiet.set()

    async def _give_way(self) -> None:
        if self._arriving:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), self.give_way)

    async def start(self) -> None:
        # What this worker was processing when it stopped is taken again at once.
        await self.services.store.release_deliveries(self.name)
        self._loop = asyncio.create_task(self._run(), name="nimbus-github")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._finished:
            # Processed, not yet marked: marked now, so that a restart does not take them again.
            with contextlib.suppress(Exception):
                await self._take(limit=0)

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                while taken := await self.process_batch():
                    if taken < BATCH:
                        # Let deliveries gather: one batch then serves many, where a burst
                        # taken one at a time would cost a database round trip each.
                        await asyncio.sleep(LINGER)
            except Exception:
                log.exception("processing GitHub deliveries failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.services.settings.poll_seconds)

    async def _take(self, limit: int) -> list[tuple[str, str, bytes]]:
        now = time.time()
        taken = await self.services.store.take_deliveries(
            self.name,
            now + self.services.settings.lease_seconds,
            now,
            finished=self._finished,
            released=self._released,
            limit=limit,
        )
        # Only once stored: if the call failed, the next one marks them.
        self._finished, self._released = [], []
        return taken

    async def process_batch(self) -> int:
        """Process the oldest pending deliveries, up to a batch; how many were taken.

        The deliveries processed are marked in the same transaction that leases the next
        batch: one database hand-over per batch rather than two per delivery.
        """
        await self._give_way()
        started = time.time()
        batch = await self._take(BATCH)
        # A delivery whose lease is about to end is handed back instead of processed: another
        # worker may take it once the lease is over, and it must not be processed twice.
        deadline = started + self.services.settings.lease_seconds * 0.75
        for n, (delivery_id, event_name, payload) in enumerate(batch):
            if time.time() > deadline:
                self._released += [item[0] for item in batch[n:]]
                break
            if n:
                await self._give_way()
            error = await self._process(delivery_id, event_name, payload)
            self._finished.append((delivery_id, error))
        return len(batch)

    async def _process(self, delivery_id: str, event_name: str, payload: bytes) -> str | None:
        """Route one delivery to its handlers; the error that stopped it, if one did."""
        try:
            event = sansio.Event(json.loads(payload), event=event_name, delivery_id=delivery_id)
            await self.handle(event)
        except Exception as exc:
            log.exception("delivery %s (%s) failed", delivery_id, event_name)
            return f"{type(exc).__name__}: {exc}"
        return None

    async def handle(self, event: sansio.Event) -> None:
        installation = event.data.get("installation") if isinstance(event.data, dict) else None
        if installation and "id" in installation:
            # Nimbus may have been installed, or given a repository, while it was down.
            await self.context.install(installation)
            repository = event.data.get("repository")
            if repository and "full_name" in repository:
                await self.context.register(int(installation["id"]), repository)
        await ROUTER.dispatch(event, self.context)
