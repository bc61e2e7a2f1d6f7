"""A live probe of one provider: what it lists and supports (models, chat, streaming, usage on streams,
embeddings, the Responses API)."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from anygate.errors import GatewayError
from anygate.upstream import DiscoveryFailed, OpenAICompatibleProvider

CHECKS = ("models", "chat", "streaming", "stream_usage", "embeddings", "responses")
# The whole probe's time, every check together: an upstream that never answers is reported as such in
# seconds, not after each check's own timeouts and retries (four 30 s attempts were two minutes).
PROBE_DEADLINE = 20.0


async def probe_provider(
    client: OpenAICompatibleProvider, model: str | None = None, deadline: float = PROBE_DEADLINE
) -> dict[str, Any]:
    """Run each check in turn within ``deadline`` seconds in all; a failed check records its error and the
    probe goes on. Out of time, the check under way says so (and ``timed_out`` names it)."""
    # ``key_sent``: whether the checks carried a key; one that passed without says nothing about a key.
    result: dict[str, Any] = {
        "provider": client.provider_id,
        "checked_at": int(time.time()),
        "auth": client.auth,
        "key_sent": client.has_key,
    }
    await probe_until(client, model, deadline, result)
    return result


def without_retries(client: OpenAICompatibleProvider) -> OpenAICompatibleProvider:
    """The client, on the same transport, making each request once: a probe reports what one request
    gets, and a retry would only spend the probe's time."""
    single = copy.copy(client)
    single.max_retries = 0
    return single


async def probe_until(
    client: OpenAICompatibleProvider,
    model: str | None,
    deadline: float,
    result: dict[str, Any],
    on_step: Callable[[dict[str, Any]], None] | None = None,
    why: str = "the probe's deadline",
) -> bool:
    """Fill ``result`` with each check's outcome (``probe_steps``, no retries) until done or ``deadline``
    seconds have passed; False when the time ran out, with the check under way marked ``no answer within
    N s (why)`` and named in ``result["timed_out"]``. ``on_step`` sees ``result`` after each check."""
    try:
        async with asyncio.timeout(deadline):
            async for name, outcome in probe_steps(without_retries(client), model):
                result[name] = outcome
                if on_step is not None:
                    on_step(result)
    except TimeoutError:
        under_way = next((check for check in CHECKS if check not in result), None)
        if under_way is not None:
            result[under_way] = {"ok": False, "error": f"no answer within {deadline:g} s ({why})"}
            result["timed_out"] = under_way
        return False
    return True


async def probe_steps(client: OpenAICompatibleProvider, model: str | None = None) -> AsyncIterator[tuple[str, Any]]:
    """The probe as it goes: ``("models", outcome)``, ``("model", the model tried)``, then each other check
    of ``CHECKS`` in order with its outcome. Without a model to try, only ``models`` and ``chat`` come."""
    models: list[str] = []
    try:
        models = await client.list_models()
        listed: dict[str, Any] = {"ok": True, "count": len(models)}
    except DiscoveryFailed as exc:
        listed = {"ok": False, "error": client.describe(exc)}
    yield "models", listed
    chosen = model or (models[0] if models else None)
    if chosen is None:
        yield "chat", {"ok": False, "error": "no model to try: give one or let the provider list its models"}
        return
    yield "model", chosen
    yield "chat", await _check_chat(client, chosen)
    yield "streaming", await _check_stream(client, chosen)
    yield "stream_usage", await _check_stream_usage(client, chosen)
    yield "embeddings", await _check_embeddings(client, embedding_model(models) or chosen)
    yield "responses", await _check_responses(client, chosen)


def embedding_model(models: list[str]) -> str | None:
    """The first listed model whose name says it embeds (``text-embedding-3-small``, ``nomic-embed``)."""
    return next((m for m in models if "embed" in m.lower()), None)


def capabilities(result: dict[str, Any]) -> dict[str, bool]:
    """What a probe found, as flags: ``{"models": True, "chat": True, "streaming": False, ...}``."""
    return {check: bool((result.get(check) or {}).get("ok")) for check in CHECKS}


def missing_capabilities(found: dict[str, Any]) -> frozenset[str]:
    """What routing must not send a provider, from its probe's flags (``capabilities``): ``streaming`` when
    it chatted but could not stream, ``embeddings`` when it answered but could not embed. A probe of a
    provider that did not answer at all (down, refused) says nothing about what it lacks."""
    missing = set()
    if found.get("chat") is True and found.get("streaming") is False:
        missing.add("streaming")
    answered = found.get("chat") is True or found.get("models") is True
    if answered and found.get("embeddings") is False:
        missing.add("embeddings")
    return frozenset(missing)


async def _check_embeddings(client: OpenAICompatibleProvider, model: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        reply = await client.embeddings({"model": model, "input": "ok"})
    except GatewayError as exc:
        return {"ok": False, "model": model, "error": client.describe(exc)}
    data = reply.get("data")
    ok = isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "embedding" in data[0]
    return {"ok": ok, "model": model, "latency_ms": _ms(started)}


async def _check_chat(client: OpenAICompatibleProvider, model: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        reply = await client.chat_completion(_one_token(model))
    except GatewayError as exc:
        return {"ok": False, "error": client.describe(exc)}
    return {"ok": True, "latency_ms": _ms(started), "usage": isinstance(reply.get("usage"), dict)}


async def _check_stream(client: OpenAICompatibleProvider, model: str) -> dict[str, Any]:
    """A plain stream, as a client that asks for nothing more sends it."""
    started = time.perf_counter()
    chunks = 0
    try:
        async for _ in client.stream_chat_completion(_one_token(model)):
            chunks += 1
    except GatewayError as exc:
        return {"ok": False, "error": client.describe(exc)}
    return {"ok": chunks > 0, "chunks": chunks, "latency_ms": _ms(started)}


async def _check_stream_usage(client: OpenAICompatibleProvider, model: str) -> dict[str, Any]:
    """A stream asking for usage (``stream_options.include_usage``): accepted, and usage reported."""
    saw_usage = False
    try:
        async for chunk in client.stream_chat_completion(
            {**_one_token(model), "stream_options": {"include_usage": True}}
        ):
            saw_usage = saw_usage or isinstance(chunk.get("usage"), dict)
    except GatewayError as exc:
        return {"ok": False, "error": client.describe(exc)}
    return {"ok": True} if saw_usage else {"ok": False, "error": "accepted, but no usage in the stream"}


async def _check_responses(client: OpenAICompatibleProvider, model: str) -> dict[str, Any]:
    """The Responses API (``POST /responses``); where it fails, anygate bridges ``/v1/responses`` over chat."""
    started = time.perf_counter()
    try:
        reply = await client.request_json(
            "POST", "responses", {"model": model, "input": "Say OK.", "max_output_tokens": 16}
        )
    except GatewayError as exc:
        return {"ok": False, "error": client.describe(exc)}
    ok = isinstance(reply, dict) and reply.get("object") == "response"
    return {"ok": ok, "latency_ms": _ms(started)} if ok else {"ok": False, "error": "answered, but not with a response"}


def _one_token(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
