"""Two gateways on one database behave like two replicas: a change made through one reaches the other
within seconds (by the revision poll), with no restart."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.conftest import eventually, require_redis, upstream_provider
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread() as up:
        yield up


def test_changes_on_one_replica_reach_the_other(upstream, make_settings, serve) -> None:
    settings = make_settings()
    first, second = serve(settings), serve(settings)
    provider = upstream_provider("shared", upstream.base_url, models=["fake-model"])
    with first.client() as admin:
        assert admin.post("/v1/providers", json=provider).status_code == 201
        key = admin.post("/v1/keys", json={"alias": "roaming"}).json()
    with second.client(key["key"]) as http:

        def chat() -> tuple[int, str]:
            response = http.post("/v1/chat/completions", json={"model": "shared/fake-model", "messages": HI})
            return response.status_code, response.text

        def chat_status() -> int:
            return chat()[0]

        eventually(lambda: "No API key configured for shared" in chat()[1], "the key and provider reach replica 2")
        assert http.get("/v1/providers").json()["data"][0]["id"] == "shared"
        with first.client(key["key"]) as own:
            assert own.put(
                "/auth/creds", json={"providers": {"shared": {"apiKey": "sk-own-key-for-shared"}}}
            ).is_success
        eventually(lambda: chat_status() == 200, "the caller's own key is used on the second replica")
        assert (
            upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer sk-own-key-for-shared"
        )
        with first.client() as admin:
            assert admin.put("/v1/providers/shared", json={"api_key": "sk-operator"}).is_success
            assert admin.delete(f"/v1/keys/{key['id']}").is_success
        eventually(lambda: http.get("/v1/models").status_code == 401, "the revoked key stops on the second replica")
    with second.client() as admin:
        eventually(lambda: admin.get("/v1/providers/shared").json()["api_key"] == "***", "the key shows as set")
        with first.client() as other:
            assert other.delete("/v1/providers/shared").is_success
        eventually(lambda: admin.get("/v1/providers/shared").status_code == 404, "the deletion reaches it")


def subscribers(redis_url: str, channel: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(dict(client.pubsub_numsub(channel))[channel.encode()])
    finally:
        client.close()


def test_with_redis_a_change_is_pushed_without_waiting_for_the_poll(make_settings, serve, database_url) -> None:
    from anygate.store.notify import channel_for

    redis_url = require_redis()
    # A poll this slow never fires during the test: only the Redis message can carry the change.
    settings = make_settings(redis_url=redis_url, store_poll_interval=3600)
    first, second = serve(settings), serve(settings)
    channel = channel_for(settings.resolved_database_url)
    eventually(lambda: subscribers(redis_url, channel) >= 2, "both replicas listen")
    with first.client() as admin:
        key = admin.post("/v1/keys", json={"alias": "pushed"}).json()
    with second.client(key["key"]) as http:
        eventually(lambda: http.get("/v1/models").status_code == 200, "the new key works on the second replica")
        with first.client() as admin:
            assert admin.delete(f"/v1/keys/{key['id']}").is_success
        eventually(lambda: http.get("/v1/models").status_code == 401, "the revoked key stops on the second replica")
