"""Small JSON payloads sealed for a cookie: neither readable nor forgeable, and useless for another purpose.

    sealed = <key id> "." base64url(nonce[12] + AES-GCM(json, aad = purpose + key id))

The AES key is derived (HKDF-SHA256) from the store's secret key (``store/crypto.py``) and the purpose, so
the cookie key is never the key that encrypts stored secrets, and a session cookie is no sign-in cookie.
Every key the store's box holds opens a seal: rotating the secret key keeps sessions open.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson

from anygate.store.crypto import SecretBox, aead

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class Sealer:
    """Seals and opens payloads for one purpose; a payload's ``exp`` (UNIX time) ends it."""

    def __init__(self, box: SecretBox, purpose: str) -> None:
        self._box = box
        self._purpose = purpose.encode()
        self._keys: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return f"Sealer(purpose={self._purpose.decode()!r})"

    def _cipher(self, kid: str) -> AESGCM | None:
        cipher = self._keys.get(kid)
        if cipher is None:
            material = self._box.keys.get(kid)
            if material is None:
                return None
            # cryptography is imported when a seal is first made or opened (see ``store.crypto.aead``).
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            derive = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"anygate cookie: " + self._purpose)
            cipher = self._keys[kid] = aead(derive.derive(material))
        return cipher

    def seal(self, payload: dict[str, Any]) -> str:
        kid = self._box.current
        cipher = self._cipher(kid)
        assert cipher is not None  # the box's current key is always among its keys
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = cipher.encrypt(nonce, orjson.dumps(payload), self._purpose + kid.encode())
        return f"{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, value: str, now: float | None = None) -> dict[str, Any] | None:
        """The payload, or None when the value was not sealed here for this purpose, or has expired."""
        kid, dot, data = value.partition(".")
        cipher = self._cipher(kid) if dot else None
        if cipher is None:
            return None
        from cryptography.exceptions import InvalidTag

        try:
            blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
            plain = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._purpose + kid.encode())
            payload = orjson.loads(plain)
        except (binascii.Error, ValueError, InvalidTag, orjson.JSONDecodeError):
            return None
        if not isinstance(payload, dict):
            return None
        expires = payload.get("exp")
        if not isinstance(expires, int | float) or expires <= (time.time() if now is None else now):
            return None
        return payload
