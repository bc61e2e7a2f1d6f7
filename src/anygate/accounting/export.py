"""Per-generation telemetry export: one JSON record per request, to an HTTP endpoint and/or a file.

``Accounting.settle`` hands each request's facts (its ledger row and a few more) to ``Exporter.offer``,
which only appends them to each sink's bounded queue: the request path never waits for a sink, and a
sink that cannot keep up (or is down) drops what no longer fits and counts it. Each sink's queue is
drained by owned background work (``Exporter.run``):

- ``HttpSink`` POSTs batches (a JSON array of records) through the process's transport, with its own
  headers and proxy, retrying a failed batch with full-jitter backoff; a batch that still fails is
  counted and logged (never its headers), and the next one goes on;
- ``FileSink`` appends JSON lines to a file (in a thread: the event loop never waits for the disk).

A record holds the request's facts (``record``); the prompt and completion text only for the keys the
``export`` settings name (``include_text`` and ``text_keys``): the text of other requests is never kept
(``wants_text`` is asked when the request is reserved, so nothing is copied for them).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from anygate.accounting.ledger import UsageRow
from anygate.auth import Principal
from anygate.errors import GatewayError
from anygate.settings import ExportHttp, ExportSettings
from anygate.transport import OutgoingRequest, Proxy, Timeouts, Transport

log = logging.getLogger("anygate.export")

Outcome = Literal["sent", "dropped", "failed"]
# Counts records by sink and outcome (the metric ``anygate_export_records_total``).
Counter = Callable[[str, Outcome, int], None]
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
CLOSE_WAIT = 5.0  # at shutdown, seconds the last records may take to leave


class TextSource(Protocol):
    """Where a request's text is (its accounting ``Ticket``): read off the request path, when recorded."""

    @property
    def client_payload(self) -> dict[str, Any]: ...

    def generated_text(self) -> str: ...


class Generation(NamedTuple):
    """What settling a request knows of it: its ledger row, and what the row has no column for. ``text``:
    where its prompt and completion are, for a key whose records carry them, else None."""

    row: UsageRow
    key_alias: str
    requested_model: str | None
    stream: bool
    error: str | None
    text: TextSource | None = None


def record(generation: Generation) -> dict[str, Any]:
    """A generation as its exported JSON record."""
    row = generation.row
    started = row.created_at - row.latency_ms / 1000
    entry: dict[str, Any] = {
        "request_id": row.request_id,
        "time": datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "route": row.route,
        "key_id": row.key_id,
        "key_alias": generation.key_alias,
        "user_id": row.user_id,
        "provider": row.provider_id,
        "model": row.model,
        "requested_model": generation.requested_model,
        "status": row.status,
        "stream": generation.stream,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "cached_input_tokens": row.cached_input_tokens,
        "cache_write_tokens": row.cache_write_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "audio_tokens": row.audio_tokens,
        "image_tokens": row.image_tokens,
        "cost_usd": row.cost_usd,
        "cost_source": row.cost_source,
        "estimated": row.estimated,
        "byok": row.byok,
        "latency_ms": row.latency_ms,
        "ttft_ms": row.ttft_ms,
        "error": generation.error,
    }
    if generation.text is not None:
        entry["prompt"] = prompt_of(generation.text.client_payload)
        entry["completion"] = generation.text.generated_text()
    return entry


def prompt_of(payload: dict[str, Any]) -> Any:
    """A request's input as the client sent it: its ``messages``, else its ``prompt`` or ``input``."""
    for field in ("messages", "prompt", "input"):
        if field in payload:
            return payload[field]
    return None


class Sink(Protocol):
    name: str

    def offer(self, generation: Generation) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class Queue:
    """A bounded queue of generations: ``offer`` never waits; past ``size`` it drops and counts."""

    def __init__(self, name: str, size: int, batch_size: int, count: Counter) -> None:
        self.name = name
        self._items: deque[Generation] = deque()
        self._size = size
        self._batch_size = batch_size
        self._count = count
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, generation: Generation) -> None:
        if len(self._items) >= self._size:
            self._count(self.name, "dropped", 1)
            return
        self._items.append(generation)
        if len(self._items) >= self._batch_size:
            self._wake.set()

    def take(self, limit: int) -> list[Generation]:
        return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    async def wait(self, interval: float) -> None:
        """Until a batch is full, or ``interval`` seconds have passed."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=interval)
        except TimeoutError:
            pass
        self._wake.clear()


class HttpSink:
    """Batches of records POSTed as a JSON array, retried with backoff."""

    def __init__(
        self,
        config: ExportHttp,
        queue_size: int,
        transport: Transport,
        count: Counter,
        proxy: Proxy | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.name = "http"
        self.config = config
        self.queue = Queue("http", queue_size, config.batch_size, count)
        self._transport = transport
        self._count = count
        self._proxy = proxy
        self._sleep = sleep
        self._headers = {"Content-Type": "application/json", **config.headers}
        self._timeouts = Timeouts(config.timeout, config.timeout, config.timeout, config.timeout)

    def __repr__(self) -> str:
        return f"HttpSink(queued={len(self.queue)})"

    def offer(self, generation: Generation) -> None:
        self.queue.offer(generation)

    async def run(self) -> None:
        while True:
            await self.queue.wait(self.config.flush_interval)
            while len(self.queue):
                await self.send(self.queue.take(self.config.batch_size), self.config.max_retries)

    async def close(self) -> None:
        """The records still queued, each batch tried once, within ``CLOSE_WAIT`` seconds."""
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                while len(self.queue):
                    await self.send(self.queue.take(self.config.batch_size), retries=0)
        except TimeoutError:
            left = len(self.queue)
            self.queue.take(left)
            self._count(self.name, "failed", left)

    async def send(self, batch: list[Generation], retries: int) -> None:
        body = orjson.dumps([record(generation) for generation in batch])
        for attempt in range(retries + 1):
            problem = await self._post(body)
            if problem is None:
                self._count(self.name, "sent", len(batch))
                return
            if attempt < retries and problem.retryable:
                await self._sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)))
                continue
            log.warning("export batch failed", extra={"fields": {"records": len(batch), "error": problem.text}})
            self._count(self.name, "failed", len(batch))
            return

    async def _post(self, body: bytes) -> Problem | None:
        request = OutgoingRequest(
            "POST",
            self.config.url,
            self._headers,
            body,
            self._timeouts,
            self.config.allow_private_network,
            "Export sink",
            self._proxy,
        )
        try:
            response = await self._transport.send(request)
            await response.read()
            await response.aclose()
        except GatewayError as exc:
            return Problem(exc.message, retryable=True)
        if response.status < 300:
            return None
        retryable = response.status >= 500 or response.status in (408, 429)
        return Problem(f"HTTP {response.status}", retryable)


@dataclass(frozen=True, slots=True)
class Problem:
    text: str  # never a header or the URL: the sink's headers may hold its credentials
    retryable: bool


class FileSink:
    """JSON lines appended to a file."""

    def __init__(self, path: Path, queue_size: int, count: Counter, interval: float = 1.0) -> None:
        self.name = "file"
        self.path = path
        self.queue = Queue("file", queue_size, 1000, count)
        self._count = count
        self._interval = interval
        self._writing = asyncio.Lock()  # one append at a time: the last one at shutdown may meet the loop's

    def __repr__(self) -> str:
        return f"FileSink({self.path}, queued={len(self.queue)})"

    def offer(self, generation: Generation) -> None:
        self.queue.offer(generation)

    async def run(self) -> None:
        while True:
            await self.queue.wait(self._interval)
            await self.write()

    async def close(self) -> None:
        await self.write()

    async def write(self) -> None:
        async with self._writing:
            await self._write(self.queue.take(len(self.queue)))

    async def _write(self, batch: list[Generation]) -> None:
        if not batch:
            return
        lines = b"".join(orjson.dumps(record(generation)) + b"\n" for generation in batch)
        try:
            await asyncio.to_thread(append, self.path, lines)
        except OSError as exc:
            log.warning("export file write failed", extra={"fields": {"records": len(batch), "error": exc.strerror}})
            self._count(self.name, "failed", len(batch))
        else:
            self._count(self.name, "sent", len(batch))


def append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as file:
        file.write(data)


class Exporter:
    """The export's sinks, and which keys' records carry text."""

    def __init__(self, sinks: Iterable[Sink], text_keys: frozenset[str] = frozenset()) -> None:
        self.sinks = list(sinks)
        self._text_keys = text_keys

    def __repr__(self) -> str:
        return f"Exporter({self.sinks})"

    def wants_text(self, principal: Principal) -> bool:
        """Whether this caller's records carry the prompt and the completion (asked when it is reserved)."""
        keys = self._text_keys
        return bool(keys) and ("*" in keys or principal.key_id in keys or principal.label in keys)

    def offer(self, generation: Generation) -> None:
        for sink in self.sinks:
            sink.offer(generation)

    async def run(self) -> None:
        await asyncio.gather(*(sink.run() for sink in self.sinks))

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()


def build_exporter(
    settings: ExportSettings, transport: Transport, count: Counter, proxy: Proxy | None = None
) -> Exporter:
    """The exporter ``settings`` describe (``proxy``: the one the HTTP sink's URL goes through)."""
    sinks: list[Sink] = []
    if settings.http is not None:
        sinks.append(HttpSink(settings.http, settings.queue_size, transport, count, proxy))
    if settings.file is not None:
        sinks.append(FileSink(settings.file, settings.queue_size, count))
    text_keys = frozenset(settings.text_keys) if settings.include_text else frozenset()
    return Exporter(sinks, text_keys)
