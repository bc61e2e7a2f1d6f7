"""The store from the command line: db upgrade, keys, users, providers; gateways see the changes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from typer.testing import CliRunner

from anygate.cli import app
from anygate.store.budget_lists import legacy_budget

runner = CliRunner()


@pytest.fixture
def environment(make_settings, database_url, monkeypatch):  # type: ignore[no-untyped-def]
    settings = make_settings()
    monkeypatch.setenv("ANYGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ANYGATE_DATABASE_URL", database_url)
    return settings


def run(*args: str, input: str | None = None) -> str:
    result = runner.invoke(app, list(args), input=input)
    assert result.exit_code == 0, (args, result.output)
    return result.output


def test_db_upgrade(environment) -> None:
    from tests.store.test_store_schema import script_head

    assert f"database at revision {script_head()}" in run("db", "upgrade")


def test_keys_and_users_from_the_cli_work_in_a_gateway(environment, serve) -> None:
    user_id = run("users", "create", "ada").strip()
    assert user_id.startswith("usr_") and "ada" in run("users", "list")
    output = run("keys", "create", "--alias", "cli-key", "--user", user_id, "--model", "x/*")
    secret = next(word for word in output.split() if word.startswith("sk-ag-"))
    listing = run("keys", "list")
    assert "cli-key" in listing and secret not in listing
    gateway = serve(environment)
    with gateway.client(secret) as http:
        assert http.get("/v1/models").status_code == 200
    key_id = next(word for word in output.split() if word.startswith("key_"))
    run("keys", "revoke", key_id)
    assert "revoked" in run("keys", "list")
    failed = runner.invoke(app, ["keys", "create", "--alias", "x", "--user", "usr_nobody"])
    assert failed.exit_code == 1 and "no user 'usr_nobody'" in failed.output
    run("users", "remove", user_id)
    assert runner.invoke(app, ["users", "remove", user_id]).exit_code == 1


def test_providers_add_update_remove(environment, serve) -> None:
    run(
        "providers",
        "add",
        "lab",
        "--type",
        "custom",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--allow-private-network",
        "--model",
        "m1",
        "--api-key-stdin",
        input="sk-from-stdin-123456\n",
    )
    refused = runner.invoke(app, ["providers", "add", "bad", "--type", "custom", "--base-url", "http://10.0.0.1/v1"])
    assert refused.exit_code == 1 and "private network" in refused.output
    assert (
        runner.invoke(
            app, ["providers", "add", "lab", "--base-url", "http://127.0.0.1:9/v1", "--allow-private-network"]
        ).exit_code
        == 1
    )
    run("providers", "update", "lab", "--name", "Lab GPUs")
    gateway = serve(environment)
    with gateway.client() as http:
        view = http.get("/v1/providers/lab").json()
    assert (view["name"], view["api_key"], view["origin"]) == ("Lab GPUs", "***", "store")
    run("providers", "remove", "lab")
    assert runner.invoke(app, ["providers", "remove", "lab"]).exit_code == 1


@pytest.mark.sockets  # `anygate serve` binds its port before it opens the store
def test_serve_refuses_to_start_with_a_wrong_secret_key(environment, serve, monkeypatch) -> None:
    gateway = serve(environment)
    with gateway.client() as http:
        body = {"id": "lab", "type": "custom", "base_url": "http://127.0.0.1:9/v1", "allow_private_network": True}
        assert http.post("/v1/providers", json={**body, "api_key": "sk-lab-secret"}).status_code == 201
        assert http.get("/health/ready").json()["checks"]["store"] == "ok"
    monkeypatch.setenv("ANYGATE_SECRET_KEY", "not-the-key")
    result = runner.invoke(app, ["serve", "--port", "0"])
    assert result.exit_code == 2
    assert "which is not among the keys in ANYGATE_SECRET_KEY" in result.output
    assert "sk-lab-secret" not in result.output


def test_a_key_created_with_a_budget_from_the_cli_has_its_quota(environment, serve) -> None:
    output = run(
        "keys", "create", "--alias", "student-1", "--budget-tokens", "1000", "--budget-period", "daily", "--rpm", "5"
    )
    secret = next(word for word in output.split() if word.startswith("sk-ag-"))
    gateway = serve(environment)
    with gateway.client(secret) as http:
        quota = http.get("/quota").json()
    assert quota["tokens"]["limit"] == 1000 and quota["tokens"]["remaining"] == 1000
    assert quota["tokens"]["resets_at"] is not None
    bad = runner.invoke(app, ["keys", "create", "--alias", "x", "--budget-tokens", "5", "--budget-period", "yearly"])
    assert bad.exit_code != 0 and "period" in bad.output


@pytest.mark.sockets  # with nothing configured, the command looks for a running gateway on its port
def test_providers_lists_the_stored_ones_too(environment, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    empty = runner.invoke(app, ["providers"])
    assert empty.exit_code == 0 and "No upstream provider is configured yet" in empty.output
    for provider_id in ("lab", "gpu"):
        run(
            "providers",
            "add",
            provider_id,
            "--type",
            "custom",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--allow-private-network",
        )
    run("providers", "add", "ollama")  # a keyless preset
    listing = run("providers")
    rows = {line.split("│")[1].strip(): line for line in listing.splitlines() if line.count("│") > 5}
    assert {"lab", "gpu", "ollama"} <= set(rows)
    assert "store" in rows["lab"] and "missing" in rows["lab"] and "not needed" in rows["ollama"]
    assert "No upstream provider" not in listing


@pytest.mark.sockets  # `anygate serve` binds its port
def test_serve_hints_at_adding_a_provider_only_when_there_is_none(environment, monkeypatch) -> None:
    import anygate.server_process

    started: list[object] = []

    def exec_server(flags: object, listener: socket.socket) -> None:
        listener.close()
        started.append(flags)

    monkeypatch.setattr(anygate.server_process, "exec_server", exec_server)
    monkeypatch.setenv("ANYGATE_PORT", "0")
    assert "No upstream provider is configured yet" in run("serve")
    run("providers", "add", "lab", "--type", "custom", "--base-url", "http://127.0.0.1:9/v1", "--allow-private-network")
    assert "No upstream provider" not in run("serve")
    assert len(started) == 2


@pytest.mark.sockets  # the probe goes over the network
def test_providers_test_stores_the_capabilities_and_fails_when_the_probe_does(environment, serve) -> None:
    from tests.support.fake_upstream import FakeUpstream

    with FakeUpstream.start_in_thread(models=("fake-model",)) as upstream:
        run("providers", "add", "lab", "--base-url", upstream.base_url, "--allow-private-network", "--api-key", "k-1")
        assert "ok" in run("providers", "test", "lab")
    run("providers", "add", "dead", "--base-url", "http://127.0.0.1:9/v1", "--allow-private-network", "--model", "m")
    failed = runner.invoke(app, ["providers", "test", "dead"])
    assert failed.exit_code == 1, failed.output
    gateway = serve(environment)
    with gateway.client() as http:
        found = http.get("/v1/providers/lab").json()["capabilities"]
        dead = http.get("/v1/providers/dead").json()["capabilities"]
    assert found["models"] and found["chat"] and found["streaming"] and found["checked_at"]
    assert dead["chat"] is False and dead["models"] is False


def fails(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 1, (args, result.output)
    return result.output


def test_keys_and_users_are_checked_as_the_api_checks_them_and_can_be_updated(environment) -> None:
    from anygate.store.database import Database
    from anygate.store.keys import KeyStore

    assert "expires_at: 2020-01-01T00:00:00Z is in the past" in fails(
        "keys", "create", "--alias", "old", "--expires", "2020-01-01"
    )
    assert "budget.period: a daily budget needs a limit" in fails(
        "keys", "create", "--alias", "p", "--budget-period", "daily"
    )
    assert "budget.mode: Input should be 'hard' or 'soft'" in fails(
        "keys", "create", "--alias", "m", "--budget-tokens", "5", "--budget-mode", "strict"
    )
    user_id = run("users", "create", "ada", "--budget-usd", "10", "--budget-period", "monthly", "--rpm", "30").strip()
    created = run("keys", "create", "--alias", "laptop", "--user", user_id, "--provider", "grok")
    assert "warning: providers: 'grok' matches no provider (providers now: none)" in created
    assert "warning: this command knows no provider" in created  # and why: none known here at all
    key_id = next(word for word in created.split() if word.startswith("key_"))
    twin = run("keys", "create", "--alias", "laptop", "--user", user_id)
    assert f"warning: alias: key {key_id} is 'laptop' too (among user '{user_id}')" in twin
    run("keys", "update", key_id, "--budget-tokens", "1000", "--budget-period", "weekly", "--expires", "2999-01-01")
    run("keys", "update", key_id, "--budget-usd", "2", "--tpm", "500", "--all-providers", "--alias", "desk")
    run("users", "update", user_id, "--name", "Ada L.", "--budget-usd", "20", "--no-limits")
    assert "no key 'key_nope'" in fails("keys", "update", "key_nope", "--alias", "x")
    assert "no user 'usr_nope'" in fails("users", "update", "usr_nope", "--name", "x")
    assert "nothing to change" in fails("keys", "update", key_id)
    assert "nothing to change" in fails("users", "update", user_id)
    assert "--no-budget and --no-limits cannot be given" in fails(
        "users", "update", user_id, "--no-budget", "--budget-usd", "1"
    )

    async def read() -> tuple[object, object]:
        db = Database(environment.resolved_database_url)
        try:
            keys = KeyStore(db)
            return await keys.get_key(key_id), await keys.get_user(user_id)
        finally:
            await db.close()

    key, user = asyncio.run(read())
    assert key.alias == "desk" and key.providers is None  # type: ignore[attr-defined]
    assert legacy_budget(key.budget) == {"tokens": 1000, "usd": 2.0, "period": "weekly", "mode": "hard"}  # type: ignore[attr-defined]
    assert key.limits == {"tpm": 500}  # type: ignore[attr-defined]
    assert key.expires_at.year == 2999  # type: ignore[attr-defined]
    assert user.name == "Ada L." and user.limits is None  # type: ignore[attr-defined]
    assert legacy_budget(user.budget) == {"tokens": None, "usd": 20.0, "period": "monthly", "mode": "hard"}  # type: ignore[attr-defined]


@pytest.mark.sockets  # the command line reads the running gateway on its port
def test_models_and_providers_read_what_the_running_gateway_serves_when_the_store_holds_providers(
    environment, serve_on_socket, monkeypatch
) -> None:
    from tests.store.conftest import ADMIN_KEY
    from tests.support.fake_upstream import FakeUpstream
    from tests.support.waiting import eventually

    monkeypatch.setenv("COLUMNS", "200")
    with FakeUpstream.start_in_thread(models=("lab-model",)) as upstream:
        gateway = serve_on_socket(environment)
        run(
            "providers",
            "add",
            "lab",
            "--base-url",
            upstream.base_url,
            "--allow-private-network",
            "--api-key",
            "sk-lab-provider-key-123",
        )
        registry = gateway.app.state.registry
        eventually(lambda: getattr(registry.find("lab"), "models_source", "") == "discovered", "lab discovered")
        monkeypatch.setenv("ANYGATE_PORT", str(gateway.port))
        unreadable = runner.invoke(app, ["models"])  # no admin key to ask with: discovered from here
        monkeypatch.setenv("ANYGATE_ADMIN_KEY", ADMIN_KEY)
        upstream.requests.clear()
        served = run("models")
        listing = run("providers")
        asked_upstream = len(upstream.requests)
        monkeypatch.setenv("ANYGATE_ADMIN_KEY", "sk-not-the-admin-key")
        refused = runner.invoke(app, ["models"])
    assert unreadable.exit_code == 0, unreadable.output
    assert "the running gateway's lists could not be read (no admin key to ask it with: set ANYGATE_ADMIN_KEY" in (
        unreadable.output
    )
    assert any("lab" in line and "lab-model" in line for line in unreadable.output.splitlines())
    assert any("lab" in line and "lab-model" in line and "discovered" in line for line in served.splitlines())
    assert "could not be read" not in served and asked_upstream == 0  # the gateway's view, not a new discovery
    [row] = [line for line in listing.splitlines() if "│ lab" in line]
    assert row.rstrip(" │").endswith("1")  # the one model the gateway serves
    assert "refused the key: ANYGATE_ADMIN_KEY is not its admin key" in refused.output
    for output in (unreadable.output, served, listing, refused.output):
        assert ADMIN_KEY not in output and "sk-not-the-admin-key" not in output and "sk-lab-provider-key" not in output


def test_db_current_downgrade_and_upgrade_again(environment) -> None:
    from anygate.store.database import shipped_revisions

    shipped = shipped_revisions()
    newest, previous = shipped[-1], shipped[-2]
    if environment.resolved_database_url.startswith("sqlite"):  # PostgreSQL's test database is shared, emptied
        assert "no anygate tables yet" in run("db", "current")
    run("db", "upgrade")
    assert f"at revision {newest}, the newest this anygate ships" in run("db", "current")
    refused = runner.invoke(app, ["db", "downgrade", previous[:4]])
    assert refused.exit_code == 1 and "back up first" in refused.output and "add --yes" in refused.output
    assert "no single revision starts with '9'" in fails("db", "downgrade", "9", "--yes")
    assert f"at revision {previous}" in run("db", "downgrade", previous[:4], "--yes")
    assert f"at revision {previous}; 1 to apply ({newest}): `anygate db upgrade`" in run("db", "current")
    assert f"database at revision {newest}" in run("db", "upgrade")


def test_db_backup_copies_a_live_sqlite_database_and_points_at_the_secret_key(environment, tmp_path) -> None:
    import sqlite3

    run("users", "create", "ada")
    target = tmp_path / "backups" / "anygate-backup.db"
    if environment.resolved_database_url.startswith("postgresql"):
        assert "only a SQLite database file can be backed up by anygate: use pg_dump" in fails(
            "db", "backup", str(target)
        )
        return
    output = run("db", "backup", str(target))
    assert f"backed up to {target}" in output
    assert f"secret key ({environment.data_dir / 'secret.keys'})" in output
    assert target.stat().st_mode & 0o077 == 0
    with sqlite3.connect(target) as copy:
        assert copy.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert "exists already" in fails("db", "backup", str(target))


def test_a_roster_is_imported_once_its_keys_written_0600_and_the_changes_audited(environment, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import os
    import stat

    from anygate.store.store import open_store

    async def make_team() -> None:
        store = await open_store(environment)
        try:
            await store.teams.create_team({"id": "comp318", "name": "COMP318"})
        finally:
            await store.close()

    asyncio.run(make_team())
    roster = tmp_path / "roster.csv"
    roster.write_text("student_id,name\n1,Ana\n2,Bo\n\n3,Ana\n")
    keys = tmp_path / "keys.csv"
    budget = ["--budget", "tokens=50000,window=daily", "--budget", "requests=40,window=5h"]
    run("users", "import", str(roster), "--team", "comp318", *budget, "--expires", "2027-06-30", "--out", str(keys))
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    with keys.open() as handle:
        written = list(csv.DictReader(handle))
    assert [row["name"] for row in written] == ["Ana", "Bo"] and all(r["key"].startswith("sk-ag-") for r in written)
    roster.write_text("name\nAna\nBo\nCy\n")
    printed = run("users", "import", str(roster), "--team", "comp318", *budget)
    assert printed.count("sk-ag-") == 1 and "Cy," in printed
    refused = runner.invoke(
        app, ["users", "import", str(roster), "--team", "comp318", "--budget", "tokens=5,window=7d"]
    )
    assert refused.exit_code != 0 and "window" in refused.output
    audit = run("audit", "--actor", "cli", "--json")
    assert audit.count('"team.roster"') == 2 and "sk-ag-" not in audit


def test_the_key_and_user_lists_show_each_holders_budgets(environment) -> None:
    user_id = run("users", "create", "grace", "--budget-usd", "10", "--budget-period", "monthly").strip()
    run("keys", "create", "--alias", "windowed", "--budget-tokens", "5000", "--budget-period", "weekly")
    run("keys", "create", "--alias", "unbudgeted")
    wide = {"COLUMNS": "200"}
    keys = runner.invoke(app, ["keys", "list"], env=wide).output
    users = runner.invoke(app, ["users", "list"], env=wide).output
    lines = keys.splitlines()
    assert any("windowed" in line and "5000 tok / weekly" in line for line in lines), keys
    assert not any("unbudgeted" in line and "tok" in line for line in lines), keys
    assert "$10 / monthly" in next(line for line in users.splitlines() if user_id in line)


def test_a_users_and_a_teams_keys_are_reissued_from_the_cli(environment, serve, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import csv
    import os
    import stat

    run("teams", "create", "--id", "comp318", "--name", "COMP318")
    roster, enrolled = tmp_path / "roster.csv", tmp_path / "enrolled.csv"
    roster.write_text("name\nana\nbo\n")
    run("users", "import", str(roster), "--team", "comp318", "--model", "x/*", "--out", str(enrolled))
    with enrolled.open() as handle:
        ids = {row["name"]: row["user_id"] for row in csv.DictReader(handle)}
    with enrolled.open() as handle:
        first = {row["user_id"]: row["key"] for row in csv.DictReader(handle)}
    ana, bo = ids["ana"], ids["bo"]

    printed = run("users", "reissue", ana)
    assert printed.count("sk-ag-") == 1 and f"ana,{ana},key_" in printed
    ana_new = next(w for w in printed.split(",") if w.strip().startswith("sk-ag-")).strip()
    keys = tmp_path / "keys.csv"
    run("teams", "reissue", "comp318", "--out", str(keys))
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    with keys.open() as handle:
        written = {row["user_id"]: row for row in csv.DictReader(handle)}
    assert set(written) == {ana, bo} and all(row["key"].startswith("sk-ag-") for row in written.values())

    gateway = serve(environment)
    for secret in (first[ana], first[bo], ana_new):  # every earlier key stopped
        with gateway.client(secret) as http:
            assert http.get("/v1/models").status_code == 401
    for row in written.values():
        with gateway.client(row["key"]) as http:
            assert http.get("/v1/models").status_code == 200
        with gateway.client() as admin:
            assert admin.get(f"/v1/keys/{row['key_id']}").json()["models"] == ["x/*"]  # the same settings
    assert runner.invoke(app, ["teams", "reissue", "nobody"]).exit_code == 1
    assert runner.invoke(app, ["users", "reissue", "usr_nobody"]).exit_code == 1
    audit = run("audit", "--actor", "cli", "--json")
    assert audit.count('"user.reissue"') == 1 and audit.count('"team.reissue"') == 1 and "sk-ag-" not in audit
