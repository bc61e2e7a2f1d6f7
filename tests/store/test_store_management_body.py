"""Management request bodies at the edge: JSON whatever the content type (``curl -d`` sends
``application/x-www-form-urlencoded``), a clear 400 for a body that is not JSON, and the body-size cap
(413) that the hot routes have."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.store.conftest import upstream_provider


@pytest.fixture
def gateway(make_settings, serve):  # type: ignore[no-untyped-def]
    return serve(make_settings(max_body_bytes=4096))


@pytest.mark.parametrize(
    "content_type", [None, "application/x-www-form-urlencoded", "text/plain", "application/json; charset=utf-8"]
)
def test_a_json_body_is_read_whatever_its_content_type(gateway, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    with gateway.client() as http:
        key = http.post("/v1/keys", content=orjson.dumps({"alias": "curl"}), headers=headers)
        assert key.status_code == 201, key.text
        provider = upstream_provider("lab", "http://127.0.0.1:9/v1")
        created = http.post("/v1/providers", content=orjson.dumps(provider), headers=headers)
        assert created.status_code == 201, created.text
        updated = http.put("/v1/providers/lab", content=b'{"name": "Lab"}', headers=headers)
        assert updated.json()["name"] == "Lab"
    with gateway.client(key.json()["key"]) as own:
        body = orjson.dumps({"providers": {"lab": {"apiKey": "sk-own-lab-key-123"}}})
        assert own.put("/auth/creds", content=body, headers=headers).status_code == 200


def test_a_body_that_is_not_json_is_a_400_naming_the_problem(gateway) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    with gateway.client() as http:
        for path in ("/v1/keys", "/v1/providers", "/v1/users"):
            response = http.post(path, content=b"alias=curl&models=x", headers=form)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "invalid_json" and error["type"] == "invalid_request_error"
            assert "not valid JSON" in error["message"] and "application/x-www-form-urlencoded" in error["message"]
        for path in ("/v1/keys", "/v1/providers", "/v1/users"):
            not_object = http.post(path, content=b"[1, 2]").json()["error"]
            assert (not_object["code"], not_object["message"]) == ("invalid_body", "Request body must be a JSON object")
            empty = http.post(path).json()["error"]
            assert empty["message"] == "Request body is empty; expected a JSON object", path


def chunks(size: int) -> Iterator[bytes]:
    yield b'{"alias": "'
    for _ in range(size // 1024):
        yield b"x" * 1024
    yield b'"}'


def test_management_bodies_are_capped_like_the_hot_routes(gateway) -> None:
    big = orjson.dumps({"alias": "x" * 8192})
    with gateway.client() as http:
        for response in (
            http.post("/v1/keys", content=big),  # declared length over the cap
            http.post("/v1/keys", content=chunks(8192)),  # chunked: counted while read
            http.put("/v1/providers/any", content=big),
            http.put("/auth/creds", content=big),
        ):
            assert response.status_code == 413, response.text
            error = response.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "body_too_large")
            assert "4096 bytes" in error["message"] and response.headers["x-request-id"]
        assert http.get("/v1/keys").json()["data"] == []
        assert http.post("/v1/keys", content=orjson.dumps({"alias": "small"})).status_code == 201
