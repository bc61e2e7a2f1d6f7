"""Rewrite a request's ``model`` in its raw JSON bytes, leaving every other byte as the client sent it."""

from __future__ import annotations

import re
from typing import Any

import orjson

MODEL_MEMBER = re.compile(rb'"model"\s*:\s*("(?:[^"\\]|\\.)*")')


def replace_model(body: bytes, payload: dict[str, Any], model: str) -> bytes:
    """``body`` with its top-level ``model`` string replaced by ``model``.

    A ``"model": "..."`` member may also stand inside nested objects (metadata, tool schemas), so each
    candidate is checked: the rewritten body must parse to the payload with only ``model`` changed.
    When no candidate passes, the payload is re-encoded (same JSON, other spacing).
    """
    replacement = orjson.dumps(model)
    if body.count(b'"model"') == 1 and b"\\u" not in body:
        # With no escape in the body, the top-level key is spelt ``"model"``, and a string holding those
        # bytes would have escaped its quotes: the one there is the key. Replace its value; no candidate
        # to check.
        match = MODEL_MEMBER.search(body)
        if match is not None:
            return body[: match.start(1)] + replacement + body[match.end(1) :]
    wanted = {**payload, "model": model}
    for match in MODEL_MEMBER.finditer(body):
        if orjson.loads(match.group(1)) != payload.get("model"):
            continue
        candidate = body[: match.start(1)] + replacement + body[match.end(1) :]
        if orjson.loads(candidate) == wanted:
            return candidate
    return orjson.dumps(wanted)


def add_members(body: bytes, payload: dict[str, Any], members: dict[str, Any]) -> bytes:
    """``body`` with new top-level members, written right after its opening brace.

    Every other byte stays as the client sent it. A member the payload already has is replaced, which
    needs the whole payload re-encoded (same JSON, other spacing).
    """
    if any(name in payload for name in members):
        return orjson.dumps({**payload, **members})
    start = body.find(b"{")
    encoded = orjson.dumps(members)[1:-1]  # '"a":1,"b":2'
    rest = body[start + 1 :]
    separator = b"" if rest.lstrip().startswith(b"}") else b","
    return body[: start + 1] + encoded + separator + rest
