"""An Anthropic Messages request as a chat completions request.

    anthropic_to_chat(body, *, supports_reasoning=False, ask_stream_usage=False, limit_field="max_tokens") -> dict
    count_tokens_view(body) -> dict

``body`` is the client's parsed JSON. Bad input raises ``InvalidRequest`` naming the parameter
(``messages[1].content[0].source.type``); the edge answers it in the Anthropic error shape.

- ``system`` (a string or text blocks) becomes the first message, role ``system``, its texts joined.
- A user turn's ``tool_result`` blocks become ``tool`` messages (``tool_call_id`` = ``tool_use_id``) placed
  first, since chat wants them right after the assistant's ``tool_calls``; the turn's other blocks follow
  as one ``user`` message. Images inside a tool result move to that user message (chat tool messages carry
  text only). ``is_error`` prefixes the result with ``Error: ``.
- Text-only content becomes a string (some upstreams refuse content arrays); images and PDFs make parts.
- An assistant turn's ``tool_use`` blocks become ``tool_calls`` with the same ids, so the next turn's
  ``tool_result`` ids match; ``thinking`` and ``redacted_thinking`` blocks are dropped (their signatures
  mean nothing to another model).
- ``tools`` become functions; Anthropic's own server tools (``web_search_...`` and the like) cannot run on a
  chat upstream and are left out; ``tool_choice`` naming one is refused.
- ``thinking`` and ``output_config.effort`` become ``reasoning_effort`` when ``supports_reasoning``, and are
  dropped otherwise. ``cache_control``, ``top_k``, ``service_tier`` and other Anthropic-only fields are dropped.
- ``max_tokens`` goes to ``limit_field`` (``max_completion_tokens`` for OpenAI's reasoning models).
- ``stream_options.include_usage`` is added only with ``ask_stream_usage``: the relay's accounting asks for
  stream usage itself where the upstream welcomes it, and takes it out again where refused.
"""

from __future__ import annotations

from typing import Any

import orjson

from anygate.errors import InvalidRequest
from anygate.wire.chat import TokenLimitField, chat_user, function_tool, reasoning_effort, tool_call
from anygate.wire.validate import (
    block_type,
    expect_bool,
    expect_dict,
    expect_int,
    expect_list,
    expect_number,
    expect_str,
    invalid_type,
    required,
    required_dict,
    required_list,
    required_str,
)

# Budgets of Claude Code's "think" (4k), "think hard" (10k) and "ultrathink" (32k) land on low, medium, high.
THINKING_BUDGET_EFFORTS = ((4096, "low"), (16384, "medium"))
TEXT_JOINER = "\n\n"


def anthropic_to_chat(
    body: dict[str, Any],
    *,
    supports_reasoning: bool = False,
    ask_stream_usage: bool = False,
    limit_field: TokenLimitField = "max_tokens",
) -> dict[str, Any]:
    """The chat completions request for an Anthropic Messages request."""
    chat: dict[str, Any] = {"model": _model(body), "messages": _conversation(body)}
    chat[limit_field] = expect_int(required(body, "max_tokens", "max_tokens"), "max_tokens", minimum=1)
    _copy_sampling(body, chat)
    _copy_tools(body, chat)
    _copy_user(body, chat)
    if supports_reasoning:
        _copy_reasoning(body, chat)
    _copy_output_format(body, chat)
    stream = body.get("stream")
    if stream is not None and expect_bool(stream, "stream"):
        chat["stream"] = True
        if ask_stream_usage:
            chat["stream_options"] = {"include_usage": True}
    return chat


def count_tokens_view(body: dict[str, Any]) -> dict[str, Any]:
    """What ``/v1/messages/count_tokens`` estimates: a chat request whose messages hold, as text, everything
    the model reads (system, turns, tool calls and results, tool definitions).

    The request is validated like ``anthropic_to_chat`` but needs no ``max_tokens``. It is never sent: tool
    definitions and call arguments become message text so that an estimator reading message text counts them.
    """
    view: dict[str, Any] = {"model": _model(body), "messages": _conversation(body)}
    _copy_tools(body, view)
    messages = [_as_text_message(message) for message in view["messages"]]
    if view.get("tools"):
        messages.insert(0, {"role": "system", "content": orjson.dumps(view["tools"]).decode()})
    return {"model": view["model"], "messages": messages}


def _as_text_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    texts = [content] if isinstance(content, str) else []
    if isinstance(content, list):
        texts.extend(part["text"] for part in content if part.get("type") == "text")
    for call in message.get("tool_calls", ()):
        texts.append(call["function"]["name"] + " " + call["function"]["arguments"])
    return {"role": message["role"], "content": "\n".join(texts)}


def _model(body: dict[str, Any]) -> str:
    model = required_str(body, "model")
    if not model:
        raise InvalidRequest("'model' must be a non-empty string", param="model", code="invalid_model")
    return model


# ---------------------------------------------------------------------------------------------- messages


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        text = _system_text(system)
        if text:
            chat.append({"role": "system", "content": text})
    messages = required_list(body, "messages")
    if not messages:
        raise InvalidRequest("'messages' must hold at least one message", param="messages", code="invalid_value")
    for position, message in enumerate(messages):
        param = f"messages[{position}]"
        message = expect_dict(message, param)
        role = required(message, "role", f"{param}.role")
        content = required(message, "content", f"{param}.content")
        if role == "user":
            chat.extend(_user_turn(content, param))
        elif role == "assistant":
            turn = _assistant_turn(content, param)
            if turn is not None:
                chat.append(turn)
        else:
            raise InvalidRequest(
                f"'{param}.role' must be 'user' or 'assistant'", param=f"{param}.role", code="invalid_value"
            )
    return chat


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    texts: list[str] = []
    for position, block in enumerate(expect_list(system, "system")):
        param = f"system[{position}]"
        if block_type(block, param) != "text":
            raise InvalidRequest(f"'{param}.type' must be 'text'", param=f"{param}.type", code="invalid_value")
        texts.append(required_str(block, "text", param))
    return TEXT_JOINER.join(texts)


def _blocks(content: Any, param: str) -> list[tuple[str, dict[str, Any], str]]:
    """(type, block, param) of each content block; a string is one text block."""
    if isinstance(content, str):
        return [("text", {"type": "text", "text": content}, param)]
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content blocks")
    blocks = []
    for position, block in enumerate(content):
        block_param = f"{param}[{position}]"
        blocks.append((block_type(block, block_param), block, block_param))
    return blocks


def _user_turn(content: Any, param: str) -> list[dict[str, Any]]:
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for kind, block, block_param in _blocks(content, f"{param}.content"):
        if kind == "tool_result":
            message, attachments = _tool_result(block, block_param)
            tool_messages.append(message)
            parts.extend(attachments)
        else:
            parts.append(_user_part(kind, block, block_param))
    if parts:
        tool_messages.append({"role": "user", "content": _chat_content(parts)})
    return tool_messages


def _user_part(kind: str, block: dict[str, Any], param: str) -> dict[str, Any]:
    if kind == "text":
        return {"type": "text", "text": required_str(block, "text", param)}
    if kind == "image":
        return _image_part(block, param)
    if kind == "document":
        return _document_part(block, param)
    raise _unknown_block(kind, param, "text, image, document, tool_result")


def _chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string (what every upstream accepts), else the parts."""
    if all(part["type"] == "text" for part in parts):
        return TEXT_JOINER.join(part["text"] for part in parts)
    return parts


def _image_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    source = required_dict(block, "source", param)
    kind = required_str(source, "type", f"{param}.source")
    if kind == "base64":
        media_type = required_str(source, "media_type", f"{param}.source")
        data = required_str(source, "data", f"{param}.source")
        return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}
    if kind == "url":
        url = required_str(source, "url", f"{param}.source")
        return {"type": "image_url", "image_url": {"url": url}}
    raise _unsupported_source(kind, f"{param}.source.type", "base64, url")


def _document_part(block: dict[str, Any], param: str) -> dict[str, Any]:
    """A PDF (base64) as a chat ``file`` part; a plain-text document as text."""
    source = required_dict(block, "source", param)
    kind = required_str(source, "type", f"{param}.source")
    if kind == "text":
        return {"type": "text", "text": required_str(source, "data", f"{param}.source")}
    if kind == "base64":
        media_type = required_str(source, "media_type", f"{param}.source")
        data = required_str(source, "data", f"{param}.source")
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        return {"type": "file", "file": {"filename": filename, "file_data": f"data:{media_type};base64,{data}"}}
    raise _unsupported_source(kind, f"{param}.source.type", "base64, text")


def _tool_result(block: dict[str, Any], param: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``tool`` message of a ``tool_result``, and the images and files it carried (chat tool messages
    hold text only: these go to the user message that follows)."""
    call_id = required_str(block, "tool_use_id", param)
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    content = block.get("content")
    for kind, inner, inner_param in _blocks(content, f"{param}.content") if content is not None else ():
        if kind not in ("text", "image", "document"):
            raise _unknown_block(kind, inner_param, "text, image, document")
        part = _user_part(kind, inner, inner_param)
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            attachments.append(part)
    text = TEXT_JOINER.join(texts)
    is_error = block.get("is_error")
    if is_error is not None and expect_bool(is_error, f"{param}.is_error"):
        text = "Error: " + text if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, attachments


def _assistant_turn(content: Any, param: str) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for kind, block, block_param in _blocks(content, f"{param}.content"):
        if kind == "text":
            texts.append(required_str(block, "text", block_param))
        elif kind == "tool_use":
            calls.append(_tool_use(block, block_param))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unknown_block(kind, block_param, "text, tool_use, thinking, redacted_thinking")
    text = TEXT_JOINER.join(text for text in texts if text)
    if not text and not calls:
        return None  # a turn of thinking only, or empty: nothing a chat upstream can read
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_use(block: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = required_str(block, "id", param)
    name = required_str(block, "name", param)
    arguments = block.get("input")
    arguments = {} if arguments is None else expect_dict(arguments, f"{param}.input")
    return tool_call(call_id, name, orjson.dumps(arguments).decode())


def _unknown_block(kind: str, param: str, known: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}.type' is '{kind}', which anygate cannot translate for this upstream (known here: {known})",
        param=f"{param}.type",
        code="unsupported_content_block",
    )


def _unsupported_source(kind: str, param: str, known: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' is '{kind}', which anygate cannot translate (supported: {known})",
        param=param,
        code="unsupported_source",
    )


# ---------------------------------------------------------------------------------------------- parameters


def _copy_sampling(body: dict[str, Any], chat: dict[str, Any]) -> None:
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None:
            chat[name] = expect_number(value, name)
    stops = body.get("stop_sequences")
    if stops is not None:
        stops = expect_list(stops, "stop_sequences")
        sequences = [expect_str(stop, f"stop_sequences[{i}]") for i, stop in enumerate(stops)]
        if sequences:
            chat["stop"] = sequences


def _copy_tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    functions: list[dict[str, Any]] = []
    server_tools: set[str] = set()
    tools = body.get("tools")
    for position, tool in enumerate(expect_list(tools, "tools") if tools is not None else ()):
        param = f"tools[{position}]"
        tool = expect_dict(tool, param)
        kind = tool.get("type")
        name = required_str(tool, "name", param)
        if kind is None or kind == "custom":
            functions.append(_function(tool, name, param))
        else:
            server_tools.add(name)  # Anthropic runs these itself; a chat upstream cannot
    if functions:
        chat["tools"] = functions
    choice = body.get("tool_choice")
    if choice is not None:
        _copy_tool_choice(expect_dict(choice, "tool_choice"), chat, server_tools)


def _function(tool: dict[str, Any], name: str, param: str) -> dict[str, Any]:
    schema = required_dict(tool, "input_schema", param)
    description = tool.get("description")
    if description is not None:
        expect_str(description, f"{param}.description")
    return function_tool(name, description, schema, tool.get("strict") is True)


def _copy_tool_choice(choice: dict[str, Any], chat: dict[str, Any], server_tools: set[str]) -> None:
    kind = required_str(choice, "type", "tool_choice")
    if kind == "tool":
        name = required_str(choice, "name", "tool_choice")
        if name in server_tools:
            raise InvalidRequest(
                f"'tool_choice.name' is '{name}', an Anthropic server tool that a chat upstream cannot run",
                param="tool_choice.name",
                code="unsupported_tool",
            )
        mode: Any = {"type": "function", "function": {"name": name}}
    elif kind in ("auto", "any", "none"):
        mode = {"auto": "auto", "any": "required", "none": "none"}[kind]
    else:
        raise InvalidRequest(
            "'tool_choice.type' must be one of auto, any, tool, none", param="tool_choice.type", code="invalid_value"
        )
    if not chat.get("tools"):
        if kind in ("any", "tool"):
            raise InvalidRequest(
                f"'tool_choice' is '{kind}' but no tool is defined that a chat upstream can call",
                param="tool_choice",
                code="invalid_value",
            )
        return  # chat upstreams refuse a tool_choice without tools
    chat["tool_choice"] = mode
    disable_parallel = choice.get("disable_parallel_tool_use")
    if disable_parallel is not None and expect_bool(disable_parallel, "tool_choice.disable_parallel_tool_use"):
        chat["parallel_tool_calls"] = False


def _copy_user(body: dict[str, Any], chat: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    if metadata is None:
        return
    user_id = expect_dict(metadata, "metadata").get("user_id")
    if user_id is not None and expect_str(user_id, "metadata.user_id"):
        chat["user"] = chat_user(user_id)


def _copy_reasoning(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """``output_config.effort`` when given, else the effort a ``thinking`` budget asks for."""
    config = body.get("output_config")
    effort = expect_dict(config, "output_config").get("effort") if config is not None else None
    if effort is not None:
        chat["reasoning_effort"] = reasoning_effort(expect_str(effort, "output_config.effort"))
        return
    thinking = body.get("thinking")
    if thinking is None:
        return
    thinking = expect_dict(thinking, "thinking")
    if required(thinking, "type", "thinking.type") == "enabled":
        budget = expect_int(required(thinking, "budget_tokens", "thinking.budget_tokens"), "thinking.budget_tokens")
        chat["reasoning_effort"] = next((name for limit, name in THINKING_BUDGET_EFFORTS if budget <= limit), "high")


def _copy_output_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """Structured output (``output_config.format``, or the older ``output_format``) as a JSON schema format."""
    config = body.get("output_config")
    form = expect_dict(config, "output_config").get("format") if config is not None else None
    param = "output_config.format"
    if form is None and body.get("output_format") is not None:
        form, param = body["output_format"], "output_format"
    if form is None:
        return
    form = expect_dict(form, param)
    if form.get("type") != "json_schema":
        raise InvalidRequest(f"'{param}.type' must be 'json_schema'", param=f"{param}.type", code="invalid_value")
    schema = required_dict(form, "schema", param)
    json_schema = {"name": "output", "schema": schema, "strict": True}
    chat["response_format"] = {"type": "json_schema", "json_schema": json_schema}
