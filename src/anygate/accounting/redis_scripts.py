"""Lua scripts asked for in one turn of the event loop, sent to Redis together.

A request on the Redis limiter makes one round trip to reserve (one script for all of its buckets) and
one to settle (a script a bucket). Under load several requests ask in the same turn of the loop, and a
round trip costs the gateway mostly for itself (a connection taken from the pool, the pipeline, one write,
one read, ~100 µs of CPU in redis-py): ``ScriptRunner`` sends everything asked for in a turn as one
pipeline and hands each caller its own answers, as if it had sent its own. A Redis that has lost its
scripts (restarted) is given them again, and the calls that found none run once more.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

log = logging.getLogger("anygate.accounting")

Call = tuple[list[str], list[Any]]  # a script's keys and arguments
Orphaned = Callable[[list[Any]], None]  # told the answers of a caller that left once its calls had gone out
Asked = tuple[AsyncScript, Sequence[Call], "asyncio.Future[list[Any]]", Orphaned | None]


class ScriptRunner:
    """Runs scripts for many callers, a turn's worth in one pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._asked: list[Asked] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def run(self, script: AsyncScript, calls: Sequence[Call], orphaned: Orphaned | None = None) -> list[Any]:
        """``script``'s answer to each call, in order, a script's error as its exception (the others ran).
        Raises when Redis could not be asked (then none of them is known to have run). A caller cancelled
        before its calls go out asks nothing; one cancelled after has its answers given to ``orphaned``."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[list[Any]] = loop.create_future()
        if not self._asked:
            loop.call_soon(self._send_asked)  # once every caller ready in this turn has asked
        self._asked.append((script, calls, answered, orphaned))
        try:
            return await answered
        except asyncio.CancelledError:
            # Cancelled in the turn its answers came: they are this caller's to give up, not lost.
            if orphaned is not None and answered.done() and not answered.cancelled() and not answered.exception():
                orphaned(answered.result())
            raise

    def start(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` in the background, kept until done (``wait_sent`` waits for it too)."""
        task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def wait_sent(self) -> None:
        """Until every pipeline under way has been answered (before the client is closed)."""
        if self._asked:
            await asyncio.sleep(0)  # they are sent at the end of this turn
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _send_asked(self) -> None:
        asked, self._asked = self._asked, []
        live = [entry for entry in asked if not entry[2].done()]  # a caller cancelled meanwhile asks nothing
        if live:
            self.start(self._send(live))  # in a context of its own, not the first caller's

    async def _send(self, asked: list[Asked]) -> None:
        flat = [(script, call) for script, calls, _, _ in asked for call in calls]
        try:
            answers = await self._evaluate(flat)
        except asyncio.CancelledError:  # the gateway stopping: so are its callers
            for _, _, answered, _ in asked:
                answered.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - Redis unreachable, or anything else: every caller hears it
            for _, _, answered, _ in asked:
                if not answered.done():
                    answered.set_exception(exc)
            return
        start = 0
        for _, calls, answered, orphaned in asked:
            mine = answers[start : start + len(calls)]
            start += len(calls)
            if not answered.done():
                answered.set_result(mine)
            elif orphaned is not None:
                try:
                    orphaned(mine)
                except Exception:  # the other callers still get their answers
                    log.exception("a cancelled caller's answers could not be handled")

    async def _evaluate(self, flat: list[tuple[AsyncScript, Call]]) -> list[Any]:
        answers = await self._pipeline(flat)
        missing = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
        if missing:  # none of those ran; the others did, and keep their answers whatever happens now
            try:
                for script in {id(flat[n][0]): flat[n][0] for n in missing}.values():
                    await self._redis.script_load(script.script)
                again = await self._pipeline([flat[n] for n in missing])
            except Exception as exc:  # noqa: BLE001 - the calls that found no script failed with it
                again = [exc] * len(missing)
            for n, answer in zip(missing, again, strict=True):
                answers[n] = answer
        return answers

    async def _pipeline(self, flat: list[tuple[AsyncScript, Call]]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, (keys, args) in flat:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            answers: list[Any] = await pipe.execute(raise_on_error=False)
        return answers
