"""``GET /v1/models`` in the Anthropic shape, for clients that send ``anthropic-version``.

    anthropic_model_list(openai_models) -> {"data": [...], "has_more": False, "first_id", "last_id"}
    anthropic_model_info(openai_model) -> {"type": "model", ...}

Each entry of the OpenAI list (``{"id", "created", "owned_by", ...}``) becomes
``{"type": "model", "id", "display_name", "created_at", "lifecycle": "active"}``; ``created_at`` is RFC 3339
from ``created`` (the epoch when unknown, as Anthropic documents for an unknown release date).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any


def anthropic_model_list(openai_models: Iterable[dict[str, Any]]) -> dict[str, Any]:
    data = [anthropic_model_info(model) for model in openai_models if isinstance(model.get("id"), str)]
    return {
        "data": data,
        "has_more": False,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def anthropic_model_info(model: dict[str, Any]) -> dict[str, Any]:
    name = model.get("name")
    return {
        "type": "model",
        "id": model["id"],
        "display_name": name if isinstance(name, str) and name else model["id"],
        "created_at": _rfc3339(model.get("created")),
        "lifecycle": "active",
    }


def _rfc3339(created: Any) -> str:
    seconds = created if isinstance(created, int | float) and not isinstance(created, bool) and created > 0 else 0
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        moment = datetime.fromtimestamp(0, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
