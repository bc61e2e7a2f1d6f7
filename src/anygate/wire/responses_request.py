"""A Responses API request as a chat completions request, for upstreams that speak only chat.

    responses_to_chat(body, *, supports_reasoning=False, ask_stream_usage=False, limit_field="max_tokens") -> dict

anygate does not store responses: every request must carry the whole conversation in ``input`` (Codex does,
with ``store: false``). ``previous_response_id``, ``conversation``, ``item_reference`` items, stored
``prompt`` templates and ``background`` runs need stored state and are refused with a 400 naming the field.

- ``instructions`` and leading ``system``/``developer`` messages become one first ``system`` message
  (several chat templates refuse a system message anywhere else); a later ``developer`` message becomes
  ``system``.
- ``input`` is a string (one user message) or items: ``message`` (``input_text``, ``input_image``,
  ``input_file`` with inline data, ``output_text``), ``function_call`` and ``custom_tool_call`` (assistant
  ``tool_calls``; consecutive calls share one assistant message), ``function_call_output`` and
  ``custom_tool_call_output`` (``tool`` messages; images in an output follow as a user message after the
  run of tool messages). ``reasoning`` items are dropped.
- ``tools``: functions as functions; ``custom`` (freeform) tools as a function taking one string ``input``,
  whose calls come back as ``custom_tool_call`` items. Hosted tools (web search, file search, code
  interpreter, ...) cannot run on a chat upstream and are left out, as Codex itself does when it speaks chat.
- ``max_output_tokens`` -> ``max_tokens`` (or ``limit_field``); ``text.format`` -> ``response_format``;
  ``reasoning.effort`` -> ``reasoning_effort`` when ``supports_reasoning``; ``user``/``safety_identifier`` ->
  ``user``.
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
    required_str,
)

STORED_STATE_FIELDS = ("previous_response_id", "conversation", "prompt")
TEXT_JOINER = "\n\n"
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def responses_to_chat(
    body: dict[str, Any],
    *,
    supports_reasoning: bool = False,
    ask_stream_usage: bool = False,
    limit_field: TokenLimitField = "max_tokens",
) -> dict[str, Any]:
    """The chat completions request for a Responses request."""
    _refuse_stored_state(body)
    model = required_str(body, "model")
    if not model:
        raise InvalidRequest("'model' must be a non-empty string", param="model", code="invalid_model")
    chat: dict[str, Any] = {"model": model, "messages": _conversation(body)}
    limit = body.get("max_output_tokens")
    if limit is not None:
        chat[limit_field] = expect_int(limit, "max_output_tokens", minimum=1)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            chat[name] = expect_number(body[name], name)
    _copy_tools(body, chat)
    _copy_user(body, chat)
    if supports_reasoning:
        _copy_reasoning(body, chat)
    _copy_text_format(body, chat)
    stream = body.get("stream")
    if stream is not None and expect_bool(stream, "stream"):
        chat["stream"] = True
        if ask_stream_usage:
            chat["stream_options"] = {"include_usage": True}
    return chat


def custom_tool_names(body: dict[str, Any]) -> frozenset[str]:
    """Names of the request's ``custom`` (freeform) tools: their calls are answered as ``custom_tool_call``."""
    tools = body.get("tools")
    return frozenset(
        tool["name"]
        for tool in (tools if isinstance(tools, list) else ())
        if isinstance(tool, dict) and tool.get("type") == "custom" and isinstance(tool.get("name"), str)
    )


def _refuse_stored_state(body: dict[str, Any]) -> None:
    for name in STORED_STATE_FIELDS:
        if body.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' needs responses stored by the server, and anygate does not store responses: "
                "send the whole conversation in 'input' (with store: false)",
                param=name,
                code="unsupported_parameter",
            )
    refuse_background(body)


def refuse_background(body: dict[str, Any]) -> None:
    """A background run is answered ``queued`` and generates after the answer, where anygate never sees it:
    nothing would count it, and its result is reachable only with the provider's key. Refused on every route
    that passes a Responses request on, native (``api/model_routes``) or bridged."""
    if body.get("background") is True:
        raise InvalidRequest(
            "'background' responses run after the answer and are stored by the server, where anygate cannot "
            "relay or count them: send the request without 'background'",
            param="background",
            code="unsupported_parameter",
        )


# ---------------------------------------------------------------------------------------------- messages


class _Conversation:
    """Chat messages being built from Responses items, keeping chat's ordering rules."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.attachments: list[dict[str, Any]] = []  # images from tool outputs, sent after the tool messages

    def add(self, message: dict[str, Any]) -> None:
        self.flush_attachments()
        self.messages.append(message)

    def add_call(self, call: dict[str, Any]) -> None:
        """A tool call joins the assistant message just before it (parallel calls share one message)."""
        self.flush_attachments()
        last = self.messages[-1] if self.messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            self.messages.append({"role": "assistant", "content": None, "tool_calls": [call]})

    def add_tool_output(self, message: dict[str, Any], attachments: list[dict[str, Any]]) -> None:
        self.messages.append(message)
        self.attachments.extend(attachments)

    def flush_attachments(self) -> None:
        if self.attachments:
            self.messages.append({"role": "user", "content": self.attachments})
            self.attachments = []


def _conversation(body: dict[str, Any]) -> list[dict[str, Any]]:
    conversation = _Conversation()
    instructions = body.get("instructions")
    if instructions is not None and expect_str(instructions, "instructions"):
        conversation.add({"role": "system", "content": instructions})
    value = required(body, "input", "input")
    if isinstance(value, str):
        conversation.add({"role": "user", "content": value})
    else:
        for position, item in enumerate(expect_list(value, "input")):
            _add_item(conversation, expect_dict(item, f"input[{position}]"), f"input[{position}]")
    conversation.flush_attachments()
    return _merge_leading_system(conversation.messages)


def _add_item(conversation: _Conversation, item: dict[str, Any], param: str) -> None:
    kind = item.get("type", "message")  # an "easy" input message has no type
    if kind == "message":
        conversation.add(_message(item, param))
    elif kind == "function_call":
        arguments = item.get("arguments")
        arguments = "" if arguments is None else expect_str(arguments, f"{param}.arguments")
        conversation.add_call(tool_call(_call_id(item, param), required_str(item, "name", param), arguments))
    elif kind == "custom_tool_call":
        arguments = orjson.dumps({"input": required_str(item, "input", param)}).decode()
        conversation.add_call(tool_call(_call_id(item, param), required_str(item, "name", param), arguments))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        text, attachments = _tool_output(required(item, "output", f"{param}.output"), f"{param}.output")
        message = {"role": "tool", "tool_call_id": _call_id(item, param), "content": text}
        conversation.add_tool_output(message, attachments)
    elif kind != "reasoning":  # reasoning items carry the upstream model's state: meaningless to another model
        hint = " (it refers to a stored item, and anygate does not store responses)" if kind == "item_reference" else ""
        raise InvalidRequest(
            f"'{param}.type' is '{kind}', which anygate cannot translate for a chat upstream{hint}",
            param=f"{param}.type",
            code="unsupported_input_item",
        )


def _call_id(item: dict[str, Any], param: str) -> str:
    return required_str(item, "call_id", param)


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = required(item, "role", f"{param}.role")
    content = required(item, "content", f"{param}.content")
    if role in ("system", "developer"):
        return {"role": "system", "content": _text_only(content, f"{param}.content")}
    if role == "assistant":
        return {"role": "assistant", "content": _text_only(content, f"{param}.content")}
    if role == "user":
        return {"role": "user", "content": _user_content(content, f"{param}.content")}
    raise InvalidRequest(
        f"'{param}.role' must be one of user, assistant, system, developer", param=f"{param}.role", code="invalid_value"
    )


def _parts(content: Any, param: str) -> list[tuple[str, dict[str, Any], str]]:
    if isinstance(content, str):
        return [("input_text", {"type": "input_text", "text": content}, param)]
    if not isinstance(content, list):
        raise invalid_type(param, "a string or an array of content parts")
    return [(block_type(part, f"{param}[{i}]"), part, f"{param}[{i}]") for i, part in enumerate(content)]


def _text_only(content: Any, param: str) -> str:
    texts = []
    for kind, part, part_param in _parts(content, param):
        if kind in ("input_text", "output_text"):
            texts.append(required_str(part, "text", part_param))
        elif kind == "refusal":
            texts.append(required_str(part, "refusal", part_param))
        else:
            raise _unknown_part(kind, part_param, "input_text, output_text, refusal")
    return TEXT_JOINER.join(texts)


def _user_content(content: Any, param: str) -> str | list[dict[str, Any]]:
    parts = [_user_part(kind, part, part_param) for kind, part, part_param in _parts(content, param)]
    if all(part["type"] == "text" for part in parts):
        return TEXT_JOINER.join(part["text"] for part in parts)
    return parts


def _user_part(kind: str, part: dict[str, Any], param: str) -> dict[str, Any]:
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": required_str(part, "text", param)}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise _needs_inline(f"{param}.image_url", "an image URL or data URL in 'image_url'")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise _needs_inline(f"{param}.file_data", "the file inline in 'file_data'")
        filename = part.get("filename")
        filename = filename if isinstance(filename, str) and filename else "file"
        return {"type": "file", "file": {"filename": filename, "file_data": data}}
    raise _unknown_part(kind, param, "input_text, input_image, input_file")


def _tool_output(output: Any, param: str) -> tuple[str, list[dict[str, Any]]]:
    """The text of a tool's output, and the images or files in it (chat tool messages hold text only)."""
    texts: list[str] = []
    attachments: list[dict[str, Any]] = []
    for kind, part, part_param in _parts(output, param):
        converted = _user_part(kind, part, part_param)
        if converted["type"] == "text":
            texts.append(converted["text"])
        else:
            attachments.append(converted)
    return TEXT_JOINER.join(texts), attachments


def _merge_leading_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    leading = 0
    while leading < len(messages) and messages[leading]["role"] == "system":
        leading += 1
    if leading < 2:
        return messages
    text = TEXT_JOINER.join(message["content"] for message in messages[:leading] if message["content"])
    return [{"role": "system", "content": text}, *messages[leading:]]


def _unknown_part(kind: str, param: str, known: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}.type' is '{kind}', which anygate cannot translate here (known: {known})",
        param=f"{param}.type",
        code="unsupported_content_part",
    )


def _needs_inline(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}' is missing: a chat upstream needs {what} (file ids refer to stored files anygate does not keep)",
        param=param,
        code="unsupported_content_part",
    )


# ---------------------------------------------------------------------------------------------- parameters


def _copy_tools(body: dict[str, Any], chat: dict[str, Any]) -> None:
    functions: list[dict[str, Any]] = []
    tools = body.get("tools")
    for position, tool in enumerate(expect_list(tools, "tools") if tools is not None else ()):
        param = f"tools[{position}]"
        kind = block_type(tool, param)
        if kind == "function":
            functions.append(_function(tool, param))
        elif kind == "custom":
            functions.append(_freeform_function(tool, param))
        # hosted tools (web_search, file_search, ...) run at OpenAI, not at a chat upstream: left out
    if not functions:
        _refuse_forced_tool(body)
        return
    chat["tools"] = functions
    choice = body.get("tool_choice")
    if choice is not None:
        chat["tool_choice"] = _tool_choice(choice)
    parallel = body.get("parallel_tool_calls")
    if parallel is not None:
        chat["parallel_tool_calls"] = expect_bool(parallel, "parallel_tool_calls")


def _function(tool: dict[str, Any], param: str) -> dict[str, Any]:
    parameters = tool.get("parameters")
    parameters = EMPTY_PARAMETERS if parameters is None else expect_dict(parameters, f"{param}.parameters")
    name = required_str(tool, "name", param)
    return function_tool(name, _description(tool, param), parameters, tool.get("strict") is True)


def _freeform_function(tool: dict[str, Any], param: str) -> dict[str, Any]:
    """A freeform tool as a function taking its raw input as one string (its grammar told in the description)."""
    description = _description(tool, param) or ""
    form = tool.get("format")
    if isinstance(form, dict) and form.get("type") == "grammar" and isinstance(form.get("definition"), str):
        syntax = form.get("syntax") if isinstance(form.get("syntax"), str) else "grammar"
        description += f"\n\nThe input follows this {syntax} grammar:\n{form['definition']}"
    parameters = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "The raw input of the tool"}},
        "required": ["input"],
    }
    return function_tool(required_str(tool, "name", param), description.strip() or None, parameters, False)


def _description(tool: dict[str, Any], param: str) -> str | None:
    description = tool.get("description")
    return None if description is None else expect_str(description, f"{param}.description")


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind in ("function", "custom"):
            return {"type": "function", "function": {"name": required_str(choice, "name", "tool_choice")}}
        if kind == "allowed_tools" and choice.get("mode") in ("auto", "required"):
            return choice["mode"]
    raise InvalidRequest(
        "'tool_choice' must be auto, none, required, or name a function or custom tool "
        "(hosted tools cannot run on a chat upstream)",
        param="tool_choice",
        code="invalid_value",
    )


def _refuse_forced_tool(body: dict[str, Any]) -> None:
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("auto", "none"):
        raise InvalidRequest(
            "'tool_choice' asks for a tool call but no tool is defined that a chat upstream can call",
            param="tool_choice",
            code="invalid_value",
        )


def _copy_user(body: dict[str, Any], chat: dict[str, Any]) -> None:
    for name in ("user", "safety_identifier"):
        value = body.get(name)
        if value is not None and expect_str(value, name):
            chat["user"] = chat_user(value)
            return


def _copy_reasoning(body: dict[str, Any], chat: dict[str, Any]) -> None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return
    effort = expect_dict(reasoning, "reasoning").get("effort")
    if effort is not None and expect_str(effort, "reasoning.effort") != "none":
        chat["reasoning_effort"] = reasoning_effort(effort)


def _copy_text_format(body: dict[str, Any], chat: dict[str, Any]) -> None:
    text = body.get("text")
    form = expect_dict(text, "text").get("format") if text is not None else None
    if form is None:
        return
    kind = block_type(form, "text.format")
    if kind == "json_schema":
        json_schema: dict[str, Any] = {
            "name": required_str(form, "name", "text.format"),
            "schema": expect_dict(required(form, "schema", "text.format.schema"), "text.format.schema"),
        }
        if isinstance(form.get("description"), str):
            json_schema["description"] = form["description"]
        if form.get("strict") is not None:
            json_schema["strict"] = expect_bool(form["strict"], "text.format.strict")
        chat["response_format"] = {"type": "json_schema", "json_schema": json_schema}
    elif kind == "json_object":
        chat["response_format"] = {"type": "json_object"}
    elif kind != "text":
        message = "'text.format.type' must be text, json_schema or json_object"
        raise InvalidRequest(message, param="text.format.type", code="invalid_value")
