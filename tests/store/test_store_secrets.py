"""Secrets at rest: AES-GCM ciphertext with version and key id, no plaintext in the database, clear
errors for a wrong or missing key, and rotation under a running gateway."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anygate.cli import app as cli_app
from anygate.settings import Settings
from anygate.store.crypto import KEY_FILE, SecretBox, SecretKeyError, ciphertext_key_id, generate_key
from anygate.store.store import Store, encrypted_values, open_store, rotate_secrets
from tests.store.conftest import eventually, run_sql, upstream_provider
from tests.support.fake_transport import FakeNetwork
from tests.support.fake_upstream import FakeUpstream

PROVIDER_SECRET = "sk-provider-plaintext-canary-7f3a"
CALLER_SECRET = "sk-caller-plaintext-canary-91bd"
HEADER_SECRET = "hdr-plaintext-canary-55e0"
EXTRA_KEY_SECRET = "sk-extra-plaintext-canary-c2d8"
HI = [{"role": "user", "content": "hi"}]


def test_ciphertext_names_version_and_key_and_detects_tampering() -> None:
    box = SecretBox.from_texts([generate_key()], "test")
    sealed = box.encrypt("hello")
    version, key_id, _ = sealed.split(":", 2)
    assert (version, key_id) == ("v1", box.current)
    assert box.decrypt(sealed) == "hello"
    assert box.encrypt("hello") != sealed  # a fresh nonce each time
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SecretKeyError, match="integrity"):
        box.decrypt(tampered)
    other = SecretBox.from_texts([generate_key()], "ANYGATE_SECRET_KEY")
    with pytest.raises(SecretKeyError, match=f"key id {key_id}") as caught:
        other.decrypt(sealed)
    assert "hello" not in str(caught.value)
    with pytest.raises(SecretKeyError, match="format"):
        box.decrypt("plaintext")


def test_several_keys_decrypt_and_the_first_encrypts() -> None:
    old, new = generate_key(), generate_key()
    before = SecretBox.from_texts([old], "env").encrypt("x")
    both = SecretBox.from_texts([new, old], "env")
    assert both.decrypt(before) == "x"
    assert ciphertext_key_id(both.encrypt("y")) == both.current != ciphertext_key_id(before)


@pytest.fixture
def upstream(network: FakeNetwork) -> FakeUpstream:
    return network.add(FakeUpstream())


def store_secrets(gateway: Any, upstream: FakeUpstream) -> str:
    """Save a provider key and a caller's key through the API; return the caller's gateway key."""
    with gateway.client() as http:
        provider = upstream_provider(
            "vault",
            upstream.base_url,
            api_key=PROVIDER_SECRET,
            api_keys=[EXTRA_KEY_SECRET],
            headers={"X-Api-Key": HEADER_SECRET, "X-Tenant": "cs"},
            models=["fake-model"],
        )
        created = http.post("/v1/providers", json=provider)
        assert created.status_code == 201, created.text
        assert (created.json()["api_keys"], created.json()["headers"]) == (
            ["***"],
            {"X-Api-Key": "***", "X-Tenant": "cs"},
        )
        caller = http.post("/v1/keys", json={"alias": "caller"}).json()["key"]
    with gateway.client(caller) as http:
        assert http.put("/auth/creds", json={"providers": {"vault": {"apiKey": CALLER_SECRET}}}).status_code == 200
    return str(caller)


def raw_database_text(database_url: str, data_dir: Path) -> str:
    """Everything the database holds, read around anygate: the SQLite files, or PostgreSQL's tables."""
    if database_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in data_dir.glob("anygate.db*")).decode("latin-1")
    database = database_url.rsplit("/", 1)[1]
    rows: list[Any] = []
    for table in ("providers", "credentials", "api_keys", "users", "provider_probes"):
        rows += asyncio.run(run_sql(database, f"SELECT * FROM {table}"))
    return repr([dict(row) for row in rows])


def test_no_plaintext_secret_in_the_database(upstream, make_settings, serve, database_url, tmp_path) -> None:
    settings = make_settings()
    gateway = serve(settings)
    caller = store_secrets(gateway, upstream)
    raw = raw_database_text(database_url, settings.data_dir)
    assert "v1:" in raw  # the ciphertexts are there
    for secret in (PROVIDER_SECRET, CALLER_SECRET, caller, HEADER_SECRET, EXTRA_KEY_SECRET):
        assert secret not in raw
    assert upstream_saw_secrets(gateway, upstream)  # decrypted again on the way out
    key_file = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def upstream_saw_secrets(gateway: Any, upstream: FakeUpstream) -> bool:
    """The header goes upstream on every request, and both keys (the provider's and its extra one) are used."""
    keys: set[str] = set()
    with gateway.client() as http:
        for _ in range(40):  # two deployments (one per key), picked at random: both appear
            assert http.post("/v1/chat/completions", json={"model": "vault/fake-model", "messages": HI}).is_success
            seen = upstream.requests_to("/v1/chat/completions")[-1].headers
            assert seen["x-api-key"] == HEADER_SECRET
            keys.add(seen["authorization"])
    return keys == {f"Bearer {PROVIDER_SECRET}", f"Bearer {EXTRA_KEY_SECRET}"}


def test_plaintext_headers_and_keys_of_older_rows_are_encrypted_at_start(
    upstream, make_settings, serve, database_url
) -> None:
    """A provider row written before migration 0003 (headers and api_keys in the config, in clear)."""
    settings = make_settings()
    open_with(settings)  # migrated, key file made
    # auth "none": the provider has no key of its own, so every deployment (its own, and its extra key's) can serve
    config = {**upstream_provider("legacy", upstream.base_url, models=["fake-model"], auth="none")}
    config |= {"headers": {"X-Api-Key": HEADER_SECRET}, "api_keys": [EXTRA_KEY_SECRET]}
    asyncio.run(insert_old_row(database_url, config))
    assert HEADER_SECRET in raw_database_text(database_url, settings.data_dir)
    gateway = serve(settings)
    raw = raw_database_text(database_url, settings.data_dir)
    assert HEADER_SECRET not in raw and EXTRA_KEY_SECRET not in raw
    with gateway.client() as http:
        view = http.get("/v1/providers/legacy").json()
        assert (view["headers"], view["api_keys"]) == ({"X-Api-Key": "***"}, ["***"])
        assert http.post("/v1/chat/completions", json={"model": "legacy/fake-model", "messages": HI}).is_success
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["x-api-key"] == HEADER_SECRET


async def insert_old_row(database_url: str, config: dict[str, Any]) -> None:
    from anygate.store.database import Database
    from anygate.store.tables import providers, utcnow

    db = Database(database_url)
    try:
        async with db.connect() as connection:
            now = utcnow()
            await connection.execute(
                providers.insert().values(id=config["id"], config=config, created_at=now, updated_at=now)
            )
            await db.bump(connection)
    finally:
        await db.close()


def open_with(settings: Settings) -> None:
    """Open the store and close it again, in one event loop (raises what opening raises)."""

    async def run() -> None:
        store: Store = await open_store(settings)
        await store.close()

    asyncio.run(run())


# uvicorn ends its thread with SystemExit when startup fails: that is the behaviour under test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_wrong_or_missing_key_is_a_clear_error_at_start(upstream, make_settings, serve, caplog) -> None:
    settings = make_settings()
    store_secrets(serve(settings), upstream)
    key_id = SecretBox.from_texts((settings.data_dir / KEY_FILE).read_text().splitlines()[1:], "f").current
    wrong = make_settings(secret_key=generate_key())
    with pytest.raises(SecretKeyError, match=f"key id {key_id}"):
        open_with(wrong)
    (settings.data_dir / KEY_FILE).unlink()
    with pytest.raises(SecretKeyError, match="neither ANYGATE_SECRET_KEY nor the key file"):
        open_with(settings)
    assert not (settings.data_dir / KEY_FILE).exists()  # never a new key over old ciphertexts
    with pytest.raises(RuntimeError, match="did not start"):
        serve(wrong)  # as a server reports a failed start-up
    assert f"encrypted with key id {key_id}, which is not among the keys in ANYGATE_SECRET_KEY" in caplog.text


def test_rotation_reencrypts_everything_while_the_gateway_keeps_serving(
    upstream, make_settings, serve, database_url, monkeypatch
) -> None:
    settings = make_settings()
    gateway = serve(settings)
    caller = store_secrets(gateway, upstream)
    old_id = SecretBox.from_texts((settings.data_dir / KEY_FILE).read_text().splitlines()[1:], "f").current
    monkeypatch.setenv("ANYGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ANYGATE_DATABASE_URL", database_url)
    result = CliRunner().invoke(cli_app, ["secrets", "rotate"])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 3 secret(s)" in result.output  # the provider's key, its headers and keys, the caller's
    store = gateway.app.state.store
    key_ids = {ciphertext_key_id(value) for value in asyncio.run(stored_ciphertexts(database_url))}
    assert len(key_ids) == 1 and old_id not in key_ids
    eventually(lambda: gateway.app.state.store_watch.revision == asyncio.run(_revision(database_url)), "reload")
    assert store.box.current != old_id
    with gateway.client(caller) as http:
        reply = http.post("/v1/chat/completions", json={"model": "vault/fake-model", "messages": HI})
    assert reply.status_code == 200
    assert upstream.requests_to("/v1/chat/completions")[-1].headers["authorization"] == f"Bearer {CALLER_SECRET}"
    open_with(settings)


async def stored_ciphertexts(database_url: str) -> list[str]:
    from anygate.store.database import Database

    db = Database(database_url)
    try:
        return await encrypted_values(db)
    finally:
        await db.close()


async def _revision(database_url: str) -> int:
    from anygate.store.database import Database

    db = Database(database_url)
    try:
        return await db.revision()
    finally:
        await db.close()


def test_rotation_with_an_environment_key(upstream, make_settings, serve) -> None:
    old, new = generate_key(), generate_key()
    settings = make_settings(secret_key=old)
    store_secrets(serve(settings), upstream)

    key_id, count = asyncio.run(rotate_with(settings, new))
    assert count == 3
    open_with(make_settings(secret_key=new))
    with pytest.raises(SecretKeyError, match=f"key id {key_id}"):
        open_with(make_settings(secret_key=old))
    with pytest.raises(SecretKeyError, match="--new-key-stdin"):
        asyncio.run(rotate_with(make_settings(secret_key=new), None))


async def rotate_with(settings: Settings, new_key: str | None) -> tuple[str, int]:
    store = await open_store(settings)
    try:
        return await rotate_secrets(store, settings, new_key)
    finally:
        await store.close()


CLOUDFLARE_TOKEN = "cf-aig-token-0123456789"


def test_a_via_gateway_token_is_encrypted_at_rest_and_kept_when_sent_back_masked(make_settings, database_url) -> None:
    """``via.cloudflare.token`` is a credential like the provider key: sealed with the other secrets."""
    from anygate.management.provider_view import via_view
    from anygate.management.providers import merge_provider
    from anygate.settings import ProviderConfig

    settings = make_settings()
    config = {"id": "xai", "via": {"cloudflare": {"account_id": "acct", "gateway_id": "gw", "token": CLOUDFLARE_TOKEN}}}

    async def save_and_read() -> dict[str, Any]:
        store: Store = await open_store(settings)
        try:
            await store.providers.create(config, "sk-xai-key")
            found = await store.providers.get("xai")
            assert found is not None
            return found.readable().config
        finally:
            await store.close()

    stored = asyncio.run(save_and_read())
    assert stored["via"]["cloudflare"]["token"] == CLOUDFLARE_TOKEN
    assert CLOUDFLARE_TOKEN not in raw_database_text(database_url, settings.data_dir)
    view = via_view(ProviderConfig.model_validate(stored))
    assert view == {"cloudflare": {"account_id": "acct", "gateway_id": "gw", "token": "***"}}
    kept = merge_provider(stored, {"via": view})
    assert kept["via"]["cloudflare"]["token"] == CLOUDFLARE_TOKEN
