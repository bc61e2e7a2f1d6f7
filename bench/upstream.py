"""The fixed upstream: nginx answering a chat completion and an SSE stream from memory.

Two loopback ports, one per answer, so nginx never has to read the request body to decide.
Both serve `GET /v1/models`; anything but the two known paths is a 404, which makes a
misrouted gateway fail its probe instead of being measured.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MODEL = "bench-model"
CREATED = 1_700_000_000
STREAM_WORDS = ("Hello", " from", " the", " bench", " upstream", "!")


@dataclass(frozen=True)
class Upstream:
    """Where the running nginx answers; `base` URLs end in `/v1` like an OpenAI base URL."""

    json_port: int
    sse_port: int
    slow_port: int = 0  # the paced SSE upstream (slow_upstream.py), 0 when none runs

    @property
    def slow_base(self) -> str:
        return f"http://127.0.0.1:{self.slow_port}/v1"

    @property
    def json_base(self) -> str:
        return f"http://127.0.0.1:{self.json_port}/v1"

    @property
    def sse_base(self) -> str:
        return f"http://127.0.0.1:{self.sse_port}/v1"

    def base_for(self, is_stream: bool) -> str:
        return self.sse_base if is_stream else self.json_base


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def completion_body() -> str:
    """A complete, non-streamed chat completion as OpenAI returns it."""
    return _compact(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(STREAM_WORDS)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14},
        }
    )


def _chunk(delta: dict[str, str], finish_reason: str | None) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def stream_body() -> str:
    """An SSE stream: a role chunk, one chunk per word, a stop chunk, a usage chunk, [DONE]."""
    chunks: list[dict[str, object]] = [_chunk({"role": "assistant", "content": ""}, None)]
    chunks += [_chunk({"content": word}, None) for word in STREAM_WORDS]
    chunks.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 8, "completion_tokens": 6, "total_tokens": 14}
    chunks.append({**_chunk({}, None), "choices": [], "usage": usage})
    events = [f"data: {_compact(chunk)}\n\n" for chunk in chunks]
    return "".join(events) + "data: [DONE]\n\n"


def models_body() -> str:
    entry = {"id": MODEL, "object": "model", "created": CREATED, "owned_by": "bench"}
    return _compact({"object": "list", "data": [entry]})


def _quoted(text: str) -> str:
    """An nginx single-quoted string; no `$` allowed, since nginx would expand it as a variable."""
    if "$" in text:
        raise ValueError("nginx would expand '$' in a return body")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _server(port: int, content_type: str, body: str) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /v1/models {{
            default_type application/json;
            return 200 {_quoted(models_body())};
        }}
        location = /v1/chat/completions {{
            default_type {content_type};
            return 200 {_quoted(body)};
        }}
        location / {{
            return 404;
        }}
    }}"""


def nginx_config(upstream: Upstream, workdir: Path) -> str:
    """A self-contained nginx.conf: one worker, no access log, everything under `workdir`."""
    temp_paths = "\n".join(
        f"    {name}_temp_path {workdir / name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "nginx-error.log"} warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
{temp_paths}
{_server(upstream.json_port, "application/json", completion_body())}
{_server(upstream.sse_port, "text/event-stream", stream_body())}
}}
"""
