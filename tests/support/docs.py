"""The code blocks of a document (README.md, docs/*.md), so that tests run what the documents show."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.S | re.M)


def code_blocks(document: str, language: str) -> list[str]:
    """Every fenced block of ``language`` in ``document`` (a path from the repository's root), in order."""
    text = (ROOT / document).read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def code_block(document: str, language: str, containing: str) -> str:
    """The one block of ``language`` that contains ``containing``."""
    [block] = [body for body in code_blocks(document, language) if containing in body]
    return block
