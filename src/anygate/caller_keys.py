"""Callers' own provider keys (bring your own key), as the request path reads them: no database query.

The store's sync fills it. A caller's key for a provider is the first set along its chain: its own key's,
then those of the keys that made it (nearest first), then its user's (set by the person signed in to the
console as that user). A user's other keys never see a key's own: see ``api.routes_creds``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from anygate.auth import Principal
from anygate.errors import ServiceUnavailable

Owner = tuple[str, str]  # (user id or key id, provider id)


def owners(principal: Principal) -> Iterator[str]:
    """Whose provider keys a caller may use, first choice first."""
    yield principal.key_id
    for ancestor in principal.ancestors:
        yield ancestor.key_id
    if principal.user_id:
        yield principal.user_id


class CallerKeys:
    __slots__ = ("_keys", "_unreadable")

    def __init__(self) -> None:
        self._keys: Mapping[Owner, str] = {}
        # Keys this worker cannot decrypt (a secret key mismatch): never replaced by the operator's key.
        self._unreadable: frozenset[Owner] = frozenset()

    def replace(self, keys: Mapping[Owner, str], unreadable: frozenset[Owner]) -> None:
        self._keys, self._unreadable = dict(keys), unreadable

    def key_for(self, principal: Principal, provider_id: str) -> str | None:
        """The caller's own key for ``provider_id``, or None. Raises ServiceUnavailable when it has one this
        worker cannot decrypt."""
        if not self._keys and not self._unreadable:
            return None
        for owner_id in owners(principal):
            owner = (owner_id, provider_id)
            if owner in self._unreadable:
                raise ServiceUnavailable(
                    f"Your own key for {provider_id} cannot be decrypted by this gateway (secret key mismatch)",
                    code="secret_key_mismatch",
                )
            found = self._keys.get(owner)
            if found is not None:
                return found
        return None

    def has_key(self, principal: Principal, provider_id: str) -> bool:
        return self.key_for(principal, provider_id) is not None

    def as_dict(self) -> dict[Owner, str]:
        return dict(self._keys)

    def __repr__(self) -> str:
        return f"CallerKeys({len(self._keys)} keys, {len(self._unreadable)} unreadable)"
