"""Ids of the translated protocols: ``msg_``, ``toolu_`` (Anthropic); ``resp_``, ``msg_``, ``fc_``, ``rs_``,
``call_`` (Responses). Translators take an ``IdFactory`` so that tests can make them deterministic."""

from __future__ import annotations

import secrets
from collections.abc import Callable

IdFactory = Callable[[str], str]  # prefix ("msg", "toolu", ...) -> a fresh id with that prefix


def random_id(prefix: str) -> str:
    """``<prefix>_`` and 24 random hex digits (96 bits): unique, and safe in any id pattern."""
    return f"{prefix}_{secrets.token_hex(12)}"
