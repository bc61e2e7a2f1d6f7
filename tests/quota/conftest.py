"""Quota tests read only the environment they are given."""

from __future__ import annotations

import os

import pytest

PREFIXES = ("ANYGATE_", "OPENAI_", "OPENROUTER_", "XDG_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(PREFIXES) or name.endswith("_API_KEY"):
            monkeypatch.delenv(name)
