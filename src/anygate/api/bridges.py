"""Requests in another API than the upstream's: the Anthropic Messages API and the Responses API.

The model routes make one ``Bridge`` per such request (``prepare_bridge``). For each attempt the relay
(``api/bridged_relay.py``) asks it for the ``Leg`` to that deployment: the upstream endpoint, the body, and
the ``Answer`` that brings the upstream's answer back in the client's API (None: the plain relay, bytes as
they come):

    /v1/messages   to an ``api: anthropic`` provider    messages           the client's body     AnthropicAnswer
                   to any other provider               chat/completions   translated            MessagesAnswer
    /v1/responses  to a provider that serves it        responses          the client's body     None
                   to a chat-only provider             chat/completions   translated            ResponsesAnswer

The translation to chat is made once, before the accounting reserves (a request it refuses is a 400 that
reserves nothing), and only when some deployment needs it. The accounting reserves on the client's request,
and where a budget holds the output it writes the limit down in the ticket's payload (``max_tokens``,
``max_output_tokens``): every leg takes its limit from there, so the translated request carries it too. A
translated stream asks the upstream for usage where the provider takes it (the accounting's
``StreamUsagePolicy``), and is sent again without it to an upstream that refuses the field.

Whether a provider serves ``/responses`` is ``ProviderRuntime.serves_responses``; a 404 or 405 there (that
does not say the model is unknown) is learned for the provider and the request goes on at once, bridged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from anygate.accounting.output_limits import MAX_COMPLETION_TOKENS_MODELS, default_limit_field
from anygate.accounting.service import ModelRef, Ticket
from anygate.accounting.usage import chat_usage_of_anthropic
from anygate.exchange import Exchange
from anygate.registry import ProviderRuntime
from anygate.wire.anthropic_request import anthropic_to_chat
from anygate.wire.anthropic_response import chat_to_anthropic
from anygate.wire.anthropic_stream import PING_EVENT, AnthropicPassage, AnthropicStreamTranslator
from anygate.wire.chat_stream import completion_chunk
from anygate.wire.members import replace_model
from anygate.wire.responses_request import responses_to_chat
from anygate.wire.responses_response import chat_to_responses
from anygate.wire.responses_stream import ResponsesStreamTranslator

if TYPE_CHECKING:
    from anygate.api.state import AppState

log = logging.getLogger("anygate.bridges")

CHAT = "chat/completions"
ENDPOINT_MISSING = frozenset({404, 405})


class StreamTranslator(Protocol):
    """A stream in the client's API made from the upstream's (``anygate.wire``'s stream translators)."""

    @property
    def finished(self) -> bool: ...

    @property
    def is_complete(self) -> bool: ...

    def start(self) -> list[bytes]: ...

    def feed(self, events: list[bytes]) -> list[bytes]: ...

    def finish(self) -> list[bytes]: ...

    def fail(self, status: int, message: str) -> list[bytes]: ...


class Answer(Protocol):
    """How an upstream's answer reaches the client of a bridged request.

    ``keepalive``: the event sent while the upstream is silent (None: nothing)."""

    keepalive: bytes | None

    def usage(self, parsed: dict[str, Any]) -> dict[str, Any] | None:
        """The usage of a whole answer, in the chat form the accounting reads."""
        ...

    def body(self, parsed: dict[str, Any], data: bytes) -> bytes:
        """The client's body for the upstream's (``data``, parsed)."""
        ...

    def whole_stream(self, parsed: dict[str, Any]) -> bytes | None:
        """The client's stream for a whole answer to a stream request (None: send ``body`` instead)."""
        ...

    def stream(self) -> StreamTranslator: ...

    def tap(self, ticket: Ticket, exchange: Exchange, events: list[bytes]) -> list[bytes]:
        """The accounting's look at the upstream's events (usage), before they are translated."""
        ...


@dataclass(frozen=True, slots=True)
class Leg:
    """One attempt's way upstream. ``resend``: the body without the ``stream_options`` the bridge added, for
    an upstream that refuses them; ``answer`` None: the plain relay."""

    endpoint: str
    body: bytes
    answer: Answer | None
    resend: bytes | None = None

    def __repr__(self) -> str:
        return f"Leg({self.endpoint}, {len(self.body)} B, answer={type(self.answer).__name__})"


# ---------------------------------------------------------------------------------------------- answers


class ChatAnswer:
    """An answer in chat completions, translated into the client's API."""

    keepalive: bytes | None = None

    def usage(self, parsed: dict[str, Any]) -> dict[str, Any] | None:
        usage = parsed.get("usage")
        return usage if isinstance(usage, dict) else None

    def whole_stream(self, parsed: dict[str, Any]) -> bytes | None:
        translator = self.stream()
        return b"".join([*translator.start(), *translator.feed([completion_chunk(parsed)]), *translator.finish()])

    def tap(self, ticket: Ticket, exchange: Exchange, events: list[bytes]) -> list[bytes]:
        return ticket.tap(exchange, events)

    def body(self, parsed: dict[str, Any], data: bytes) -> bytes:
        raise NotImplementedError

    def stream(self) -> StreamTranslator:
        raise NotImplementedError


class MessagesAnswer(ChatAnswer):
    """Chat completions as an Anthropic message (``model``: the name the client asked for)."""

    keepalive: bytes | None = PING_EVENT

    def __init__(self, model: str, stop_sequences: Sequence[str]) -> None:
        self.model = model
        self.stop_sequences = tuple(stop_sequences)

    def body(self, parsed: dict[str, Any], data: bytes) -> bytes:
        return orjson.dumps(chat_to_anthropic(parsed, self.model, stop_sequences=self.stop_sequences))

    def stream(self) -> StreamTranslator:
        return AnthropicStreamTranslator(self.model, stop_sequences=self.stop_sequences)


class ResponsesAnswer(ChatAnswer):
    """Chat completions as a Responses API response (``request``: the client's, as the accounting left it)."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.request = request

    def body(self, parsed: dict[str, Any], data: bytes) -> bytes:
        return orjson.dumps(chat_to_responses(parsed, self.request))

    def stream(self) -> StreamTranslator:
        return ResponsesStreamTranslator(self.request)


class AnthropicAnswer:
    """An Anthropic upstream's own answer, passed on as it came; its usage read in Anthropic's form."""

    keepalive: bytes | None = None  # the upstream sends its own pings

    def usage(self, parsed: dict[str, Any]) -> dict[str, Any] | None:
        usage = parsed.get("usage")
        return chat_usage_of_anthropic(usage) if isinstance(usage, dict) else None

    def body(self, parsed: dict[str, Any], data: bytes) -> bytes:
        return data

    def whole_stream(self, parsed: dict[str, Any]) -> bytes | None:
        return None

    def stream(self) -> StreamTranslator:
        return AnthropicPassage()

    def tap(self, ticket: Ticket, exchange: Exchange, events: list[bytes]) -> list[bytes]:
        return ticket.tap_anthropic(exchange, events)


# ---------------------------------------------------------------------------------------------- bridges

AsksStreamUsage = Callable[[str], bool]  # provider id -> whether its streams ask for usage


class Bridge:
    """A request in another API: the ``Leg`` of each attempt. ``limit_member`` is the client API's output
    limit, which the translated request carries under the upstream's name for it."""

    limit_member = "max_tokens"

    def __init__(self, payload: dict[str, Any], chat: dict[str, Any] | None, asks_usage: AsksStreamUsage) -> None:
        self._client_payload = payload
        self._chat = chat  # the client's request as chat, when a deployment needed it before the attempts
        self._asks_usage = asks_usage
        self._ticket: Ticket | None = None
        self.passes_through = True  # some deployment takes the client's request in its own API (as it is)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(translated={self._chat is not None})"

    def bind(self, ticket: Ticket) -> Bridge:
        """The accounting's ticket: the client's body and payload with its changes (the output limit)."""
        self._ticket = ticket
        return self

    @property
    def ticket(self) -> Ticket:
        assert self._ticket is not None, "a bridge is bound to its ticket before any attempt"
        return self._ticket

    @staticmethod
    def to_chat(payload: dict[str, Any]) -> dict[str, Any]:
        """The client's request as chat, with everything a deployment may keep: its reasoning effort (left
        out per leg for an upstream that does not reason) and its limit as ``max_tokens`` (named per leg)."""
        raise NotImplementedError

    @staticmethod
    def needs_chat(runtime: ProviderRuntime) -> bool:
        """Whether a request to this provider is translated to chat completions."""
        raise NotImplementedError

    def leg(self, runtime: ProviderRuntime, model: str) -> Leg:
        raise NotImplementedError

    def after_refusal(self, runtime: ProviderRuntime, status: int, body: bytes, model: str) -> Leg | None:
        """The leg to try at once when the upstream refused the first (None: its refusal is the answer)."""
        return None

    def as_is(self, endpoint: str, model: str, answer: Answer | None) -> Leg:
        """The client's request as the accounting left it, with the deployment's model."""
        ticket = self.ticket
        body = ticket.body
        if model != ticket.payload.get("model"):
            body = replace_model(body, ticket.payload, model, sole=ticket.sole_model)
        return Leg(endpoint, body, answer)

    def chat_leg(self, runtime: ProviderRuntime, model: str, answer: Answer) -> Leg:
        """The request translated to chat completions for ``model`` on ``runtime``."""
        chat = dict(self.chat_request())
        chat["model"] = model
        if not supports_reasoning(runtime, model):
            chat.pop("reasoning_effort", None)
        chat.pop("max_tokens", None)
        limit = self.ticket.payload.get(self.limit_member)  # the client's, or the one a budget wrote
        if limit is not None:
            chat[default_limit_field(CHAT, model)] = limit
        body = orjson.dumps(chat)
        if not chat.get("stream") or not self._asks_usage(runtime.id):
            return Leg(CHAT, body, answer)
        asking = orjson.dumps({**chat, "stream_options": {"include_usage": True}})
        return Leg(CHAT, asking, answer, resend=body)

    def chat_request(self) -> dict[str, Any]:
        """The client's request as chat (translated once); raises InvalidRequest for what cannot be."""
        if self._chat is None:
            self._chat = self.to_chat(self._client_payload)
        return self._chat


class MessagesBridge(Bridge):
    """``/v1/messages``: passed through to providers that speak it, translated to chat for the others."""

    def __init__(self, payload: dict[str, Any], chat: dict[str, Any] | None, asks_usage: AsksStreamUsage) -> None:
        super().__init__(payload, chat, asks_usage)
        stops = payload.get("stop_sequences")
        self._stops = [s for s in stops if isinstance(s, str)] if isinstance(stops, list) else []
        model = payload.get("model")
        self._model = model if isinstance(model, str) else ""

    @staticmethod
    def to_chat(payload: dict[str, Any]) -> dict[str, Any]:
        return anthropic_to_chat(payload, supports_reasoning=True)

    @staticmethod
    def needs_chat(runtime: ProviderRuntime) -> bool:
        return runtime.config.api != "anthropic"

    def leg(self, runtime: ProviderRuntime, model: str) -> Leg:
        if not self.needs_chat(runtime):
            return self.as_is("messages", model, ANTHROPIC_ANSWER)
        return self.chat_leg(runtime, model, MessagesAnswer(self._model, self._stops))


class ResponsesBridge(Bridge):
    """``/v1/responses``: passed through to providers that serve it, translated to chat for the others."""

    limit_member = "max_output_tokens"

    @staticmethod
    def to_chat(payload: dict[str, Any]) -> dict[str, Any]:
        return responses_to_chat(payload, supports_reasoning=True)

    @staticmethod
    def needs_chat(runtime: ProviderRuntime) -> bool:
        return not runtime.serves_responses()

    def leg(self, runtime: ProviderRuntime, model: str) -> Leg:
        if not self.needs_chat(runtime):
            return self.as_is("responses", model, None)
        return self.chat_leg(runtime, model, ResponsesAnswer(self.ticket.payload))

    def after_refusal(self, runtime: ProviderRuntime, status: int, body: bytes, model: str) -> Leg | None:
        """A provider whose ``responses`` setting is unset and that answers 404 or 405 to ``/responses``
        (not saying that the model is unknown) has no Responses API: remembered, and bridged from now on,
        this request first."""
        if runtime.config.responses is not None or not is_missing_endpoint(status, body):
            return None
        if not runtime.lacks_responses:
            runtime.lacks_responses = True
            log.info(
                "provider has no Responses API; bridged over chat completions",
                extra={"fields": {"provider": runtime.id, "status": status}},
            )
        return self.leg(runtime, model)


ANTHROPIC_ANSWER = AnthropicAnswer()
BRIDGES: dict[str, type[Bridge]] = {
    "messages": MessagesBridge,
    "responses": ResponsesBridge,
}


def prepare_bridge(
    state: AppState, exchange: Exchange, payload: dict[str, Any], targets: Sequence[ModelRef]
) -> Bridge | None:
    """The bridge of a request in another API (None for the OpenAI routes, which need none). The translation
    to chat is made now when some deployment will need it, so that what it refuses is refused before the
    accounting reserves anything."""
    kind = BRIDGES.get(exchange.route)
    if kind is None:
        return None
    registry = state.registry
    needed = any(kind.needs_chat(runtime) for t in targets if (runtime := registry.find(t.provider_id)) is not None)
    chat = kind.to_chat(payload) if needed else None
    bridge = kind(payload, chat, state.accounting.stream_usage.asks)
    runtimes = [runtime for t in targets if (runtime := registry.find(t.provider_id)) is not None]
    bridge.passes_through = any(not kind.needs_chat(runtime) for runtime in runtimes)
    return bridge


def supports_reasoning(runtime: ProviderRuntime, model: str) -> bool:
    """Whether the upstream takes ``reasoning_effort`` for ``model``: what its model list says (OpenRouter's
    ``supported_parameters``), else for OpenAI's reasoning models (o1, o3, o4, gpt-5)."""
    entry = runtime.model_entries.get(model)
    parameters = entry.get("supported_parameters") if entry is not None else None
    if isinstance(parameters, list):
        return "reasoning_effort" in parameters or "reasoning" in parameters
    return model.rsplit("/", 1)[-1].lower().startswith(MAX_COMPLETION_TOKENS_MODELS)


def is_missing_endpoint(status: int, body: bytes) -> bool:
    """Whether a 404 or 405 says the endpoint is missing, rather than the model (an OpenAI-style error whose
    ``code`` or ``param`` names the model: ``model_not_found``)."""
    if status not in ENDPOINT_MISSING:
        return False
    if status == 405:
        return True
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True  # a web server's own "404 page not found"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return True
    code, param = error.get("code"), error.get("param")
    return not ((isinstance(code, str) and "model" in code) or param == "model")
