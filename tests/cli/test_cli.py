"""``anygate`` as a user runs it: a subprocess, its exit status, what it prints, and the server it starts."""

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

from anygate.auth import hash_key, stored_admin_digest
from anygate.cli.serve import admin_key_source
from anygate.settings import load_settings
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


def test_a_bad_config_stops_with_a_message_naming_the_field_and_the_file() -> None:
    config = write("bad.yaml", "providers:\n  - id: groq\n    colour: blue\n")
    result = run("serve", "--config", str(config))
    assert result.returncode != 0
    assert str(config) in result.stderr
    assert "providers.0.colour" in result.stderr
    assert "unknown field" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_named_by_a_relative_path_says_which_file_was_tried() -> None:
    result = run("models", "--config", "nosuch.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"anygate: nosuch.yaml: cannot read the config file (No such file or directory, tried {Path.cwd()}/nosuch.yaml)"
    )


def test_version_and_help_read_as_text(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from anygate import __version__

    version = run("--version")
    assert version.returncode == 0 and version.stdout == f"anygate {__version__}\n"
    from anygate.cli import app, plain_help

    monkeypatch.setenv("COLUMNS", "250")
    command = plain_help(typer_command(app))
    command.main(args=["--help"], prog_name="anygate", standalone_mode=False)
    shown = capsys.readouterr().out
    [models_line] = [line for line in shown.splitlines() if line.startswith("│ models")]
    assert "what the running gateway serves" in models_line  # a paragraph on one line, not cut where the source wraps


def typer_command(app: object) -> object:
    import typer

    return typer.main.get_command(app)  # type: ignore[arg-type]


def test_a_bad_config_named_by_anygate_config() -> None:
    config = write("anygate.yaml", "providers:\n  - id: x\n    type: custom\n    base_url: http://127.0.0.1:8000/v1\n")
    result = run("models", ANYGATE_CONFIG=str(config))
    assert result.returncode != 0
    assert str(config) in result.stderr
    assert "providers.0: address 127.0.0.1 is on a loopback or private network" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_custom_headers_json_stops_the_start() -> None:
    result = run("serve", OPENAI_COMPATIBLE_API_KEY="k", OPENAI_COMPATIBLE_CUSTOM_HEADERS="{nope")
    assert result.returncode != 0
    assert "OPENAI_COMPATIBLE_CUSTOM_HEADERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_auth_is_refused_off_loopback() -> None:
    result = run("serve", "--no-auth", "--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode != 0
    assert "loopback" in result.stderr


def test_providers_lists_without_secrets() -> None:
    config = write(
        "anygate.yaml",
        "providers:\n  - id: groq\n  - id: campus\n    type: custom\n    base_url: https://llm.example.edu/v1\n"
        "    name: 'Campus [/bold] LLM'\n    api_key: ${CAMPUS_KEY}\n  - id: ollama\n",
    )
    result = run("providers", "--config", str(config), CAMPUS_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    rows = {
        line.split()[1]: line for line in result.stdout.splitlines() if re.match(r"^\W*(groq|campus|ollama)\b", line)
    }
    assert set(rows) == {"groq", "campus", "ollama"}
    assert "https://api.groq.com/openai/v1" in rows["groq"] and "missing" in rows["groq"]
    assert "https://llm.example.edu/v1" in rows["campus"] and "yes" in rows["campus"]
    assert "Campus [/bold] LLM" in rows["campus"]  # a name is text, not rich markup
    assert "not needed" in rows["ollama"]
    assert SECRET not in result.stdout + result.stderr


def test_providers_from_the_zero_config_environment_and_dotenv() -> None:
    write(".env", "OPENAI_COMPATIBLE_BASE_URL=https://api.together.xyz/v1\nOLLAMA_ENABLED=true\n")
    result = run("providers", OPENAI_COMPATIBLE_API_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if "openai_compatible" in line]
    assert "Together AI" in row and "https://api.together.xyz/v1" in row and "yes" in row
    assert any("ollama" in line and "http://localhost:11434/v1" in line for line in result.stdout.splitlines())
    assert SECRET not in result.stdout + result.stderr


def test_providers_with_none_configured_says_how_to_add_one() -> None:
    result = run("providers", ANYGATE_PORT=str(free_port()))  # no gateway answers there
    assert result.returncode == 0
    assert "No upstream provider is configured yet" in result.stderr
    models = run("models", ANYGATE_PORT=str(free_port()))
    assert models.returncode == 1
    assert "No upstream provider is configured yet" in models.stderr


def test_with_none_configured_here_the_running_gateways_providers_are_read_with_the_admin_key() -> None:
    port, admin = free_port(), "sk-ag-admin-key-for-the-cli-test"
    gateway_env = {"OPENAI_COMPATIBLE_BASE_URL": "", "OPENAI_COMPATIBLE_API_KEY": SECRET, "ANYGATE_ADMIN_KEY": admin}
    with FakeUpstream.start_in_thread(models=["m-1"]) as up:
        gateway_env["OPENAI_COMPATIBLE_BASE_URL"] = up.base_url
        with serving("--port", str(port), **gateway_env) as (process, _):
            wait_for_health(port, process)
            unseen = run("providers", ANYGATE_PORT=str(port))
            wrong_key = run("models", ANYGATE_PORT=str(port), ANYGATE_ADMIN_KEY="sk-ag-not-the-admin-key")
            listed = run("providers", ANYGATE_PORT=str(port), ANYGATE_ADMIN_KEY=admin)
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
        result = run("models", "--config", str(config))
        [models_request] = up.requests_to("/v1/models")
        probe = run("providers", "test", "fake", "--config", str(config))
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


def test_the_admin_key_is_generated_and_shown_only_once_then_its_source_is_named() -> None:
    settings = load_settings({}, {"ANYGATE_DATA_DIR": str(Path.cwd() / "data")})
    first, second = admin_key_source(settings), admin_key_source(settings)
    key = re.search(r"sk-ag-[A-Za-z0-9_-]+", first)
    assert key is not None and first.startswith("generated now and shown this once")
    assert "sk-ag-" not in second
    assert second.startswith("the one generated at an earlier start")
    assert str(settings.data_dir / "admin_key.sha256") in second
    assert stored_admin_digest(settings.data_dir) == hash_key(key.group(0))
    assert (settings.data_dir / "admin_key.sha256").stat().st_mode & 0o077 == 0
    chosen = settings.model_copy(update={"admin_key": "sk-my-own"})
    assert admin_key_source(chosen).startswith("the one you set (ANYGATE_ADMIN_KEY")
    assert admin_key_source(settings.model_copy(update={"no_auth": True})).startswith("none needed (--no-auth")


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


def test_log_lines_are_text_on_a_terminal_and_json_elsewhere_unless_chosen() -> None:
    import logging

    from anygate.telemetry import JsonFormatter, TextFormatter, formatter_for

    assert isinstance(formatter_for("auto", is_terminal=True), TextFormatter)
    assert isinstance(formatter_for("auto", is_terminal=False), JsonFormatter)
    assert isinstance(formatter_for("json", is_terminal=True), JsonFormatter)
    assert isinstance(formatter_for("text", is_terminal=False), TextFormatter)
    assert load_settings({}, {"ANYGATE_LOG_FORMAT": "TEXT"}).log_format == "text"
    record = logging.LogRecord("anygate.x", logging.INFO, __file__, 1, "token=abc123 seen", None, None)
    record.fields = {"provider": "groq", "error": "HTTP 401 from it", "count": 2}
    line = TextFormatter().format(record)
    assert line.endswith('INFO     token=*** seen  provider=groq error="HTTP 401 from it" count=2')


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


def command_paths(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    subcommands = getattr(command, "commands", {})
    return [path, *(p for name, sub in subcommands.items() for p in command_paths(sub, (*path, name)))]


def test_help_shows_what_to_type_never_python_types(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    import typer

    from anygate.cli import app, plain_help

    monkeypatch.setenv("COLUMNS", "200")
    command = plain_help(typer.main.get_command(app))
    paths = command_paths(command)
    assert ("keys", "create") in paths and ("providers", "test") in paths
    for path in paths:
        with pytest.raises(SystemExit) as exited:
            command.main(args=[*path, "--help"], prog_name="anygate")
        assert exited.value.code == 0
        shown = capsys.readouterr().out
        assert "--help" in shown, path
        assert not re.search(r"<(bool|str|int|float|Any|datetime|path|Path|list\[.*?\])>", shown), (path, shown)
    command.main(args=["keys", "create", "--help"], prog_name="anygate", standalone_mode=False)
    shown = capsys.readouterr().out
    assert re.search(r"--alias +TEXT", shown) and re.search(r"--budget-tokens +INTEGER", shown)
    assert re.search(r"--admin +An admin key", shown)


def test_a_silent_upstream_is_given_up_on_at_the_timeout_with_one_line_and_checks_never_made_say_so() -> None:
    from tests.support.fake_upstream import Reply

    with FakeUpstream.start_in_thread(models=["m"]) as up:
        config = write(
            "anygate.yaml",
            f"providers:\n  - id: slow\n    type: custom\n    base_url: {up.base_url}\n    api_key: {SECRET}\n"
            "    allow_private_network: true\n",
        )
        up.script(Reply(hang_before_headers=True), path="/v1/models")
        listed = run("models", "--config", str(config), "--timeout", "1")
        up.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
        probed = run("providers", "test", "slow", "--config", str(config), "--timeout", "2")
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
