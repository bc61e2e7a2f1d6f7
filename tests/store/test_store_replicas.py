"""Two gateways on one database behave like two replicas: a change made through one reaches the other
within seconds (by the revision poll), with no restart."""

from __future__ import annotations

import pytest

from tests.store.conftest import eventually, require_redis, upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream())


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


@pytest.mark.services
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


def test_a_replica_with_another_secret_key_keeps_keys_in_step_and_says_what_is_wrong(
    upstream, make_settings, serve
) -> None:
    """Replica B has another ANYGATE_SECRET_KEY than A: what A encrypts, B cannot read. B must still see
    every key and revocation, route nothing it cannot decrypt, say why in /health/ready, and refuse to
    store secrets of its own (which A could not read), all without a 500."""
    from anygate.store.crypto import SecretBox, generate_key

    key_a, key_b = generate_key(), generate_key()
    key_a_id = SecretBox.from_texts([key_a], "a").current
    operator = upstream_provider("campus", upstream.base_url, api_key="sk-operator-key-1", models=["fake-model"])
    first = serve(make_settings(secret_key=key_a, providers=[operator]))
    second = serve(make_settings(secret_key=key_b, providers=[operator]))
    vault = upstream_provider("vault", upstream.base_url, api_key="sk-vault-key-1", headers={"X-Api-Key": "hdr"})
    with first.client() as admin:
        assert admin.post("/v1/providers", json={**vault, "models": ["fake-model"]}).status_code == 201
        caller = admin.post("/v1/keys", json={"alias": "caller"}).json()
    with first.client(caller["key"]) as own:
        assert own.put("/auth/creds", json={"providers": {"campus": {"apiKey": "sk-callers-own-1"}}}).is_success
    mismatch = f"secret key mismatch: key id {key_a_id} unknown"
    with second.client() as admin, second.client(caller["key"]) as http:
        eventually(lambda: http.get("/v1/models").status_code == 200, "the new key works on replica B")
        eventually(  # the caller's own key is written after the key: it may reach B a poll later
            lambda: "credentials of " in admin.get("/health/ready").text, "replica B finds the caller's own key"
        )
        ready = admin.get("/health/ready")
        assert ready.status_code == 503
        assert mismatch in ready.json()["error"]["message"]
        assert "provider 'vault'" in ready.json()["error"]["message"]
        listed = {p["id"]: p for p in admin.get("/v1/providers").json()["data"]}
        assert listed["vault"]["unavailable"] == mismatch and listed["vault"]["healthy"] is False
        assert admin.get("/v1/providers/vault").json()["unavailable"] == mismatch
        before = len(upstream.requests_to("/v1/chat/completions"))
        chat = {"model": "vault/fake-model", "messages": HI}
        assert admin.post("/v1/chat/completions", json=chat).status_code == 404
        own_key = http.post("/v1/chat/completions", json={**chat, "model": "campus/fake-model"})
        assert own_key.status_code == 503 and own_key.json()["error"]["code"] == "secret_key_mismatch"
        assert len(upstream.requests_to("/v1/chat/completions")) == before  # nothing undecryptable went out
        created = admin.post("/v1/keys", json={"alias": "made-on-b"})
        assert created.status_code == 201, created.text
        for refused in (
            admin.post("/v1/providers", json=upstream_provider("other", upstream.base_url, api_key="sk-b")),
            admin.put("/v1/providers/vault", json={"name": "renamed"}),
            http.put("/auth/creds", json={"providers": {"campus": {"apiKey": "sk-written-on-b"}}}),
            http.get("/auth/creds"),
        ):
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "secret_key_mismatch"
            assert key_a_id in refused.json()["error"]["message"]
        with first.client() as admin_a:
            assert admin_a.get("/health/ready").status_code == 200
            assert admin_a.delete(f"/v1/keys/{caller['id']}").is_success
            eventually(lambda: http.get("/v1/models").status_code == 401, "the revocation reaches replica B")
            with first.client(created.json()["key"]) as made_on_b:
                eventually(lambda: made_on_b.get("/v1/models").status_code == 200, "B's new key works on A")
            assert admin_a.delete("/v1/providers/vault").is_success

        # The deleted provider, and the revoked key's own provider key (dropped with the key), are no longer
        # problems: replica B is ready again.
        eventually(lambda: admin.get("/health/ready").status_code == 200, "replica B is ready again")
