"""``KeepAlive``: an event sent to a streaming client while its upstream is silent (Anthropic's ``ping``).

One timer a stream, checked every ``interval`` seconds against the time of the upstream's last batch; a
ping is sent only when that is ``interval`` or more ago. The relay itself awaits the upstream's batches
directly: no task and no wait with a timeout for each batch (a translated stream's events arrive one or a
few at a time, and that machinery cost more than the batch's own translation).

A ping is sent from a task of its own, as whole messages the relay's are, so the two never cut each other's
events; ``stop`` waits for a ping on its way before the relay sends its last message.
"""

from __future__ import annotations

import asyncio
import contextlib

from anygate.api.http import Send


class KeepAlive:
    """Sends ``event`` through ``send`` each ``interval`` seconds of the upstream's silence, from its start
    until ``stop``; ``heard`` says the upstream sent something."""

    __slots__ = ("_loop", "_send", "_event", "_interval", "_last", "_timer", "_ping")

    def __init__(self, send: Send, event: bytes, interval: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._send = send
        self._event = event
        self._interval = interval
        self._last = self._loop.time()
        self._ping: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_at(self._last + interval, self._check)

    def heard(self) -> None:
        self._last = self._loop.time()

    def _check(self) -> None:
        now = self._loop.time()
        due = self._last + self._interval
        if now >= due:
            if self._ping is None:
                self._ping = asyncio.ensure_future(self._send_ping())
            due = now + self._interval  # pinged (or a ping is on its way): the next one an interval on
        self._timer = self._loop.call_at(due, self._check)

    async def _send_ping(self) -> None:
        try:
            # A failed ping changes nothing (the relay's own next send meets the same client), and is never
            # left for the loop to report as an exception nobody retrieved.
            with contextlib.suppress(Exception):
                await self._send({"type": "http.response.body", "body": self._event, "more_body": True})
        finally:
            self._ping = None

    async def stop(self) -> None:
        """No ping after this returns: the relay may send its last message."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ping = self._ping
        if ping is None:
            return
        try:
            await asyncio.shield(ping)  # a ping waiting for the client to read (flow control) goes out first
        except asyncio.CancelledError:
            ping.cancel()  # cancelled while waiting: the ping never goes out, after the last message or not
            raise
