"""What OpenTelemetry tracing costs on the request path: a micro-benchmark, in-process, no sockets.

Drives the ASGI app directly (no server, no network: an in-memory upstream answering a fixed chat
completion), so that what is measured is the gateway's own work per request, and prints the mean and
median microseconds per request with tracing off, and on (every request sampled; spans queued for a
collector that is never reached within the run). Run it from a checkout:

    .venv/bin/python bench/tracing_overhead.py [--requests 4000] [--rounds 5]

To compare with a revision from before tracing existed, run the same file against that revision's
sources (``git archive <rev> src | tar -x -C /tmp/base``, then ``PYTHONPATH=/tmp/base/src``): it
measures "off" only where the settings have no ``otel``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from anygate.app import create_app
from anygate.settings import Settings
from anygate.transport import Headers, OutgoingRequest

KEY = "sk-ag-bench-admin-key-0123456789"
CHAT = orjson.dumps({"model": "up/m", "messages": [{"role": "user", "content": "hi"}]})
ANSWER = orjson.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


class FixedResponse:
    status = 200
    headers = Headers([(b"content-type", b"application/json")])

    async def read(self) -> bytes:
        return ANSWER

    ended = False  # set once the one chunk is handed out, as a network response's

    async def chunks(self) -> AsyncIterator[bytes]:
        self.ended = True
        yield ANSWER

    def set_read_timeout(self, seconds: float) -> None:
        return None

    async def aclose(self) -> None:
        return None


class FixedTransport:
    """Every request answered at once: the model list, and one fixed chat completion."""

    async def send(self, request: OutgoingRequest) -> Any:
        if request.url.endswith("/models"):
            response = FixedResponse()
            response_body = orjson.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]})

            async def models() -> bytes:
                return response_body

            response.read = models  # type: ignore[method-assign]
            return response
        return FixedResponse()

    async def aclose(self) -> None:
        return None


def settings(data_dir: Path, traced: bool) -> Settings:
    values: dict[str, Any] = {
        "admin_key": KEY,
        "data_dir": data_dir,
        "providers": [{"id": "up", "base_url": "http://upstream.bench/v1", "api_key": "k", "max_retries": 0}],
        "routing": {"health_check_interval": 0},
    }
    if traced:
        # A collector nobody listens on, exported to only after the run: the spans' cost, not the export's.
        values["otel"] = {
            "enabled": True,
            "endpoint": "http://127.0.0.1:9/v1/traces",
            "schedule_delay": 3600,
            "max_queue_size": 1_000_000,
            "max_export_batch_size": 1_000_000,
            "timeout": 1,
        }
    return Settings.model_validate(values)


def http_scope(path: str, key: str) -> dict[str, Any]:
    """The ASGI scope of a JSON ``POST path`` made with ``key``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8080),
    }


async def one_request(app: Any) -> None:
    scope = http_scope("/v1/chat/completions", KEY)
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": CHAT, "more_body": False}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise RuntimeError(f"the request was answered {status}")


async def measure(traced: bool, requests: int, rounds: int) -> list[float]:
    """Microseconds per request, one figure per round."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(settings(Path(folder), traced), FixedTransport())  # type: ignore[arg-type]
        await app.startup()
        try:
            for _ in range(500):  # warm-up: caches filled, code paths taken once
                await one_request(app)
            figures = []
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(requests):
                    await one_request(app)
                figures.append((time.perf_counter() - started) / requests * 1e6)
            return figures
        finally:
            await app.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    cases = [("off", False)]
    if "otel" in Settings.model_fields:
        cases.append(("on", True))
    for name, traced in cases:
        figures = asyncio.run(measure(traced, arguments.requests, arguments.rounds))
        print(
            f"tracing {name:3}: {statistics.mean(figures):7.1f} us/request mean, "
            f"{statistics.median(figures):7.1f} median, best {min(figures):7.1f} ({arguments.rounds} rounds of "
            f"{arguments.requests})"
        )


if __name__ == "__main__":
    main()
