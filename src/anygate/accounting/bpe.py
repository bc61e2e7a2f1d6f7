"""Token counts by byte-pair encoding over a tiktoken-format vocabulary (cl100k_base ships with anygate).

Why not a compiled tokenizer: the counts are for estimates (a prompt a budget reserves for, or usage an
upstream did not report), and bpe-openai's vocabularies cost ~100 MB of memory (tiktoken's ~40 MB) where
this costs ~15 MB and needs nothing but the standard library. It counts the same tokens as tiktoken on
ordinary text: the split into pieces is cl100k's pattern with Python's character classes (``[^\\W\\d_]``
for a letter, ``\\d`` for a digit: Unicode's other numerals, rare, count as letters), and each piece is
merged by rank as BPE does. Short prompts count faster than through bpe-openai's binding (no list of
ids is built); long ones at about its speed once their pieces are known.

The merge is quadratic in a piece's length, so a piece is merged in slices of ``SLICE`` bytes, and one
call merges at most ``MERGE_BUDGET`` bytes of pieces not seen before, a long piece's included: past that
(only text made to be expensive gets there) a piece counts as one token per byte, which no tokenization
exceeds. Slicing keeps
apart only the pairs that straddle a slice's edge, so both err towards more tokens, never fewer: an
estimate reserves more, not less.
"""

from __future__ import annotations

import base64
import gzip
import re
from pathlib import Path

CL100K_BASE = Path(__file__).parent / "vocabularies" / "cl100k_base.tiktoken.gz"

_LETTER = r"[^\W\d_]"
_NOT_LETTER_OR_DIGIT = r"(?:_|[^\w\r\n])"
_SYMBOLS = r"(?:_|[^\s\w])"
CL100K_PATTERN = re.compile(
    r"'(?i:[sdmt]|ll|ve|re)"
    rf"|{_NOT_LETTER_OR_DIGIT}?+{_LETTER}++"
    r"|\d{1,3}+"
    rf"| ?{_SYMBOLS}++[\r\n]*+"
    r"|\s++$|\s*[\r\n]|\s+(?!\S)|\s"
)

SLICE = 64  # bytes of one piece merged at a time
MERGE_BUDGET = 64 * 1024  # bytes of unseen pieces one count merges; the rest count a token per byte
MEMO_SIZE = 16_384  # pieces not in the vocabulary whose counts are remembered
MEMO_PIECE = 256  # bytes: a longer piece (a blob, a run made to be expensive) is never remembered
_NO_MERGE = 1 << 62


class MergeBudget:
    """Bytes of unseen pieces still to be merged by the counts that share it."""

    __slots__ = ("left",)

    def __init__(self, left: int = MERGE_BUDGET) -> None:
        self.left = left


class Vocabulary:
    """A BPE vocabulary (token bytes -> merge rank) that counts a text's tokens."""

    def __init__(self, ranks: dict[bytes, int], name: str = "cl100k_base") -> None:
        self.name = name
        self._ranks = ranks
        self._memo: dict[str, int] = {}  # piece -> tokens, for pieces that are not one token

    def __repr__(self) -> str:
        return f"Vocabulary({self.name}, {len(self._ranks)} tokens)"

    @classmethod
    def load(cls, path: Path = CL100K_BASE) -> Vocabulary:
        """Blocking (~0.15 s): read a gzipped tiktoken file, one ``base64-token rank`` a line."""
        ranks: dict[bytes, int] = {}
        with gzip.open(path, "rb") as lines:
            for line in lines:  # line by line: the whole file's lines at once would double the peak
                token, _, rank = line.partition(b" ")
                if rank:
                    ranks[base64.b64decode(token)] = int(rank)
        return cls(ranks, path.name.split(".", 1)[0])

    def count(self, text: str, budget: MergeBudget | None = None) -> int:
        """The tokens of ``text``, merging at most what ``budget`` has left (None: ``MERGE_BUDGET``) of pieces
        not seen before; texts counted as one share a budget."""
        ranks, memo = self._ranks, self._memo
        total = 0
        if budget is None:
            budget = MergeBudget()
        for piece in CL100K_PATTERN.findall(text):
            known = memo.get(piece)
            # Once the budget is spent, a piece counts a token a byte whether or not it was seen: what the
            # memo holds (pieces of every caller's texts) must not show in one caller's count.
            if known is not None and budget.left > 0:
                total += known
                continue
            encoded = piece.encode()
            if encoded in ranks:
                total += 1
                continue
            if budget.left <= 0:
                total += len(encoded)
                continue
            # At most what the budget has left of the piece is merged, the rest a token a byte: one piece of
            # a megabyte (a run of one letter) would otherwise take a second of the event loop.
            merged = encoded[: budget.left]
            budget.left -= len(merged)
            tokens = sum(self._merge(merged[at : at + SLICE]) for at in range(0, len(merged), SLICE))
            tokens += len(encoded) - len(merged)
            if len(merged) == len(encoded) <= MEMO_PIECE and len(memo) < MEMO_SIZE:
                memo[piece] = tokens
            total += tokens
        return total

    def _merge(self, piece: bytes) -> int:
        """How many tokens byte-pair merging leaves of ``piece``: the lowest-ranked pair first, repeatedly."""
        rank = self._ranks.get
        parts = [piece[at : at + 1] for at in range(len(piece))]
        pairs = [rank(parts[at] + parts[at + 1], _NO_MERGE) for at in range(len(parts) - 1)]
        while pairs:
            lowest = min(pairs)
            if lowest == _NO_MERGE:
                break
            at = pairs.index(lowest)
            parts[at] += parts.pop(at + 1)
            del pairs[at]
            if at < len(pairs):
                pairs[at] = rank(parts[at] + parts[at + 1], _NO_MERGE)
            if at:
                pairs[at - 1] = rank(parts[at - 1] + parts[at], _NO_MERGE)
        return len(parts)
