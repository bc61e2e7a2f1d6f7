"""What anygate creates on disk is private to its user: the data dir 0700, the database and its
write-ahead files 0600 (the key file too, see test_store_secrets)."""

from __future__ import annotations

import stat
from pathlib import Path

from anygate.settings import Settings
from tests.support.gateway import ADMIN_KEY
from tests.support.inprocess import inprocess_gateway


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_and_the_database_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "home" / "anygate"
    settings = Settings.model_validate({"data_dir": data_dir, "admin_key": ADMIN_KEY})
    with inprocess_gateway(settings) as gateway, gateway.client() as http:
        assert http.post("/v1/keys", json={"alias": "k"}).status_code == 201  # something in the log
        files = {p.name: mode(p) for p in data_dir.iterdir() if p.name.startswith("anygate.db")}
        assert mode(data_dir) == 0o700
        assert {"anygate.db", "anygate.db-wal", "anygate.db-shm"} <= set(files)
        assert set(files.values()) == {0o600}, files


def test_an_existing_data_dir_keeps_its_mode(tmp_path: Path) -> None:
    data_dir = tmp_path / "shared"
    data_dir.mkdir(mode=0o750)
    data_dir.chmod(0o750)
    settings = Settings.model_validate({"data_dir": data_dir, "admin_key": ADMIN_KEY})
    with inprocess_gateway(settings):
        assert mode(data_dir) == 0o750
        assert mode(data_dir / "anygate.db") == 0o600
