"""Callers' own provider keys (bring your own key), as the request path reads them: no database query.

The store's sync fills it; a key is found by its owner (the caller's user, else its key) and provider.
"""

from __future__ import annotations

from collections.abc import Mapping

from anygate.auth import Principal
from anygate.errors import ServiceUnavailable

Owner = tuple[str, str]  # (user id or key id, provider id)


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
        owner = (principal.user_id or principal.key_id, provider_id)
        if owner in self._unreadable:
            raise ServiceUnavailable(
                f"Your own key for {provider_id} cannot be decrypted by this gateway (secret key mismatch)",
                code="secret_key_mismatch",
            )
        return self._keys.get(owner)

    def has_key(self, principal: Principal, provider_id: str) -> bool:
        return self.key_for(principal, provider_id) is not None

    def as_dict(self) -> dict[Owner, str]:
        return dict(self._keys)

    def __repr__(self) -> str:
        return f"CallerKeys({len(self._keys)} keys, {len(self._unreadable)} unreadable)"
