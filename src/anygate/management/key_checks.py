"""What a key's fields must satisfy beyond their types, checked against the store and what is served: the
same rules for ``POST/PATCH /v1/keys`` and ``anygate keys create/update``.

Refused (the request changes nothing):
    user_id   a user that does not exist                       400 ``unknown_user``
Accepted with a warning (``warnings`` in the answer; the CLI prints them):
    alias     one that another live (not revoked) key of the   a key is its id; an alias is a label, and the
              same owner has                                   API has always taken any (scripts that make
                                                               "student-1" each term keep working), but
                                                               reports and the console name keys by alias
    providers a pattern that matches no provider known now     a provider may be added later: keys are often
    models    a pattern that matches no model any provider     made before the provider they are for
              could serve now (a provider whose list is
              unknown may serve anything under its id)

The types and ranges (an expiry in the past for a new key, a budget period without a limit) are the
request models' (``schemas``).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from anygate.errors import InvalidRequest
from anygate.store.keys import KeyStore

# What is served now: provider id -> the models it lists, or None when its list is unknown.
Served = Mapping[str, frozenset[str] | None]


async def check_owner(keys: KeyStore, user_id: str | None) -> None:
    if user_id is not None and await keys.get_user(user_id) is None:
        raise InvalidRequest(f"user_id: no user '{user_id}'", param="user_id", code="unknown_user")


async def alias_warnings(
    keys: KeyStore, alias: str, user_id: str | None, key_id: str | None = None, name_it: bool = True
) -> list[str]:
    """A warning when another live key of the same owner (or of no owner) has ``alias`` already; it names
    that key only when ``name_it`` (an admin asks: a user key learns nothing of keys it does not manage)."""
    for other in await keys.list_keys(user_id):
        if other.alias == alias and other.user_id == user_id and other.revoked_at is None and other.id != key_id:
            whose = f"user '{user_id}'" if user_id else "keys without a user"
            which = f"key {other.id}" if name_it else "another key"
            return [
                f"alias: {which} is '{alias}' too (among {whose}): reports and the console will show both by that name"
            ]
    return []


async def check_key_fields(
    keys: KeyStore,
    fields: Mapping[str, Any],
    served: Served,
    current: Mapping[str, Any] | None = None,
    by_admin: bool = True,
) -> list[str]:
    """Check a new key's fields (or, with ``current``, a change to a key: ``fields`` only what changes, and
    ``current`` the key's ``id``, ``alias`` and ``user_id``). Raise on a refusal; return the warnings
    (naming other keys only for an admin)."""
    warnings: list[str] = []
    if "user_id" in fields:
        await check_owner(keys, fields["user_id"])
    if current is None or "alias" in fields or "user_id" in fields:
        merged = {**(current or {}), **fields}
        key_id = (current or {}).get("id")
        warnings += await alias_warnings(keys, merged["alias"], merged.get("user_id"), key_id, by_admin)
    return warnings + allowlist_warnings(fields, served)


def allowlist_warnings(fields: Mapping[str, Any], served: Served) -> list[str]:
    """The ``providers`` and ``models`` patterns that match nothing served now."""
    warnings = []
    known = ", ".join(served) or "none"
    for pattern in fields.get("providers") or ():
        if not any(fnmatchcase(provider_id, pattern) for provider_id in served):
            warnings.append(f"providers: '{pattern}' matches no provider (providers now: {known})")
    for pattern in fields.get("models") or ():
        if not any(could_serve(provider_id, models, pattern) for provider_id, models in served.items()):
            warnings.append(f"models: '{pattern}' matches no model any provider serves now (providers now: {known})")
    return warnings


def could_serve(provider_id: str, models: frozenset[str] | None, pattern: str) -> bool:
    """Whether a model of this provider may match ``pattern`` (matched against ``provider/model``)."""
    if models is not None:
        return any(fnmatchcase(f"{provider_id}/{model}", pattern) for model in models)
    head, slash, _ = pattern.partition("/")
    # An unknown list: anything under the provider's id may exist.
    return fnmatchcase(provider_id, head) if slash else fnmatchcase(f"{provider_id}/x", pattern)
