"""docs/security.md names the test behind each guarantee: every one it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `tests/x.py::test_name` names a file and a test; a bare `::test_name` after it, another test in that file.
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)?::(\w+)")


def named_tests() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        current = ""
        for path, name in REFERENCE.findall(line):
            current = path or current
            assert current, f"a bare ::{name} with no file before it in: {line[:80]}"
            found.append((current, name))
    return found


def test_every_test_the_security_document_names_exists() -> None:
    named = named_tests()
    assert len(named) > 50  # the document's tables, not an empty parse
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).is_file()
        or not re.search(rf"^\s*(async )?def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []
