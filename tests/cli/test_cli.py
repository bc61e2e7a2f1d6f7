"""``anygate`` against the network: the console script and ``serve`` as a user runs them (a subprocess, its
exit status, what it prints, the server it starts, a terminal), and the commands that read a running gateway
or an upstream on a loopback port (run in this process: ``tests/cli/command_line.py``)."""

from __future__ import annotations

import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from tests.cli.command_line import invoke
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.sockets

ANYGATE = Path(sys.executable).with_name("anygate")
SECRET = "sk-cli-secret-key-123456789"


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env.update({"COLUMNS": "250", "NO_COLOR": "1", "ANYGATE_DATA_DIR": str(Path.cwd() / "data")}, **extra)
    return env


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anygate", *args],
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(name: str, text: str) -> Path:
    path = Path.cwd() / name
    path.write_text(text, encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_console_script_lists_the_commands() -> None:
    result = subprocess.run([str(ANYGATE), "--help"], env=environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("serve", "models", "providers"):
        assert command in result.stdout


def test_providers_with_none_configured_says_how_to_add_one() -> None:
    result = invoke("providers", ANYGATE_PORT=str(free_port()))  # no gateway answers there
    assert result.returncode == 0
    assert "No upstream provider is configured yet" in result.stderr
    models = invoke("models", ANYGATE_PORT=str(free_port()))
    assert models.returncode == 1
    assert "No upstream provider is configured yet" in models.stderr


def test_with_none_configured_here_the_running_gateways_providers_are_read_with_the_admin_key() -> None:
    port, admin = free_port(), "sk-ag-admin-key-for-the-cli-test"
    gateway_env = {"OPENAI_COMPATIBLE_BASE_URL": "", "OPENAI_COMPATIBLE_API_KEY": SECRET, "ANYGATE_ADMIN_KEY": admin}
    with FakeUpstream.start_in_thread(models=["m-1"]) as up:
        gateway_env["OPENAI_COMPATIBLE_BASE_URL"] = up.base_url
        with serving("--port", str(port), **gateway_env) as (process, _):
            wait_for_health(port, process)
            unseen = invoke("providers", ANYGATE_PORT=str(port))
            wrong_key = invoke("models", ANYGATE_PORT=str(port), ANYGATE_ADMIN_KEY="sk-ag-not-the-admin-key")
            listed = invoke("providers", ANYGATE_PORT=str(port), ANYGATE_ADMIN_KEY=admin)
    assert unseen.returncode == 0 and unseen.stdout == ""
    assert f"though a gateway answers at http://127.0.0.1:{port}" in unseen.stderr
    assert wrong_key.returncode == 1
    assert "the running gateway could not be read" in wrong_key.stderr and "refused the key" in wrong_key.stderr
    assert listed.returncode == 0, listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "openai_compatible" in line]
    assert "gateway (env)" in row and "yes" in row and row.rstrip(" │").endswith("1")
    assert SECRET not in listed.stdout + listed.stderr + unseen.stderr


def test_models_and_the_provider_probe_against_the_upstream() -> None:
    with FakeUpstream.start_in_thread(models=["fake-model", "other-model"]) as up:
        config = write(
            "anygate.yaml",
            f"providers:\n  - id: fake\n    type: custom\n    base_url: {up.base_url}\n    api_key: {SECRET}\n"
            f"    allow_private_network: true\n    max_retries: 0\n    default_model: other-model\n"
            f"  - id: gone\n    type: custom\n    base_url: http://127.0.0.1:{free_port()}/v1\n"
            f"    allow_private_network: true\n    max_retries: 0\n    auth: none\n",
        )
        result = invoke("models", "--config", str(config))
        [models_request] = up.requests_to("/v1/models")
        probe = invoke("providers", "test", "fake", "--config", str(config))
        probes = up.requests_to("/v1/chat/completions")
    assert result.returncode == 1  # one list could not be had
    lines = result.stdout.splitlines()
    assert any("fake" in line and "fake-model" in line and "discovered" in line for line in lines)
    assert any("fake" in line and "other-model" in line for line in lines)
    assert result.stderr.strip().splitlines() == [
        "anygate: gone: model discovery failed: Cannot connect to Provider 'gone' (no list known)"
    ]
    assert models_request.headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in result.stdout + result.stderr
    assert probe.returncode == 0, probe.stderr
    checks = {line.split()[1]: line for line in probe.stdout.splitlines() if line.startswith("│")}
    assert all("ok" in checks[name] for name in ("models", "chat", "streaming", "stream_usage"))
    # Streaming is tested as a plain client streams, usage on streams apart (stream_options asked).
    assert [(r.json["stream"], "stream_options" in r.json) for r in probes] == [
        (False, False),
        (True, False),
        (True, True),
    ]
    assert {r.json["model"] for r in probes} == {"other-model"}  # the provider's default_model is tried


# ------------------------------------------------------------------------------------------ serve


@contextmanager
def serving(*args: str, **env: str) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "anygate", "serve", *args],
        env=environment(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        yield process, lines
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        process.stderr.close()


def wait_for_health(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60  # a start takes 25 s on a loaded 2-core machine
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise AssertionError("the server did not answer /health")


def drain(lines: queue.Queue[str]) -> str:
    text = []
    while not lines.empty():
        text.append(lines.get_nowait())
    return "".join(text)


def test_serve_without_providers_says_how_to_add_one_and_prints_an_admin_key() -> None:
    port = free_port()
    with serving("--port", str(port)) as (process, lines):
        wait_for_health(port, process)
        printed = drain(lines)
        assert "No upstream provider is configured yet" in printed
        assert "OPENAI_COMPATIBLE_BASE_URL" in printed
        match = re.search(r"(sk-ag-[A-Za-z0-9_-]+)", printed)
        assert match, printed
        key = match.group(1)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/v1/providers").status_code == 401
            providers = client.get("/v1/providers", headers={"Authorization": f"Bearer {key}"})
            assert providers.status_code == 200
            assert providers.json()["data"] == []
    assert process.returncode is not None


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the process's command line in /proc")
def test_serve_hands_its_process_over_to_the_server_and_stops_cleanly_on_sigterm() -> None:
    port = free_port()
    config = write("anygate.yaml", "log_format: json\n")
    with serving("--port", str(port), "--config", str(config), "--log-level", "debug") as (process, lines):
        wait_for_health(port, process)
        # The same process (a supervisor's pid stays right), now running the server module alone.
        command = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert command[1:3] == [b"-m", b"anygate.server_process"]
        assert b"--listener-fd" in command
        flags = command[command.index(b"--flags") + 1].decode()
        # The flags the command was given, the config file named, nothing else: settings are loaded again.
        assert f'"port": {port}' in flags and str(config) in flags and '"log_level": "debug"' in flags
        process.terminate()
        assert process.wait(timeout=30) == 0
        printed = drain(lines)
    assert f"listening on http://127.0.0.1:{port}" in printed  # the banner, written before the exec
    assert '"msg":"Application shutdown complete."' in printed  # JSON logs, as the config asked


def test_serve_prints_where_it_listens_logs_as_asked_and_refuses_a_busy_port_in_one_line() -> None:
    port = free_port()
    config = write(
        "anygate.yaml",
        f"providers:\n  - id: dead\n    type: custom\n    base_url: http://127.0.0.1:{free_port()}/v1\n"
        "    allow_private_network: true\n    max_retries: 0\n    auth: none\n"
        "  - id: groq\n    api_key: ${GROQ_KEY_UNSET}\n",
    )
    with serving("--port", str(port), "--config", str(config), "--log-format", "text") as (process, lines):
        wait_for_health(port, process)
        printed = ""
        while "model discovery failed" not in printed:
            printed += lines.get(timeout=20)
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            root = client.get("/")
        busy = run("serve", "--port", str(port))
    assert f"listening on http://127.0.0.1:{port}" in printed
    assert f"console:   http://127.0.0.1:{port}/ui/" in printed
    assert "admin key: generated now and shown this once" in printed
    assert f"warning: {config}: providers.1.api_key uses ${{GROQ_KEY_UNSET}}, which is not set" in printed
    assert "warning: provider 'groq' has no API key: set GROQ_API_KEY" in printed
    [logged] = [line for line in printed.splitlines() if "model discovery failed" in line]
    assert re.match(r"^\d\d:\d\d:\d\d WARNING  model discovery failed  provider=dead error=", logged), logged
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"anygate: cannot listen on 127.0.0.1:{port}: the port is in use (another anygate, or another program); "
        "choose one with --port or ANYGATE_PORT"
    ]


def test_serve_relays_to_a_zero_config_provider() -> None:
    port = free_port()
    with FakeUpstream.start_in_thread() as up:
        env = {
            "OPENAI_COMPATIBLE_API_KEY": SECRET,
            "OPENAI_COMPATIBLE_BASE_URL": up.base_url,
            "ANYGATE_ADMIN_KEY": "my-admin-key-for-tests",
            "PREFERRED_PROVIDER": "openrouter",
        }
        with serving("--port", str(port), **env) as (process, lines):
            wait_for_health(port, process)
            with httpx2.Client(
                base_url=f"http://127.0.0.1:{port}", timeout=10, headers={"x-api-key": "my-admin-key-for-tests"}
            ) as client:
                reply = client.post("/v1/chat/completions", json={"model": "openrouter:fake-model", "messages": []})
                assert reply.status_code == 200, reply.text
                assert client.get("/v1/models").json()["data"][0]["id"] == "openai_compatible/fake-model"
            logged = drain(lines)
        assert up.requests_to("/v1/chat/completions")[0].json["model"] == "fake-model"
    assert "No upstream provider" not in logged
    assert SECRET not in logged
    assert "my-admin-key-for-tests" not in logged


def test_a_silent_upstream_is_given_up_on_at_the_timeout_with_one_line_and_checks_never_made_say_so() -> None:
    from tests.support.fake_upstream import Reply

    with FakeUpstream.start_in_thread(models=["m"]) as up:
        config = write(
            "anygate.yaml",
            f"providers:\n  - id: slow\n    type: custom\n    base_url: {up.base_url}\n    api_key: {SECRET}\n"
            "    allow_private_network: true\n",
        )
        up.script(Reply(hang_before_headers=True), path="/v1/models")
        listed = invoke("models", "--config", str(config), "--timeout", "1")
        up.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
        probed = invoke("providers", "test", "slow", "--config", str(config), "--timeout", "2")
    assert listed.returncode == 1
    assert listed.stderr.strip().splitlines() == [
        "anygate: slow: model discovery failed: no answer within 1 s (--timeout) (no list known)"
    ]
    assert probed.returncode == 1
    checks = {line.split()[1]: line for line in probed.stdout.splitlines() if line.startswith("│")}
    assert "ok" in checks["models"]
    assert "no answer within 2 s (--timeout)" in checks["chat"]  # the check the time ran out in
    assert all("not tried: out of time (2 s)" in checks[name] for name in ("streaming", "embeddings"))
    assert probed.stderr.strip().splitlines() == [
        "anygate: the probe of 'slow' ran out of time after 2 s (--timeout); nothing was stored"
    ]


def run_on_a_terminal(*args: str, **env: str) -> tuple[int, str]:
    """``anygate ...`` with a pseudo-terminal as its stdout and stderr, as a person runs it."""
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "anygate", *args],
        env=environment(**env, COLUMNS="100"),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal is gone: the program has exited
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return process.wait(timeout=30), seen.decode(errors="replace")


def test_a_long_call_shows_what_it_waits_for_on_a_terminal() -> None:
    from tests.support.fake_upstream import Reply

    with FakeUpstream.start_in_thread(models=["m"]) as up:
        config = write(
            "anygate.yaml",
            f"providers:\n  - id: slow\n    type: custom\n    base_url: {up.base_url}\n    api_key: {SECRET}\n"
            "    allow_private_network: true\n",
        )
        up.script(Reply(hang_before_headers=True), path="/v1/models")
        status, seen = run_on_a_terminal("models", "--config", str(config), "--timeout", "1.5")
    assert status == 1
    assert "Discovering models of slow" in seen  # the spinner, while it waited
    assert "no answer within 1.5 s (--timeout)" in seen
