"""Secrets at rest: AES-GCM with a versioned ciphertext that names its key, so keys can be rotated.

    ciphertext = "v1:" + key_id + ":" + base64url(nonce[12] + AES-GCM(plaintext, aad=key_id))

The key comes from ``ANYGATE_SECRET_KEY`` (one or more keys, comma separated, the first encrypts) or,
when that is unset, from the key file ``secret.keys`` in the data dir (mode 0600, one key a line, the
first encrypts). Every listed key decrypts, which is what lets ``anygate secrets rotate`` re-encrypt
everything under a new key while running workers still read both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from anygate.files import make_private_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_FILE = "secret.keys"
NONCE_BYTES = 12


class SecretKeyError(Exception):
    """A stored secret cannot be decrypted with the keys given; the message says which key is missing.

    ``key_id`` is the id of the key the secret needs when that key is simply not among those given.
    """

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id

    @property
    def summary(self) -> str:
        """A short reason for readiness and provider views: ``secret key mismatch: key id 142d7432 unknown``."""
        if self.key_id is not None:
            return f"secret key mismatch: key id {self.key_id} unknown"
        return str(self)


def aead(material: bytes) -> AESGCM:
    """AES-GCM under ``material``. cryptography (its own OpenSSL, ~7 MiB resident) is imported the first
    time a secret is sealed or opened: a gateway whose store holds none never loads it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(material)


def generate_key() -> str:
    """A fresh 256-bit key, base64url-encoded (what ANYGATE_SECRET_KEY and the key file hold)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def key_material(text: str) -> bytes:
    """32 bytes from a base64url 256-bit key; any other string is stretched with SHA-256."""
    stripped = text.strip()
    try:
        raw = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    return raw if len(raw) == 32 else hashlib.sha256(stripped.encode()).digest()


def key_id(material: bytes) -> str:
    """A short public name for a key (not reversible): the first 8 hex digits of a keyed digest."""
    return hashlib.sha256(b"anygate-key-id:" + material).hexdigest()[:8]


@dataclass
class SecretBox:
    """Encrypts with the first key; decrypts with whichever key the ciphertext names."""

    keys: dict[str, bytes]
    current: str
    source: str = "ANYGATE_SECRET_KEY"
    key_file: Path | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"SecretBox(current={self.current!r}, keys={sorted(self.keys)}, source={self.source!r})"

    @classmethod
    def from_texts(cls, texts: list[str], source: str, key_file: Path | None = None) -> SecretBox:
        materials = [key_material(t) for t in texts if t.strip()]
        if not materials:
            raise SecretKeyError(f"{source} holds no key")
        keys = {key_id(m): m for m in materials}
        return cls(keys, key_id(materials[0]), source, key_file)

    def encrypt(self, plaintext: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = aead(self.keys[self.current]).encrypt(nonce, plaintext.encode(), self.current.encode())
        return f"{VERSION}:{self.current}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, ciphertext: str) -> str:
        kid = ciphertext_key_id(ciphertext)
        material = self.keys.get(kid)
        if material is None and self.key_file is not None:
            self.reload()  # another process may have rotated the key file
            material = self.keys.get(kid)
        if material is None:
            raise SecretKeyError(
                f"a stored secret was encrypted with key id {kid}, which is not among the keys in {self.source} "
                f"(key ids {', '.join(sorted(self.keys))}); set ANYGATE_SECRET_KEY to the key it was made with",
                key_id=kid,
            )
        blob = base64.urlsafe_b64decode(ciphertext.split(":", 2)[2])
        cipher = aead(material)
        from cryptography.exceptions import InvalidTag

        try:
            return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], kid.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(f"a stored secret under key id {kid} failed its integrity check") from None

    def needs_rotation(self, ciphertext: str) -> bool:
        return ciphertext_key_id(ciphertext) != self.current

    def reload(self) -> None:
        if self.key_file is None or not self.key_file.is_file():
            return
        fresh = SecretBox.from_texts(read_key_file(self.key_file), self.source, self.key_file)
        self.keys = {**self.keys, **fresh.keys}
        self.current = fresh.current


def ciphertext_key_id(ciphertext: str) -> str:
    parts = ciphertext.split(":", 2)
    if len(parts) != 3 or parts[0] != VERSION:
        raise SecretKeyError("a stored secret is not in a known format (expected v1:<key id>:<data>)")
    return parts[1]


def read_key_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def write_key_file(path: Path, keys: list[str]) -> None:
    """Write the key file atomically with mode 0600 (the first key encrypts)."""
    make_private_dir(path.parent)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("# anygate secret keys: the first encrypts, every one decrypts. Keep this file private.\n")
        handle.write("\n".join(keys) + "\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def load_secret_box(secret_key: str | None, data_dir: Path, may_create: bool) -> SecretBox:
    """The box for ``ANYGATE_SECRET_KEY`` or the key file; make the key file only when ``may_create``."""
    if secret_key:
        return SecretBox.from_texts(secret_key.split(","), "ANYGATE_SECRET_KEY")
    path = data_dir / KEY_FILE
    if path.is_file():
        return SecretBox.from_texts(read_key_file(path), str(path), path)
    if not may_create:
        raise SecretKeyError(
            f"the store holds encrypted secrets but neither ANYGATE_SECRET_KEY nor the key file {path} is there"
        )
    write_key_file(path, [generate_key()])
    return SecretBox.from_texts(read_key_file(path), str(path), path)
