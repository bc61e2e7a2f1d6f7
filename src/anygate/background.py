"""Owned background work: every task a process runs besides its requests, started, watched and stopped here.

No bare ``create_task`` whose failure nobody sees: a task that fails is logged with its name, and
``stop()`` cancels whatever is left and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("anygate.background")


class Background:
    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"Background({sorted(t.get_name() for t in self._tasks)})"

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coroutine`` as owned work: its failure is logged, and ``stop()`` cancels it."""
        return self.adopt(asyncio.create_task(coroutine, name=name))

    def adopt(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Own a task started elsewhere, as ``spawn`` owns its own."""
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"fields": {"task": task.get_name()}})

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
