"""The worker: claims runnable tasks from the store and drives them through their phases."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.errors import NimbusError
from bot.models import NewEvent, Repo, Task
from phases import cleanup, cloning, fixing, implementing, indexing, planning, reviewing, verifying
from phases.context import LeaseLost, PhaseRun, Services, Step
from phases.machine import (
    WORKING,
    Outcome,
    Phase,
    Trigger,
    advance,
    end_phase,
)
from phases.phase_events import error_event, phase_event

log = logging.getLogger("nimbus.worker")

PhaseFn = Callable[[PhaseRun], Awaitable[Step]]
# How often a running phase looks for a cancel made by another process.
_CHECK_SECONDS = 2.0

RUNNERS: dict[Phase, PhaseFn] = {
    Phase.CLONING: cloning.run,
    Phase.INDEXING: indexing.run,
    Phase.PLANNING: planning.run,
    Phase.IMPLEMENTING: implementing.run,
    Phase.VERIFYING: verifying.run,
    Phase.FIXING: fixing.run,
    Phase.REVIEWING: reviewing.run,
    Phase.CLEANUP: cleanup.run,
}


class _Stop(Exception):
    """Why a running phase was interrupted from outside."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Worker:
    """Runs at most `max_concurrent_tasks` tasks at once, each under a renewed lease."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.name = self.settings.worker_name
        self._running: dict[str, asyncio.Task[None]] = {}
        # The repository of each running task, read once per claim.
        self._repos: dict[str, Repo] = {}
        self._loop: asyncio.Task[None] | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        # Leases this worker held before a restart: nothing of ours is running any more.
        released = await self.services.store.release_leases(self.name)
        if released:
            log.info("took back %d task(s) left running before a restart", released)
        self._loop = asyncio.create_task(self._claim_loop(), name="nimbus-worker")

    async def stop(self) -> None:
        """Stop claiming, interrupt running phases, and hand their tasks back to the queue."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        jobs = list(self._running.values())
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        await self.services.store.release_leases(self.name)

    async def _claim_loop(self) -> None:
        activity = self.services.events.activity
        while True:
            activity.clear()
            try:
                await self._claim_available()
            except Exception:
                log.exception("claiming tasks failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(activity.wait(), self.settings.poll_seconds)

    async def _claim_available(self) -> None:
        while len(self._running) < self.settings.max_concurrent_tasks:
            now = time.time()
            task = await self.services.store.claim_task(
                self.name, now + self.settings.lease_seconds, now
            )
            if task is None:
                return
            if task.id in self._running:
                # Our own lease ran out while a phase was still at work here, and the claim
                # renewed it: that run goes on; a second one would share its clone.
                log.warning("task %s: its lease ran out while it ran here; renewed", task.id)
                continue
            job = asyncio.create_task(self._drive(task), name=f"nimbus-{task.id}")
            self._running[task.id] = job

    async def _drive(self, task: Task) -> None:
        try:
            repo = await self.services.store.get_repo(task.repo_id)
            if repo is None:
                await self._fail(task, f"{task.phase}: the task's repository is gone")
                return
            self._repos[task.id] = repo
            current: Task | None = task
            while current is not None and current.phase in WORKING:
                current = await self._run_phase(current)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task %s: the worker failed", task.id)
            # Never leave it to be claimed and fail the same way forever: end it, saying why.
            with contextlib.suppress(Exception):
                latest = await self.services.store.get_task(task.id)
                if latest is not None and latest.lease_owner == self.name:
                    await self._fail(latest, f"{latest.phase}: {_internal(exc)}")
        finally:
            self._running.pop(task.id, None)
            self._repos.pop(task.id, None)
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release(task.id))
            self.services.events.activity.set()

    async def _release(self, task_id: str) -> None:
        await self.services.store.update_task(
            task_id,
            expect={"lease_owner": self.name},
            changes={"lease_owner": None, "lease_expires": None},
        )

    async def _run_phase(self, task: Task) -> Task | None:
        """Run the task's phase once and persist where it leads; None when the lease is lost."""
        if task.phase == Phase.QUEUED:
            return await self._apply(task, Step(Trigger.START))
        if task.cancel_requested and task.phase != Phase.CLEANUP:
            return await self._to_cleanup(task, None)
        ctx = PhaseRun(
            task=task, repo=self._repos[task.id], services=self.services, worker=self.name
        )
        job = asyncio.create_task(RUNNERS[task.phase](ctx))
        try:
            step = await self._supervise(task, job)
        except _Stop as stop:
            if stop.reason == "lost":
                return None
            latest = await self.services.store.get_task(task.id)
            return await self._to_cleanup(latest or task, None, ctx.meter.as_dict())
        except LeaseLost:
            return None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = str(exc) if isinstance(exc, NimbusError) else _internal(exc)
            if not isinstance(exc, NimbusError):
                log.exception("task %s: %s failed unexpectedly", task.id, task.phase)
            error = f"{task.phase}: {message}"
            if task.phase == Phase.CLEANUP:
                return await self._fail(task, error)
            return await self._to_cleanup(task, error, ctx.meter.as_dict())
        return await self._apply(task, step)

    async def _supervise(self, task: Task, job: asyncio.Task[Step]) -> Step:
        """Await the phase, renewing the lease and stopping it on a cancel or a lost lease."""
        # Renewed once a third of the lease has passed since it was last extended (by a claim, a
        # renewal or any step forward: phases short and many must not let it lapse), and
        # checked often enough for that.
        lease = self.settings.lease_seconds
        renew_every = lease / 3
        check_every = min(_CHECK_SECONDS, renew_every / 2)
        try:
            while not job.done():
                news = asyncio.create_task(
                    self.services.events.wait(task.id, check_every, changes_only=True)
                )
                await asyncio.wait({job, news}, return_when=asyncio.FIRST_COMPLETED)
                news.cancel()
                if job.done():
                    break
                latest = await self.services.store.get_task(task.id)
                left = (latest.lease_expires or 0.0) - time.time() if latest else 0.0
                if latest is not None and left < lease - renew_every:
                    latest = await self.services.store.renew_lease(
                        task.id, self.name, time.time() + lease
                    )
                if latest is None or latest.lease_owner != self.name:
                    raise _Stop("lost")
                if latest.cancel_requested and task.phase != Phase.CLEANUP:
                    raise _Stop("cancelled")
            return job.result()
        finally:
            if not job.done():
                job.cancel()
                with contextlib.suppress(BaseException):
                    await job

    async def _persist(
        self, task: Task, changes: dict[str, Any], events: list[NewEvent]
    ) -> Task | None:
        if "lease_owner" not in changes:
            # Every step forward renews the lease it was taken under.
            changes = {**changes, "lease_expires": time.time() + self.settings.lease_seconds}
        updated = await self.services.events.change(
            task.id,
            expect={"lease_owner": self.name, "phase": task.phase},
            changes=changes,
            events=events,
        )
        if updated is not None:
            await self._notify(updated)
        return updated

    async def _notify(self, task: Task) -> None:
        repo = self._repos.get(task.id)
        if repo is None:
            return
        try:
            await self.services.forges.for_repo(repo).notify(task)
        except Exception:
            log.exception("task %s: telling the forge failed", task.id)

    async def _apply(self, task: Task, step: Step) -> Task | None:
        events = self.services.events
        if task.phase == Phase.CLEANUP:
            final = end_phase(task.outcome)
            finished = [phase_event(events, final, task.outcome)]
            if final == Phase.DONE:
                finished.append(events.event("done", pr_url=step.changes.get("pr_url")))
            else:
                finished.append(error_event(events, task.error, task.outcome))
            return await self._persist(
                task,
                {
                    **step.changes,
                    "phase": final,
                    "approval": None,
                    "lease_owner": None,
                    "lease_expires": None,
                },
                [*step.events, *finished],
            )
        move = advance(task.machine_state, step.trigger, auto_approve=task.auto_approve)
        outcome = move.outcome or task.outcome
        changes: dict[str, Any] = {**step.changes, "phase": move.to.phase, "approval": move.to.gate}
        if move.outcome:
            changes["outcome"] = move.outcome
        if move.to.gate is not None:
            # Nobody works on a task at a gate: free the lease for whoever resumes it.
            changes.update(lease_owner=None, lease_expires=None)
        phase = phase_event(events, move.to.phase, outcome, move.to.gate)
        return await self._persist(task, changes, [*step.events, phase])

    async def _to_cleanup(
        self, task: Task, error: str | None, usage: dict[str, int] | None = None
    ) -> Task | None:
        """Leave the current phase for CLEANUP: failed with `error`, or as cancelled."""
        changes: dict[str, Any] = {"phase": Phase.CLEANUP, "approval": None}
        if usage is not None:
            # What the interrupted phase's agent spent still counts.
            changes["usage"] = usage
        outcome = task.outcome
        if error is not None and outcome != Outcome.CANCELLED:
            outcome = Outcome.FAILED
            changes.update(outcome=outcome, error=error)
        return await self._persist(
            task, changes, [phase_event(self.services.events, Phase.CLEANUP, outcome)]
        )

    async def _fail(self, task: Task, error: str) -> Task | None:
        outcome = Outcome.CANCELLED if task.outcome == Outcome.CANCELLED else Outcome.FAILED
        changes: dict[str, Any] = {
            "phase": Phase.FAILED,
            "approval": None,
            "outcome": outcome,
            "lease_owner": None,
            "lease_expires": None,
        }
        if outcome == Outcome.FAILED or not task.error:
            changes["error"] = error
        events = self.services.events
        return await self._persist(
            task,
            changes,
            [phase_event(events, Phase.FAILED, outcome), error_event(events, error, outcome)],
        )


def _internal(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__}: {exc}); see the server log"
