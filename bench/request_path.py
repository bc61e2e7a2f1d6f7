"""anygate's own CPU per request, in-process: the admin key against a budgeted key, JSON, streams and a
coding agent's ~190 KB request.

Drives the ASGI app directly, as ``tracing_overhead.py`` does (no server, no sockets, an in-memory
upstream answering at once), so that a change to the request path shows as a few microseconds, with far
less noise than ``bench/run`` on a shared machine: what uvicorn, aiohttp and the kernel cost is left out,
and what anygate's own code costs (the edge, routing, the accounting, the ledger's thread) is all in.
The budgeted key is ``bench/run``'s: a daily hard budget of tokens and USD, and rpm, tpm and concurrency
limits, made with ``POST /v1/keys``. CPU is the process's (every thread) over each round; the best round
of each case is the figure to compare. Run it from a checkout:

    .venv/bin/python bench/request_path.py [--requests 4000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from anygate.app import create_app
from anygate.settings import Settings
from anygate.transport import Headers, OutgoingRequest

from load import agent_conversation
from tracing_overhead import ANSWER, KEY, FixedResponse, FixedTransport, http_scope

BUDGETED_KEY = {
    "alias": "bench",
    "budget": {"tokens": 10_000_000_000, "usd": 1_000_000, "period": "daily", "mode": "hard"},
    "limits": {"rpm": 100_000_000, "tpm": 100_000_000_000, "concurrency": 10_000},
}
EVENTS = (
    b"".join(
        b"data: " + orjson.dumps(chunk) + b"\n\n"
        for chunk in (
            {"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "ok"}}]},
            {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": orjson.loads(ANSWER)["usage"]},
        )
    )
    + b"data: [DONE]\n\n"
)
AGENT_REQUESTS = 400  # a round of agent-sized requests: each costs ten times a small one


class StreamResponse(FixedResponse):
    headers = Headers([(b"content-type", b"text/event-stream")])

    ended = False  # set once the one chunk is handed out, as a network response's

    async def chunks(self) -> AsyncIterator[bytes]:
        self.ended = True
        yield EVENTS


class AnsweringTransport(FixedTransport):
    """``FixedTransport``, with a stream for a request that asks for one."""

    async def send(self, request: OutgoingRequest) -> Any:
        if request.body and b'"stream":true' in request.body:
            return StreamResponse()
        return await super().send(request)


def settings(data_dir: Path) -> Settings:
    return Settings.model_validate(
        {
            "admin_key": KEY,
            "data_dir": data_dir,
            "providers": [{"id": "up", "base_url": "http://upstream.bench/v1", "api_key": "k", "max_retries": 0}],
            "prices": {"up/m": {"input": 1.0, "output": 2.0}},
            "routing": {"health_check_interval": 0},
        }
    )


async def call(app: Any, key: str, path: str, body: bytes) -> tuple[int, bytes]:
    scope = http_scope(path, key)
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        if not messages:
            await asyncio.sleep(3600)  # the client stays until the answer is whole
        return messages.pop()

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"]


async def measure(requests: int, rounds: int) -> dict[str, float]:
    """The best round's CPU microseconds per request of each case."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(settings(Path(folder)), AnsweringTransport())  # type: ignore[arg-type]
        await app.startup()
        try:
            status, made = await call(app, KEY, "/v1/keys", orjson.dumps(BUDGETED_KEY))
            if status != 201:
                raise RuntimeError(f"POST /v1/keys answered {status}: {made[:200]!r}")
            keys = {"admin": KEY, "budgeted": orjson.loads(made)["key"]}
            best: dict[str, float] = {}
            for mode in ("json", "stream"):
                body = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}], "stream": mode == "stream"}
                for name, key in keys.items():
                    best[f"{name} {mode}"] = await best_round(app, key, orjson.dumps(body), requests, rounds)
            agent = orjson.dumps(agent_conversation("up/m"))  # the same conversation every time, as a turn resent
            for name, key in keys.items():
                best[f"{name} agent"] = await best_round(app, key, agent, AGENT_REQUESTS, rounds)
            return best
        finally:
            await app.shutdown()


async def best_round(app: Any, key: str, body: bytes, requests: int, rounds: int) -> float:
    for _ in range(500):  # warm-up: caches filled, the vocabulary loaded, code paths taken once
        status, answer = await call(app, key, "/v1/chat/completions", body)
        if status != 200:
            raise RuntimeError(f"the request was answered {status}: {answer[:200]!r}")
    figures = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            await call(app, key, "/v1/chat/completions", body)
        figures.append((time.process_time() - started) / requests * 1e6)
    return min(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    best = asyncio.run(measure(arguments.requests, arguments.rounds))
    for case, figure in best.items():
        requests = AGENT_REQUESTS if case.endswith("agent") else arguments.requests
        print(f"{case:16} {figure:7.1f} us CPU/request (best of {arguments.rounds} rounds of {requests})")
    for mode in ("json", "stream", "agent"):
        print(f"budgets and limits, {mode:6} {best[f'budgeted {mode}'] - best[f'admin {mode}']:7.1f} us/request")


if __name__ == "__main__":
    main()
