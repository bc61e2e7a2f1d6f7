"""A paced SSE upstream for the slow-streams row: each answer is a stream of chat chunks, one every
`--interval` seconds, then usage and `[DONE]`, so that many streams stay open at once.

nginx cannot pace a stream, so this is a small asyncio server speaking just enough HTTP/1.1: it reads
a request (headers and a Content-Length body), answers `GET /v1/models`, and streams any POST with
chunked transfer encoding, keeping the connection alive. It runs on the load core, beside wrk.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from upstream import CREATED, MODEL

MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}).encode()


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    body = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL}
    return b"data: " + json.dumps({**body, "choices": [choice]}, separators=(",", ":")).encode() + b"\n\n"


def stream_events(words: int) -> list[bytes]:
    usage = {"prompt_tokens": 8, "completion_tokens": words, "total_tokens": 8 + words}
    body = {"id": "chatcmpl-slow", "object": "chat.completion.chunk", "created": CREATED, "model": MODEL}
    last = b"data: " + json.dumps({**body, "choices": [], "usage": usage}, separators=(",", ":")).encode() + b"\n\n"
    words_events = [_event({"content": f" word{i}"}) for i in range(words)]
    return [_event({"role": "assistant", "content": ""}), *words_events, _event({}, "stop"), last + b"data: [DONE]\n\n"]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """The method and path of the next request, its body read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return method, path


async def serve_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, events: list[bytes], interval: float
) -> None:
    try:
        while True:
            try:
                request = await _read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if request is None:
                return
            method = request[0]
            if method == "GET":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(MODELS)
                )
                writer.write(MODELS)
                continue
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for index, event in enumerate(events):
                if index:
                    await asyncio.sleep(interval)
                writer.write(_chunk(event))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
    except ConnectionError:
        return
    finally:
        writer.close()


async def main(port: int, interval: float, words: int) -> None:
    events = stream_events(words)
    server = await asyncio.start_server(
        lambda r, w: serve_connection(r, w, events, interval), "127.0.0.1", port, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--words", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.interval, args.words))
