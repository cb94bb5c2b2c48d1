"""The GitHub layer's worker: stored deliveries, leased one at a time, routed to their handlers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from gidgethub import routing, sansio

from bot.github import installations, issues, pulls
from bot.github.client import GitHubApp
from bot.github.context import GitHubContext
from phases.context import Services

log = logging.getLogger("nimbus.github")

ROUTER = routing.Router(installations.router, issues.router, pulls.router)


class DeliveryWorker:
    """Processes stored deliveries; a crash after the 202 loses nothing, it is leased again."""

    def __init__(self, services: Services, app: GitHubApp | None) -> None:
        self.services = services
        self.context = GitHubContext(services, app)
        self.name = f"{services.settings.worker_name}:github"
        self._loop: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()

    async def start(self) -> None:
        # What this worker was processing when it stopped is taken again at once.
        await self.services.store.release_deliveries(self.name)
        self._loop = asyncio.create_task(self._run(), name="nimbus-github")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                while await self.process_one():
                    pass
            except Exception:
                log.exception("processing GitHub deliveries failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.services.settings.poll_seconds)

    async def process_one(self) -> bool:
        """Process the oldest pending delivery; False when there was none."""
        now = time.time()
        claimed = await self.services.store.claim_delivery(
            self.name, now + self.services.settings.lease_seconds, now
        )
        if claimed is None:
            return False
        delivery_id, event_name, payload = claimed
        error = None
        try:
            event = sansio.Event(json.loads(payload), event=event_name, delivery_id=delivery_id)
            await self.handle(event)
        except Exception as exc:
            log.exception("delivery %s (%s) failed", delivery_id, event_name)
            error = f"{type(exc).__name__}: {exc}"
        await self.services.store.finish_delivery(delivery_id, error)
        return True

    async def handle(self, event: sansio.Event) -> None:
        installation = event.data.get("installation") if isinstance(event.data, dict) else None
        if installation and "id" in installation:
            # Nimbus may have been installed, or given a repository, while it was down.
            await self.context.install(installation)
            repository = event.data.get("repository")
            if repository and "full_name" in repository:
                await self.context.register(int(installation["id"]), repository)
        await ROUTER.dispatch(event, self.context)
