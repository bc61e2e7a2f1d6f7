"""The access line: written by anygate's handler without a LogRecord when nothing else would see the record,
the same line either way, secrets masked either way, and through logging whenever anything else listens."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import pytest

from anygate.log_batches import BatchedStreamHandler
from anygate.telemetry import REQUEST_ID, JsonFormatter, TextFormatter, configure_logging, direct_handler
from tests.support.inprocess import InProcessGateway

ACCESS = logging.getLogger("anygate.access")


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The root logger configured as ``anygate serve`` configures it, writing to a string; restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    configure_logging("info", "json")
    try:
        yield stream
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level = saved[0], saved[1]


@contextmanager
def only_anygates_handler() -> Iterator[None]:
    """Without pytest's own capturing handler, which it adds to the root for each test: the root as it is in
    ``anygate serve``."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [h for h in saved if isinstance(h, BatchedStreamHandler)]
    try:
        yield
    finally:
        root.handlers[:] = saved


def access_lines(stream: io.StringIO) -> list[dict[str, object]]:
    logging.getLogger().handlers[0].flush()
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "anygate.access"]


def test_a_model_request_is_logged_once_in_json_without_a_record(stderr: io.StringIO, gw: InProcessGateway) -> None:
    with only_anygates_handler(), gw.client() as http:
        assert direct_handler(ACCESS, logging.INFO) is not None
        answer = http.post(
            "/v1/chat/completions", json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        )
    assert answer.status_code == 200
    [line] = [line for line in access_lines(stderr) if line["path"] == "/v1/chat/completions"]
    assert line["msg"] == "request" and line["level"] == "info" and line["status"] == 200
    assert line["request_id"] == answer.headers["x-request-id"]
    assert line["key"] == "admin" and line["provider"] == "fake" and line["stream"] is False
    assert str(line["ts"]).endswith("Z")


def test_a_secret_in_a_requested_path_is_masked_on_the_direct_path(stderr: io.StringIO, gw: InProcessGateway) -> None:
    with only_anygates_handler(), gw.client() as http:
        http.get("/v1/nothing/sk-live-0123456789abcdef")
    [line] = [line for line in access_lines(stderr) if str(line["path"]).startswith("/v1/nothing/")]
    assert "0123456789abcdef" not in str(line["path"]) and "***" in str(line["path"])


def test_anything_else_listening_gets_the_record_instead(stderr: io.StringIO) -> None:
    assert direct_handler(ACCESS, logging.INFO) is None  # pytest's capturing handler is on the root too
    with only_anygates_handler():
        assert direct_handler(ACCESS, logging.INFO) is not None
        a_filter = logging.Filter("nothing")
        ACCESS.addFilter(a_filter)
        try:
            assert direct_handler(ACCESS, logging.INFO) is None
        finally:
            ACCESS.removeFilter(a_filter)
        ACCESS.propagate = False
        try:
            assert direct_handler(ACCESS, logging.INFO) is None
        finally:
            ACCESS.propagate = True
        assert direct_handler(ACCESS, logging.INFO) is not None


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_a_line_made_from_its_parts_is_the_line_made_from_a_record(formatter: JsonFormatter | TextFormatter) -> None:
    fields = {"method": "POST", "path": "/v1/chat/completions", "status": 200, "key": "key_0123", "model": "a b"}
    record = ACCESS.makeRecord(ACCESS.name, logging.INFO, "", 0, "request", (), None, extra={"fields": fields})
    token = REQUEST_ID.set("req-1")
    try:
        made = formatter.line(record.created, "INFO", ACCESS.name, "request", fields)
        assert made == formatter.format(record)
    finally:
        REQUEST_ID.reset(token)
    assert "key_0123" in made  # a key id is no secret: the masking leaves it (its "key_" prefix is not "api_key")
