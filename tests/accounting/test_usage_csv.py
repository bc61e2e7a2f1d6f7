"""The usage CSV export: what a client chose (a model name) never becomes a spreadsheet formula."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from anygate.accounting.reports import as_csv
from tests.accounting.gateway import ADMIN_KEY, fake_provider_settings
from tests.support.fake_upstream import FakeUpstream, Usage
from tests.support.inprocess import inprocess_gateway

HOSTILE_MODELS = ['=HYPERLINK("http://evil.example","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "\rx"]


def read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("model", HOSTILE_MODELS)
def test_a_text_cell_that_would_start_a_formula_is_quoted(model: str) -> None:
    rows = [{"model": model, "requests": 1, "input_tokens": 7, "output_tokens": 3, "cost_usd": None}]
    header, row = read(as_csv(rows, ["model"]))
    assert row[0] == "'" + model and header[0] == "model"
    cells = dict(zip(header, row, strict=True))
    assert [cells[name] for name in ("requests", "input_tokens", "output_tokens", "cost_usd")] == ["1", "7", "3", ""]


@pytest.mark.parametrize("model", ["a\rb", "a\nb", "a\r\nb,c"])
def test_a_line_break_in_a_text_cell_never_starts_a_row(model: str) -> None:
    rows = [{"model": model, "requests": 1}, {"model": "next", "requests": 2}]
    assert [row[:2] for row in read(as_csv(rows, ["model"]))[1:]] == [[model, "1"], ["next", "2"]]


def test_numbers_stay_numbers_even_negative_and_plain_text_is_unchanged() -> None:
    rows = [{"model": "gpt-4o", "user": "usr_1", "requests": 2, "cost_usd": -0.5, "byok_cost_usd": 0.25}]
    (header, row) = read(as_csv(rows, ["model", "user"]))
    assert header[:4] == ["model", "user", "user_name", "requests"]
    assert row[:4] == ["gpt-4o", "usr_1", "", "2"]
    assert row[-3] == "-0.5" and row[-1] == "0.25"


def test_the_export_route_quotes_a_model_name_a_client_sent(tmp_path: Path) -> None:
    upstream = FakeUpstream(usage=Usage(7, 3)).in_memory()
    with (
        inprocess_gateway(fake_provider_settings(upstream.base_url, tmp_path), upstream) as gw,
        gw.client(ADMIN_KEY) as http,
    ):
        for model in HOSTILE_MODELS[:4]:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            assert http.post("/proxy/fake/v1/chat/completions", json=body).status_code == 200
        exported = http.get("/v1/usage", params={"group_by": "model", "format": "csv"})
    assert exported.status_code == 200
    cells = [row[0] for row in read(exported.text)[1:]]
    assert sorted(cells) == sorted("'" + model for model in HOSTILE_MODELS[:4])
