"""Raw ASGI helpers for the hot routes: read a bounded body, answer with bytes."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from anygate.errors import BodyTooLarge, GatewayError, InvalidRequest
from anygate.wire.members import spells_names_plainly

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# On every response: a browser never guesses another content type than the one declared.
NOSNIFF = (b"x-content-type-options", b"nosniff")
JSON_HEADERS = [(b"content-type", b"application/json"), NOSNIFF]
# Where the edge leaves the authenticated caller for the management app's dependencies (``api/deps.py``).
PRINCIPAL_SCOPE_KEY = "anygate.principal"


class ClientDisconnected(Exception):
    """The client went away before its request body arrived."""


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnected
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body is larger than the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise InvalidRequest("Request body is empty; expected a JSON object")
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("Request body must be a JSON object", code="invalid_body")
    return parsed


# Top-level members the gateway acts on (routing, allowlists, budgets, estimates): an upstream whose JSON
# parser takes the first of two where anygate's takes the last would act on another value.
GUARDED_MEMBERS = frozenset(
    {"model", "stream", "stream_options", "n", "best_of", "max_tokens", "max_completion_tokens",
     "max_output_tokens", "messages"}
)  # fmt: skip
# Each guarded name written as a JSON string: strings cannot hold these bytes unescaped, so every match is
# a member's name, a string value equal to one, or the end of a string that ends in ``\"model`` (harmless:
# a name found twice only sends the body to the slower check).
_QUOTED_NAMES = {name: f'"{name}"'.encode() for name in GUARDED_MEMBERS}
# Bytes: a smaller body is searched once for each guarded member it has; a larger one (an agent's 100-500 KB
# conversation) once for all of them, by one expression, which costs what one search costs.
ONE_PASS_BODY = 4096


def refuse_duplicate_members(body: bytes, payload: dict[str, Any]) -> bool:
    """400 ``duplicate_member`` when a guarded member appears twice at the top level of the JSON body.

    Only a member the parsed body has at its top level can be there twice, so the check looks for the
    names of those written more than once anywhere (and for escaped letters, quotes and backslashes, which
    spell a name another way, or another way once encoded again: ``spells_names_plainly``); a body naming
    one twice anywhere is parsed again, keeping every member, to look at its top level.

    Returns whether the body names ``model`` once, spelt plainly: that one is its top-level member, and
    ``replace_model`` need not search the body again (``sole``)."""
    models = model_names(body, payload)
    if models is not None and spells_names_plainly(body):
        return models == 1
    name = duplicated_member(body)
    if name is not None:
        message = f"The request body has the member '{name}' more than once; send it once"
        raise InvalidRequest(message, param=name, code="duplicate_member")
    return False


def model_names(body: bytes, payload: dict[str, Any]) -> int | None:
    """How many times ``body`` names ``model`` (as a member or a string), if it has one at its top level;
    None when it names a guarded member of its top level more than once (twice there, or inside too: the
    body is then parsed again to tell)."""
    present = payload.keys() & _QUOTED_NAMES.keys()  # a set operation: no generator a request
    if len(body) < ONE_PASS_BODY:
        models = 0
        for member in present:
            count = body.count(_QUOTED_NAMES[member])
            if count > 1:
                return None
            if member == "model":
                models = count
        return models
    if not present:
        return 0
    # re keeps the expressions it compiled: one per set of members a body has, built once.
    names = re.compile(b'"(' + b"|".join(sorted(name.encode() for name in present)) + b')"')
    seen: set[bytes] = set()
    for match in names.finditer(body):  # stops at the first name found again: at most a match a member more
        if match.group(1) in seen:
            return None
        seen.add(match.group(1))
    return 1 if b"model" in seen else 0


def duplicated_member(body: bytes) -> str | None:
    """The first guarded member the body's top-level object has more than once, else None."""
    try:
        # Every object becomes its list of (name, value) pairs, duplicates kept.
        members = json.loads(body, object_pairs_hook=lambda pairs: pairs)
    except ValueError as exc:  # orjson took it: only a body stdlib json reads otherwise lands here
        raise InvalidRequest(f"Request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # orjson reads 1,024 levels deep, the standard library fewer
        raise InvalidRequest("Request body is nested too deeply", code="invalid_json") from None
    seen: set[str] = set()
    for name, _ in members if isinstance(members, list) else ():
        if name in GUARDED_MEMBERS:
            if name in seen:
                return str(name)
            seen.add(name)
    return None


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: GatewayError) -> None:
    headers = [*JSON_HEADERS, *((k.encode(), v.encode()) for k, v in error.headers.items())]
    await send_bytes(send, error.status, error.body_bytes(), headers)


def is_json_content_type(value: bytes | None) -> bool:
    media = (value or b"").split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


async def buffered_json_request(scope: Scope, receive: Receive, limit: int) -> tuple[Scope, Receive]:
    """For the management app: the body read whole (over ``limit`` bytes: BodyTooLarge), checked to be
    JSON when there is one, and handed on declared as JSON whatever content type the client sent (as the
    hot routes read it: ``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``)."""
    body = await read_body(scope, receive, limit)
    if not body.strip():
        return scope, replay(body, receive)
    content_type = header(scope, b"content-type")
    if not is_json_content_type(content_type):
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            sent = (content_type or b"no content type").decode("latin-1")
            raise InvalidRequest(
                f"Request body is not valid JSON (sent as {sent}; send a JSON object): {exc}", code="invalid_json"
            ) from None
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
    return scope, replay(body, receive)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` first, then whatever the client sends next (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again() -> Message:
        return pending.pop() if pending else await receive()

    return receive_again
