"""The ceiling of a Python proxy: uvicorn (uvloop + httptools) and one pooled aiohttp session.

Forwards every request to the upstream and streams the answer back chunk by chunk; no auth,
no parsing, no accounting. Usage: passthrough.py --upstream http://127.0.0.1:8081 --port 9000
"""

from __future__ import annotations

import argparse
from typing import Any

import aiohttp
import uvicorn

Scope = dict[str, Any]


class Passthrough:
    """A bare ASGI app; its one aiohttp session lives from lifespan startup to shutdown."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.forward(scope, receive, send)

    async def lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(connector=connector)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.session.close()
        await send({"type": "lifespan.shutdown.complete"})

    async def forward(self, scope: Scope, receive: Any, send: Any) -> None:
        assert self.session is not None, "lifespan startup has not run"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {"content-type": "application/json"}
        url = self.upstream + scope["path"]
        async with self.session.request(scope["method"], url, data=body, headers=headers) as resp:
            content_type = resp.headers.get("content-type", "application/octet-stream").encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": [(b"content-type", content_type)],
                }
            )
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="upstream origin, e.g. http://127.0.0.1:8081")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        Passthrough(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
