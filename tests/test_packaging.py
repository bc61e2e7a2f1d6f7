"""What users who are not developers install: the wheel (``pipx``/``uv tool install``) and the container.

No container engine runs here, so the image's recipe is run without one: the wheel built from this tree
with exactly the locked requirements in a clean venv (the Dockerfile's build stage), then served with
the image's environment, and its HEALTHCHECK command run against it. The compose file's settings are
checked against the settings anygate reads.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from anygate.settings import ANYGATE_ENV_FIELDS

ROOT = Path(__file__).resolve().parent.parent
UV = ROOT / ".venv/bin/uv"

pytestmark = pytest.mark.sockets


def run(*command: str | Path, cwd: Path = ROOT) -> str:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{shlex.join(map(str, command))}:\n{result.stderr}"
    return result.stdout


def dockerfile_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage (``NAME=value`` pairs, continuation lines joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.rsplit("\nFROM ", 1)[1]
    env: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return env


def dockerfile_healthcheck() -> list[str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])\s*$", text, re.MULTILINE)
    assert match is not None, "the Dockerfile has a HEALTHCHECK CMD in exec form"
    command: list[str] = json.loads(match.group(1))
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(url: str, process: subprocess.Popen[str]) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"anygate exited: {process.stdout.read() if process.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Dockerfile's build stage: the wheel and the locked requirements in a venv of their own."""
    work = tmp_path_factory.mktemp("package")
    run(UV, "build", "--wheel", "--quiet", "-o", work / "dist")
    requirements = work / "requirements.txt"
    run(UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-hashes", "--quiet", "-o", requirements)
    venv = work / "venv"
    run(UV, "venv", "--quiet", venv)
    wheels = list((work / "dist").glob("anygate-*.whl"))
    assert len(wheels) == 1
    python = venv / "bin/python"
    run(UV, "pip", "install", "--quiet", "--compile-bytecode", "--python", python, "-r", requirements, wheels[0])
    return venv


def test_the_wheel_ships_the_console_the_migrations_and_type_hints(installed: Path) -> None:
    package = next((installed / "lib").glob("python3.*/site-packages/anygate"))
    for name in ("console/index.html", "console/i18n/vi.json", "store/migrations/script.py.mako", "py.typed"):
        assert (package / name).is_file(), name
    assert list((package / "store/migrations/versions").glob("0001_*.py"))


def test_the_installed_gateway_serves_with_the_image_environment(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {
        **dockerfile_env(),
        "PATH": f"{installed / 'bin'}:/usr/bin:/bin",  # the image's /opt/anygate/bin first
        "HOME": str(tmp_path),
        "ANYGATE_DATA_DIR": str(tmp_path / "data"),  # the image's /data volume
        "ANYGATE_HOST": "127.0.0.1",  # the image listens on every interface; here only loopback is used
        "ANYGATE_PORT": str(port),
        "ANYGATE_ADMIN_KEY": "sk-ag-packaging-test-admin-key",
    }
    with subprocess.Popen(
        ["anygate", "serve"], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        serve_and_check(process, env, port)
    assert process.returncode == 0


def serve_and_check(process: subprocess.Popen[str], env: dict[str, str], port: int) -> None:
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        healthcheck = subprocess.run(dockerfile_healthcheck(), env=env, timeout=30, capture_output=True, text=True)
        assert healthcheck.returncode == 0, healthcheck.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=5) as response:
            assert b"<html" in response.read().lower()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {env['ANYGATE_ADMIN_KEY']}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["object"] == "list"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_compose_file_sets_only_settings_anygate_reads() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    names = set(compose["services"]["anygate"]["environment"])
    assert names <= set(ANYGATE_ENV_FIELDS), names - set(ANYGATE_ENV_FIELDS)
    assert set(dockerfile_env()) - {"PATH", "PYTHONUNBUFFERED"} <= set(ANYGATE_ENV_FIELDS)
    assert os.path.basename(compose["services"]["anygate"]["volumes"][0].split(":")[1]) == "data"
