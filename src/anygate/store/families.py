"""Key families: a key made by a user key is that key's child, and never stronger than any key above it.

    parent       the key named by the child's ``created_by``, when both are user keys. A key made by an
                 admin (the admin key ``"admin"``, an admin-role key, or ``"cli"``) has no parent:
                 admins are trusted, and what they make stands on its own.
    ancestors    the parent, its parent, and so on (nearest first). Their allowlists bind the key, its
                 spend counts against their budgets and rate limits, and it expires with the first of them.
    cut off      an ancestor is revoked (or the chain is longer than ``MAX_DEPTH``): the key stops
                 working. Revoking a key revokes its descendants in the store too; this also covers
                 keys revoked before that was so.
    family       a key and all its descendants: what a key's budget window counts in the usage ledger.

A creator that is no longer stored ends the chain: keys are only deleted with their user, and
``KeyStore.delete_user`` revokes every descendant outside that user first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, or_, select

from anygate.store.tables import api_keys

if TYPE_CHECKING:
    from anygate.store.records import KeyRecord

ADMIN_ROLE = "admin"
MAX_DEPTH = 8  # ancestors a key may have: each one's budget and limits are reserved on every request


def parent_id(record: KeyRecord) -> str | None:
    """The id of the key that made ``record``, if that may be a parent (``"admin"``/``"cli"`` never are)."""
    if record.role == ADMIN_ROLE or record.created_by is None or not record.created_by.startswith("key_"):
        return None
    return record.created_by


@dataclass(frozen=True)
class Lineage:
    """A key and the keys above it (nearest first), as the store holds them now."""

    key: KeyRecord
    ancestors: tuple[KeyRecord, ...]
    too_deep: bool = False

    @property
    def is_cut_off(self) -> bool:
        """Revoked itself, or through an ancestor."""
        return self.too_deep or any(r.revoked_at is not None for r in (self.key, *self.ancestors))

    @property
    def expires_at(self) -> datetime | None:
        """The earliest expiry along the chain (``None``: never)."""
        given = [r.expires_at for r in (self.key, *self.ancestors) if r.expires_at is not None]
        return min(given) if given else None

    def status(self, now: datetime) -> str:
        if self.is_cut_off:
            return "revoked"
        expires = self.expires_at
        return "expired" if expires is not None and expires <= now else "active"

    def descends_from(self, key_id: str) -> bool:
        return any(r.id == key_id for r in self.ancestors)


def lineage_of(record: KeyRecord, find: Callable[[str], KeyRecord | None]) -> Lineage:
    """Walk up from ``record`` through ``find`` (id -> record, ``None`` when not stored)."""
    ancestors: list[KeyRecord] = []
    seen = {record.id}
    current = record
    while (above := parent_id(current)) is not None:
        parent = find(above)
        if parent is None or parent.role == ADMIN_ROLE:
            break
        if parent.id in seen or len(ancestors) >= MAX_DEPTH:
            return Lineage(record, tuple(ancestors), too_deep=True)
        ancestors.append(parent)
        seen.add(parent.id)
        current = parent
    return Lineage(record, tuple(ancestors))


def lineages(records: Mapping[str, KeyRecord]) -> dict[str, Lineage]:
    """Every record's lineage, from all the records (revoked ones too)."""
    return {key_id: lineage_of(record, records.get) for key_id, record in records.items()}


def descendants_query(key_id: str) -> Select[Any]:
    """``SELECT id`` of every descendant of ``key_id`` (the same parent rule, in SQL; not the key itself)."""
    child, parent = api_keys.alias("child"), api_keys.alias("parent")
    first = (
        select(child.c.id)
        .join(parent, child.c.created_by == parent.c.id)
        .where(parent.c.id == key_id, parent.c.role != ADMIN_ROLE, child.c.role != ADMIN_ROLE)
        .cte("descendants", recursive=True)
    )
    below = api_keys.alias("below")
    family = first.union(  # UNION, not UNION ALL: a cycle in bad data ends instead of looping
        select(below.c.id).join(first, below.c.created_by == first.c.id).where(below.c.role != ADMIN_ROLE)
    )
    return select(family.c.id)


def in_family(column: Any, key_id: str) -> Any:
    """A condition: ``column`` names ``key_id`` or one of its descendants."""
    return or_(column == key_id, column.in_(descendants_query(key_id)))
