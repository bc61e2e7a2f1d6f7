"""Which API a request speaks, as the edge needs to know it: its path without a legacy prefix, and the shape
its errors are answered in.

- ``/openai/v1/...`` and ``/anthropic/v1/...`` (the prefixes of the provider-scoped gateways clients were
  pointed at before) are the same routes as ``/v1/...``.
- Errors are answered in the OpenAI shape ``{"error": {...}}``, except for requests in the Anthropic Messages
  API: ``/v1/messages`` and ``/v1/messages/count_tokens`` (under any prefix), everything under ``/anthropic/``,
  and the model list asked with ``anthropic-version`` (Claude Code's). Those get Anthropic's shape
  ``{"type": "error", "error": {"type", "message"}}`` with the same status, so that the Anthropic SDK raises
  its own exception classes. The choice is made only when there is an error to answer.
"""

from __future__ import annotations

import orjson

from anygate.api.http import JSON_HEADERS, Scope, Send, header, send_bytes, send_error
from anygate.errors import GatewayError, UpstreamStatusError
from anygate.wire.anthropic_errors import anthropic_error_for_upstream, anthropic_error_from

LEGACY_PREFIXES = ("/openai/v1/", "/anthropic/v1/")
ANTHROPIC_PREFIX = "/anthropic/"
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
ANTHROPIC_PATHS = frozenset({MESSAGES_PATH, COUNT_TOKENS_PATH})
MODELS_PATH = "/v1/models"


def unprefixed(path: str) -> str:
    """``/openai/v1/chat/completions`` and ``/anthropic/v1/messages`` as ``/v1/...``; other paths as they are."""
    for prefix in LEGACY_PREFIXES:
        if path.startswith(prefix):
            return path[len(prefix) - len("/v1/") :]
    return path


def without_legacy_prefix(scope: Scope) -> Scope:
    """The scope of a request under a legacy prefix, as the same request to ``/v1/...``."""
    path = unprefixed(scope["path"])
    return {**scope, "path": path, "raw_path": path.encode()}


def speaks_anthropic(scope: Scope) -> bool:
    """Whether the request is in the Anthropic API (its errors then have Anthropic's shape)."""
    original: str = scope["path"]
    path = unprefixed(original)
    if path in ANTHROPIC_PATHS or original.startswith(ANTHROPIC_PREFIX):
        return True
    return path.startswith(MODELS_PATH) and header(scope, b"anthropic-version") is not None


async def send_error_in_dialect(scope: Scope, send: Send, error: GatewayError) -> None:
    """The error answer in the shape of the request's API (its status and headers the same either way)."""
    if not speaks_anthropic(scope):
        await send_error(send, error)
        return
    status, body = anthropic_answer(error)
    headers = [*JSON_HEADERS, *((k.encode(), v.encode()) for k, v in error.headers.items())]
    await send_bytes(send, status, body, headers)


def anthropic_answer(error: GatewayError) -> tuple[int, bytes]:
    """(status, body) of an error in Anthropic's shape. An upstream's own error is passed on when it is well
    formed and safe (``UpstreamStatusError`` keeps it only then): as it is when it already has Anthropic's
    shape (an upstream that speaks the Messages API), else its message in Anthropic's shape."""
    if isinstance(error, UpstreamStatusError) and error.upstream_body is not None:
        if is_anthropic_error_body(error.upstream_body) and 400 <= error.status <= 599:
            return error.status, error.upstream_body
        return anthropic_error_for_upstream(error.status, error.upstream_body)
    return anthropic_error_from(error)


def is_anthropic_error_body(body: bytes) -> bool:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(parsed, dict) and parsed.get("type") == "error" and isinstance(parsed.get("error"), dict)
