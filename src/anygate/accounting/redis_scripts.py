"""Lua scripts asked for in one turn of the event loop, sent to Redis together.

A request on the Redis limiter makes one round trip to reserve (one script for all of its buckets) and
one to settle (a script a bucket). Under load several requests ask in the same turn of the loop, and a
round trip costs the gateway mostly for itself (a connection taken from the pool, the pipeline, one write,
one read, ~100 µs of CPU in redis-py): ``ScriptRunner`` sends everything asked for in a turn as one
pipeline and hands each caller its own answers, as if it had sent its own. A Redis that has lost its
scripts (restarted) is given them again, and the calls that found none run once more.

The pipeline is written by this module, not by redis-py's ``Pipeline``: a request's scripts carry some fifty
arguments, and redis-py packs each in Python through its encoder (~14% of the gateway's CPU on the Redis
limiter, py-spy), takes a connection through its blocking pool (a condition, a timeout, observability
events) and wraps the exchange in its retry machinery. Here the commands are packed in one pass, on
connections the runner keeps for itself, and each answer is read by redis-py's parser (hiredis). Nothing is
retried by the client: a pipeline sent twice could settle a request twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("anygate.accounting")

Call = tuple[list[str], list[Any]]  # a script's keys and arguments
Orphaned = Callable[[list[Any]], None]  # told the answers of a caller that left once its calls had gone out
Asked = tuple[AsyncScript, Sequence[Call], "asyncio.Future[list[Any]]", Orphaned | None]

IDLE_CONNECTIONS = 16  # kept open between pipelines; more are opened while as many are under way at once
MOST_CONNECTIONS = 64  # under way at once: past that (a Redis that stalls), an exchange waits for one
CONNECTION_WAIT = 10.0  # seconds an exchange waits for a connection, then fails as Redis unavailable


class ScriptRunner:
    """Runs scripts for many callers, a turn's worth in one pipeline."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._asked: list[Asked] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._idle: list[AbstractConnection] = []  # the runner's own connections, between pipelines
        self._open = asyncio.Semaphore(MOST_CONNECTIONS)
        self._closed = False  # closed: a late exchange (a give-back, a retried settlement) keeps no connection

    async def run(self, script: AsyncScript, calls: Sequence[Call], orphaned: Orphaned | None = None) -> list[Any]:
        """``script``'s answer to each call, in order, a script's error as its exception (the others ran).
        An answer lost with the connection is that failure (``RedisConnectionError``): the call went out,
        and may or may not have run. Raises when Redis could not be asked (then none of them is known to
        have run). A caller cancelled before its calls go out asks nothing; one cancelled after has its
        answers given to ``orphaned``."""
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
        """Until every pipeline under way has been answered (before the client is closed), those that the
        answers start (a cancelled caller's give-back) too."""
        while self._asked or self._sending:
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
                await self._load({id(flat[n][0]): flat[n][0] for n in missing}.values())
                again = await self._pipeline([flat[n] for n in missing])
            except Exception as exc:  # noqa: BLE001 - the calls that found no script failed with it
                again = [exc] * len(missing)
            for n, answer in zip(missing, again, strict=True):
                answers[n] = answer
        return answers

    async def _pipeline(self, flat: list[tuple[AsyncScript, Call]]) -> list[Any]:
        """Each script's answer, a script's error as its exception."""
        return await self._exchange([("EVALSHA", script.sha, len(keys), *keys, *args) for script, (keys, args) in flat])

    async def _load(self, scripts: Iterable[AsyncScript]) -> None:
        """Give Redis these scripts again (on the runner's own connections, as the calls that need them)."""
        for answer in await self._exchange([("SCRIPT", "LOAD", script.script) for script in scripts]):
            if isinstance(answer, Exception):
                raise answer

    async def _exchange(self, commands: Sequence[Sequence[object]]) -> list[Any]:
        """The commands written at once, and each one's answer read (its error as its exception; a failure
        once the connection was open is the answer of each command whose answer it lost: written in part,
        or read in part, each may have run). Raises when no connection could be opened (nothing went out)."""
        if self._open.locked():  # as many exchanges under way as connections may be open
            try:
                async with asyncio.timeout(CONNECTION_WAIT):
                    await self._open.acquire()
            except TimeoutError:
                raise RedisConnectionError(f"no connection to Redis free within {CONNECTION_WAIT:g} s") from None
        else:
            await self._open.acquire()
        try:
            return await self._exchange_on(self._idle.pop() if self._idle else self._connection(), commands)
        finally:
            self._open.release()

    async def _exchange_on(self, connection: AbstractConnection, commands: Sequence[Sequence[object]]) -> list[Any]:
        packed = commands_bytes(commands)
        connected = False  # else the write connects first: failing there, nothing went out
        try:
            await ready(connection)
            connected = connection.is_connected
            await connection.send_packed_command(packed, check_health=False)
        except BaseException as failure:
            await self._failed(connection)
            if connected and isinstance(failure, Exception):  # written in part, or not: each may have run
                return [failure] * len(commands)
            raise
        answers: list[Any] = []
        wait = connection.socket_timeout  # for all of the answers: one timer, not one an answer
        try:
            async with asyncio.timeout(wait):
                for _ in commands:
                    try:
                        answer = await connection.read_response(timeout=math.inf)
                    except ResponseError as error:  # this command's own: the connection goes on
                        answer = error
                    if answer is None:  # redis-py's answer to a socket that timed out: none of ours is nil
                        raise RedisConnectionError("the connection to Redis timed out")
                    answers.append(answer)
        except BaseException as failure:
            await self._failed(connection)
            if not isinstance(failure, Exception):  # cancelled: the gateway stopping
                raise
            if isinstance(failure, TimeoutError):
                failure = RedisTimeoutError(f"Redis did not answer within {wait:g} s")
            return answers + [failure] * (len(commands) - len(answers))  # what was read stands
        if self._closed or len(self._idle) >= IDLE_CONNECTIONS:
            await connection.disconnect(nowait=True)
        else:
            self._idle.append(connection)
        return answers

    async def _failed(self, connection: AbstractConnection) -> None:
        """A connection that failed is closed (what it still had to read could answer the next exchange), and
        the idle ones with it: a reset, or a Redis gone, has closed them too, and each would fail a turn."""
        await connection.disconnect(nowait=True)
        await self._close_idle(wait=False)

    async def _close_idle(self, wait: bool) -> None:
        """``wait``: until each connection has closed (at close); else without waiting for it."""
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.disconnect(nowait=not wait)

    def _connection(self) -> AbstractConnection:
        """A new connection, as the client's pool would make one (connected when first used)."""
        pool = self._redis.connection_pool
        connection: AbstractConnection = pool.connection_class(**pool.connection_kwargs)
        return connection

    async def close(self) -> None:
        """Once every pipeline under way is answered: the runner's connections closed."""
        await self.wait_sent()
        self._closed = True
        await self._close_idle(wait=True)


async def ready(connection: AbstractConnection) -> None:
    """With nothing left to read: an idle connection the server has closed (a Redis that restarted) or that
    holds a stray answer is closed, and opened afresh by the command sent on it, as redis-py's pool does."""
    if connection.is_connected and await connection.can_read():
        await connection.disconnect()


def commands_bytes(commands: Sequence[Sequence[object]]) -> bytes:
    """Commands in Redis's protocol (RESP), each an array of bulk strings, packed in one pass: text in UTF-8,
    a whole number in decimal (anything else is refused, not guessed: the scripts' amounts are given as
    ``repr`` of a float). Some fifty words a request: the types are told apart inline."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for word in command:
            if isinstance(word, str):
                data = word.encode()
            elif isinstance(word, int) and not isinstance(word, bool):
                data = b"%d" % word
            elif isinstance(word, bytes):
                data = word
            else:
                raise TypeError(f"a Redis command's word must be text, bytes or an int, not {type(word).__name__}")
            parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
