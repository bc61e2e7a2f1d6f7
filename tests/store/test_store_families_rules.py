"""The rules of key families and narrowing, in-process: which glob provably lies inside another, and
what a key's chain makes of it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from anygate.management.rights import pattern_within
from anygate.store.families import MAX_DEPTH, lineage_of
from anygate.store.records import KeyRecord

WITHIN = [
    ("groq/llama-3", "*", True),
    ("groq/llama-3", "groq/*", True),
    ("groq/llama-3", "groq/llama-?", True),
    ("groq/llama-*", "groq/*", True),
    ("groq/llama-*", "groq/llama-*", True),
    ("groq/[ab]*", "groq/[ab]*", True),
    ("*", "*", True),
    ("groq/*", "groq/llama-*", False),
    ("fake/[s]*", "fake/[!s]*", False),
    ("fake/s*", "fake/[!s]*", False),
    ("groq/?", "groq/*", False),
    ("groq/*x", "groq/*", False),
    ("groq/a*", "groq/*x", False),
    ("other/vendor/x", "vendor/*", False),
    ("*", "groq/*", False),
]


@pytest.mark.parametrize(("narrow", "wide", "expected"), WITHIN)
def test_only_literal_names_and_literal_prefix_globs_are_proven_inside(narrow: str, wide: str, expected: bool) -> None:
    assert pattern_within(narrow, wide) is expected


NOW = datetime(2026, 11, 21, tzinfo=UTC)


def record(key_id: str, created_by: str | None = "admin", **fields: object) -> KeyRecord:
    values: dict[str, object] = {
        "id": key_id,
        "key_hash": key_id * 2,
        "key_prefix": "sk-ag-",
        "alias": key_id,
        "user_id": None,
        "role": "user",
        "models": None,
        "providers": None,
        "budget": None,
        "limits": None,
        "expires_at": None,
        "revoked_at": None,
        "created_at": NOW,
        "created_by": created_by,
    }
    values.update(fields)
    return KeyRecord(**values)  # type: ignore[arg-type]


def test_a_chain_ends_at_an_admin_made_key_and_expires_with_its_earliest_member() -> None:
    soon, later = NOW + timedelta(hours=1), NOW + timedelta(days=1)
    keys = {
        "key_admin": record("key_admin", role="admin"),
        "key_a": record("key_a", created_by="key_admin", expires_at=soon),
        "key_b": record("key_b", created_by="key_a", expires_at=later),
        "key_c": record("key_c", created_by="key_b"),
    }
    chain = lineage_of(keys["key_c"], keys.get)
    assert [r.id for r in chain.ancestors] == ["key_b", "key_a"]
    assert chain.expires_at == soon and chain.status(NOW) == "active"
    assert chain.status(soon) == "expired"
    assert chain.descends_from("key_a") and not chain.descends_from("key_admin")
    keys["key_a"] = replace(keys["key_a"], revoked_at=NOW)
    assert lineage_of(keys["key_c"], keys.get).status(NOW) == "revoked"


def test_a_cycle_or_a_chain_deeper_than_allowed_is_cut_off() -> None:
    looped = {"key_x": record("key_x", created_by="key_y"), "key_y": record("key_y", created_by="key_x")}
    assert lineage_of(looped["key_x"], looped.get).is_cut_off
    deep = {f"key_{n}": record(f"key_{n}", created_by=f"key_{n + 1}") for n in range(MAX_DEPTH + 2)}
    assert lineage_of(deep["key_0"], deep.get).is_cut_off
    assert not lineage_of(deep[f"key_{2}"], deep.get).is_cut_off
