"""Token counts as the gateway estimates them, for tests that compute what a request reserves or used.

One loaded Tokenizer per test process (loading its vocabularies takes seconds)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from anygate.accounting import estimate


@lru_cache(maxsize=1)
def tokenizer() -> estimate.Tokenizer:
    return estimate.Tokenizer().load_now()


def estimate_prompt(payload: dict[str, Any], model: str | None = None) -> int:
    return estimate.estimate_prompt(tokenizer(), payload, model)


def count_text(text: str, model: str | None = None) -> int:
    return tokenizer().count(text, model)
