"""Tools an upstream runs itself and bills by the call, beside the tokens: what a USD budget cannot price.

    billed_tool(api, payload) -> str | None     the request member that asks for one (``tools[2].type``,
                                                ``web_search_options``), or None

    chat/completions   ``web_search_options`` (OpenAI's search models: a fee per search)
    responses          hosted tools: ``web_search*``, ``file_search``, ``code_interpreter`` (a container),
                       ``image_generation``
    messages           Anthropic's server tools ``web_search_*`` and ``code_execution_*``

Function and custom tools, and the tools a client runs itself (Anthropic's ``bash``, ``text_editor``,
``computer``), cost only tokens. A bridge to a chat upstream drops hosted tools, so only a request that
reaches an upstream speaking its own API (or ``/proxy``) runs them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BILLED_TOOL_TYPES: Mapping[str, tuple[str, ...]] = {
    "responses": ("web_search", "file_search", "code_interpreter", "image_generation"),
    "messages": ("web_search", "code_execution"),
}


def billed_tool(api: str, payload: Mapping[str, Any]) -> str | None:
    """The member of a request in ``api`` (a route or an upstream endpoint) that asks the upstream for a tool
    billed by the call; None when it asks for none."""
    if api == "chat/completions":
        return "web_search_options" if payload.get("web_search_options") is not None else None
    prefixes = BILLED_TOOL_TYPES.get(api)
    tools = payload.get("tools")
    if prefixes is None or not isinstance(tools, list):
        return None
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith(prefixes):
            return f"tools[{index}].type"
    return None
