"""Protocol translations over chat completions, as pure functions: request in, request out; event in, events out.

Clients that speak the Anthropic Messages API (Claude Code, the Anthropic SDK) or the Responses API (Codex)
reach upstreams that speak only chat completions through these. Nothing here does I/O, reads settings or
imports the edge; the relay calls them.

Anthropic Messages (``anthropic_request``, ``anthropic_response``, ``anthropic_stream``, ``anthropic_errors``,
``anthropic_models``):

    anthropic_to_chat(body, *, supports_reasoning=False, ask_stream_usage=False, limit_field="max_tokens")
    count_tokens_view(body) -> the chat-shaped request ``/v1/messages/count_tokens`` estimates
    chat_to_anthropic(chat_response, requested_model, *, stop_sequences=(), new_id=random_id) -> message dict
    AnthropicStreamTranslator(requested_model, ...): start() / feed(events) / finish() / fail(status, message)
    anthropic_error(status, message) / anthropic_error_from(GatewayError) -> AnthropicError(status, body bytes)
    anthropic_error_for_upstream(status, upstream OpenAI-shape error body) -> AnthropicError
    anthropic_model_list(openai_models) -> the Anthropic ``GET /v1/models`` page

Responses (``responses_request``, ``responses_response``, ``responses_stream``):

    responses_to_chat(body, *, supports_reasoning=False, ask_stream_usage=False, limit_field="max_tokens")
    chat_to_responses(chat_response, request, *, new_id=random_id, now=time.time) -> response dict
    ResponsesStreamTranslator(request, ...): start() / feed(events) / finish() / fail(status, message)

Stream translators take whole upstream SSE events (``data: {...}\\n\\n`` and ``data: [DONE]``, as
``anygate.wire.sse.EventSplitter`` yields them) and return whole SSE events (``event: <type>\\ndata: <json>\\n\\n``).
Ids come from an injectable ``new_id(prefix) -> str`` so tests are deterministic.
"""
