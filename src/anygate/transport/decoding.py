"""A response body's ``Content-Encoding`` (gzip, deflate) undone in bounded pieces.

Compressed bytes are untrusted: 64 KiB of them can hold 64 MiB of zeros. The decoder keeps what it was
fed and gives back at most ``limit`` decoded bytes per call, so a connection decodes only as fast as its
reader takes the body (the rest waits compressed, the socket paused). A gzip body may hold several
members (RFC 1952): each is decoded in turn.
"""

from __future__ import annotations

import zlib

GZIP_MAGIC = b"\x1f\x8b"
DEFLATE = 32 + zlib.MAX_WBITS  # a zlib stream (or gzip, detected by its header)
RAW_DEFLATE = -zlib.MAX_WBITS  # what some servers send as "deflate": no zlib header at all
WBITS = {b"gzip": 16 + zlib.MAX_WBITS, b"x-gzip": 16 + zlib.MAX_WBITS, b"deflate": DEFLATE}


class BodyDecoder:
    """Decodes one body. ``feed`` compressed bytes, take ``decode(limit)`` until ``has_input`` is False,
    ``flush`` at the body's end. A corrupt body raises ``zlib.error``."""

    __slots__ = ("_wbits", "_zlib", "_input", "_has_begun")

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._zlib = zlib.decompressobj(wbits)
        self._input = b""
        self._has_begun = False  # a byte was fed: the stream's header has been looked at

    @classmethod
    def for_encoding(cls, encoding: bytes) -> BodyDecoder | None:
        """The decoder for a ``Content-Encoding`` value, or None for one passed on as it is."""
        wbits = WBITS.get(encoding.strip().lower())
        return None if wbits is None else cls(wbits)

    @property
    def has_input(self) -> bool:
        return bool(self._input)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        if not self._has_begun:
            self._has_begun = True
            if self._wbits == DEFLATE and data[0] & 0x0F != 8 and data[0] != GZIP_MAGIC[0]:
                self._wbits = RAW_DEFLATE  # the first byte is no zlib header (its method nibble is not 8)
                self._zlib = zlib.decompressobj(RAW_DEFLATE)
        self._input = self._input + data if self._input else data

    def decode(self, limit: int) -> bytes:
        """At most ``limit`` decoded bytes of what was fed (b"" when it needs more input)."""
        pieces: list[bytes] = []
        produced = 0
        while self._input and produced < limit:
            piece = self._zlib.decompress(self._input, limit - produced)
            produced += len(piece)
            pieces.append(piece)
            if self._zlib.eof:
                self._input = self._next_member(self._zlib.unused_data)
            else:
                self._input = self._zlib.unconsumed_tail
        return b"".join(pieces)

    def flush(self) -> bytes:
        """What the decoder still holds, once the whole body was fed and decoded. A stream that stops
        before its own end raises ``zlib.error``: the body was cut."""
        rest = self._zlib.flush()
        if self._has_begun and not self._zlib.eof:
            raise zlib.error("the compressed body ends before its stream does")
        return rest

    def _next_member(self, rest: bytes) -> bytes:
        """After a gzip member, the next one's bytes; anything else after the end is dropped."""
        if self._wbits & 16 and rest and GZIP_MAGIC.startswith(rest[:2]):  # (its first byte may come alone)
            self._zlib = zlib.decompressobj(self._wbits)
            return rest
        return b""
