"""Rewrite a request's ``model`` in its raw JSON bytes, leaving every other byte as the client sent it."""

from __future__ import annotations

import re
from typing import Any

import orjson

MODEL_MEMBER = re.compile(rb'"model"\s*:\s*("(?:[^"\\]|\\.)*")')
# A letter or ``_`` written as ``\u00XX``: no serializer does that, but a key so written names a member too.
# A quote or a backslash so written (``\u0022``, ``\u005c``) hides nothing from a byte search of this body,
# but a body encoded again (``add_members``) writes them ``\"`` and ``\\``: a key ``\u0022model`` would then
# read ``\"model"``, one ``"model"`` more than was counted.
_ESCAPED_NAME_CHARACTER = re.compile(rb"\\u00(?:[46][0-9a-fA-F]|[57][0-9afAF]|22|5[cC])")


def spells_names_plainly(body: bytes) -> bool:
    """Whether no letter (nor ``_``), quote or backslash of ``body`` is written as a ``\\u00XX`` escape: a
    member's name is then spelt only as itself (``"model"``), a byte search finds every member so named,
    and the body encoded again names them as often. Other escapes (non-ASCII text) change nothing: none of
    them spells a letter, a quote or a backslash. (The expression alone: a byte search for ``\\u00`` first
    takes longer than it does, ~98 against ~58 µs on a coding agent's 184 KB, as a four-byte needle skips
    at most five bytes a step.)"""
    return _ESCAPED_NAME_CHARACTER.search(body) is None


def replace_model(body: bytes, payload: dict[str, Any], model: str, *, sole: bool = False) -> bytes:
    """``body`` with its top-level ``model`` string replaced by ``model``.

    A ``"model": "..."`` member may also stand inside nested objects (metadata, tool schemas), so each
    candidate is checked: the rewritten body must parse to the payload with only ``model`` changed.
    When no candidate passes, the payload is re-encoded (same JSON, other spacing). ``sole``: the caller
    knows the body names ``model`` once, spelt plainly (``refuse_duplicate_members`` found it so): no search
    of an agent's 200 KB body for others, and no candidate to check.
    """
    replacement = orjson.dumps(model)
    if sole:
        # The top-level key is spelt ``"model"``, and a string holding those bytes would have escaped its
        # quotes: the one there is the key.
        match = MODEL_MEMBER.match(body, max(0, body.find(b'"model"')))
        if match is not None:
            return _with_value(body, match, replacement)
    candidates = [m for m in MODEL_MEMBER.finditer(body) if orjson.loads(m.group(1)) == payload.get("model")]
    if len(candidates) == 1 and spells_names_plainly(body):
        # Spelt plainly, the top-level key is among the members named ``model`` whose value is the payload's
        # model (a tool's ``model`` parameter has an object for its value): when only one is, it is that.
        return _with_value(body, candidates[0], replacement)
    wanted = {**payload, "model": model}
    for match in candidates:
        candidate = _with_value(body, match, replacement)
        if orjson.loads(candidate) == wanted:
            return candidate
    return orjson.dumps(wanted)


def _with_value(body: bytes, member: re.Match[bytes], value: bytes) -> bytes:
    """``body`` with the value ``member`` matched (``MODEL_MEMBER``'s group) replaced by ``value``."""
    return body[: member.start(1)] + value + body[member.end(1) :]


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
