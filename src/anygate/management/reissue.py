"""Which keys a re-issue replaces: for a user, or every member of a team, its live keys with role ``user``
that no other of them made.

    live        neither revoked nor expired, along its chain (``Lineage.status``)
    role user   admin and team admin keys are re-issued one at a time, never in bulk: a team admin
                re-issuing its team would otherwise revoke its own key, and with it every key it makes
    roots       a key made by another key being re-issued is revoked with it (revoking a key revokes its
                descendants) and gets no replacement of its own: its maker's replacement may make it again
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from anygate.store.families import lineages
from anygate.store.records import KeyRecord

REISSUED_ROLE = "user"


def keys_to_reissue(records: Sequence[KeyRecord], user_ids: Collection[str], now: datetime) -> list[KeyRecord]:
    """The keys (from every stored key, ``records``) that re-issuing ``user_ids``' keys replaces, oldest first."""
    chains = lineages({r.id: r for r in records})
    live = {
        r.id
        for r in records
        if r.user_id in user_ids and r.role == REISSUED_ROLE and chains[r.id].status(now) == "active"
    }
    return [r for r in records if r.id in live and not any(a.id in live for a in chains[r.id].ancestors)]
