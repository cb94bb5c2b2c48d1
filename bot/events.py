"""Task events: the single way anything about a task is recorded and announced."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.models import Event, NewEvent, Task
from bot.redact import Redactor
from bot.store import Store

log = logging.getLogger("nimbus.events")


# Task fields shown through the API, comments and PR bodies.
_SHOWN = ("error", "plan", "review", "verification", "feedback")


class TaskEvents:
    """Stores events (redacted) with the task changes they describe, and wakes their listeners."""

    def __init__(self, store: Store, redactor: Redactor) -> None:
        self.store = store
        self.redactor = redactor
        # One signal per task that somebody waits on; set and dropped when the task has news:
        # any event for followers, a change of the task itself for the worker running it.
        self._signals: dict[str, asyncio.Event] = {}
        self._changes: dict[str, asyncio.Event] = {}
        # Set on every change, so the worker looks for runnable tasks at once instead of polling.
        self.activity = asyncio.Event()

    def event(self, event_type: str, **fields: Any) -> NewEvent:
        """Build an event; every string in it is redacted here."""
        return NewEvent(event_type, self.redactor.value(fields))

    async def log(self, task_id: str, message: str) -> None:
        """Record a line a person following the task wants to read."""
        await self.emit(task_id, self.event("log", message=message))

    async def emit(self, task_id: str, *events: NewEvent) -> list[Event]:
        stored = await self.store.append_events(task_id, events)
        await self._announce(task_id, runnable=False)
        return stored

    async def create(self, task: Task, events: Sequence[NewEvent]) -> Task:
        created = await self.store.create_task(task, events)
        await self._announce(task.id)
        return created

    async def change(
        self,
        task_id: str,
        *,
        expect: Mapping[str, Any],
        changes: Mapping[str, Any],
        events: Sequence[NewEvent] = (),
    ) -> Task | None:
        """Persist task changes and their events in one transaction if `expect` still holds."""
        # What people read of a task (its error, plan, review, test output) is masked like its
        # events: a repository or an agent may print a secret into any of them.
        masked = {k: self.redactor.value(changes[k]) for k in _SHOWN if changes.get(k)}
        if masked:
            changes = {**changes, **masked}
        task = await self.store.update_task(task_id, expect=expect, changes=changes, events=events)
        if task is not None:
            await self._announce(task_id)
        return task

    async def _announce(self, task_id: str, *, runnable: bool = True) -> None:
        # Log lines change nothing a worker could claim or act on; task changes may.
        waiting = [self._signals]
        if runnable:
            self.activity.set()
            waiting.append(self._changes)
        for signals in waiting:
            signal = signals.pop(task_id, None)
            if signal is not None:
                signal.set()

    async def wait(self, task_id: str, timeout: float, *, changes_only: bool = False) -> None:
        """Return when the task has news in this process, or after `timeout` (other processes)."""
        signals = self._changes if changes_only else self._signals
        signal = signals.setdefault(task_id, asyncio.Event())
        try:
            await asyncio.wait_for(signal.wait(), timeout)
        except TimeoutError:
            pass
