"""The server protocol's own CPU per request, in-process: requests fed to ``data_received`` on one kept-alive
connection, an ASGI app answering at once, the answer written to a transport that keeps nothing.

What ``anygate serve``'s protocol (uvicorn's httptools protocol under ``protocol.py``: deadlines, header
limits, the head written with the body, one timer a connection) costs a request, with nothing else around
it. To compare revisions, run it against each one's sources (``PYTHONPATH=/tmp/base/src``).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import uvloop
from anygate.server import server_config
from anygate.settings import Settings
from uvicorn.server import ServerState

BODY = b'{"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer sk-bench\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
)
ANSWER = b'{"id":"bench","choices":[]}'
ANSWER_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(ANSWER))]


class DiscardingTransport(asyncio.Transport):
    """A client connection that takes every byte and never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def answer_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": ANSWER_HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


async def one_request(protocol: Any) -> None:
    protocol.data_received(REQUEST)
    await asyncio.sleep(0)  # the request's task runs
    await asyncio.sleep(0)  # and the turn after it (a held head's flush, the next request's start)


async def measure(requests: int, rounds: int) -> float:
    config = server_config(answer_at_once, Settings.model_validate({"providers": []}))
    config.load()
    protocol = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})  # type: ignore[call-arg]
    protocol.connection_made(DiscardingTransport())
    for _ in range(2000):  # warm-up
        await one_request(protocol)
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(requests):
            await one_request(protocol)
        best = min(best, (time.process_time() - started) / requests * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    arguments = parser.parse_args()
    best = uvloop.run(measure(arguments.requests, arguments.rounds))
    print(f"server protocol {best:6.2f} us CPU/request (best of {arguments.rounds} rounds of {arguments.requests})")


if __name__ == "__main__":
    main()
