"""``anygate`` where it needs no server, run in this process (``tests/cli/command_line.py``): what it says
about a bad config, its version and help, the providers it lists, the admin key it makes, its log lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anygate.auth import hash_key, stored_admin_digest
from anygate.cli.serve import admin_key_source
from anygate.settings import load_settings
from tests.cli.command_line import invoke

SECRET = "sk-cli-secret-key-123456789"


def write(name: str, text: str) -> Path:
    path = Path.cwd() / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_bad_config_stops_with_a_message_naming_the_field_and_the_file() -> None:
    config = write("bad.yaml", "providers:\n  - id: groq\n    colour: blue\n")
    result = invoke("serve", "--config", str(config))
    assert result.returncode != 0
    assert str(config) in result.stderr
    assert "providers.0.colour" in result.stderr
    assert "unknown field" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_named_by_a_relative_path_says_which_file_was_tried() -> None:
    result = invoke("models", "--config", "nosuch.yaml")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"anygate: nosuch.yaml: cannot read the config file (No such file or directory, tried {Path.cwd()}/nosuch.yaml)"
    )


def test_version_and_help_read_as_text(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    from anygate import __version__

    version = invoke("--version")
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
    result = invoke("models", ANYGATE_CONFIG=str(config))
    assert result.returncode != 0
    assert str(config) in result.stderr
    assert "providers.0: address 127.0.0.1 is on a loopback or private network" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_custom_headers_json_stops_the_start() -> None:
    result = invoke("serve", OPENAI_COMPATIBLE_API_KEY="k", OPENAI_COMPATIBLE_CUSTOM_HEADERS="{nope")
    assert result.returncode != 0
    assert "OPENAI_COMPATIBLE_CUSTOM_HEADERS" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_auth_is_refused_off_loopback() -> None:
    result = invoke("serve", "--no-auth", "--host", "0.0.0.0", "--port", "18080")  # refused before it binds
    assert result.returncode != 0
    assert "loopback" in result.stderr


def test_providers_lists_without_secrets() -> None:
    config = write(
        "anygate.yaml",
        "providers:\n  - id: groq\n  - id: campus\n    type: custom\n    base_url: https://llm.example.edu/v1\n"
        "    name: 'Campus [/bold] LLM'\n    api_key: ${CAMPUS_KEY}\n  - id: ollama\n",
    )
    result = invoke("providers", "--config", str(config), CAMPUS_KEY=SECRET)
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
    result = invoke("providers", OPENAI_COMPATIBLE_API_KEY=SECRET)
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if "openai_compatible" in line]
    assert "Together AI" in row and "https://api.together.xyz/v1" in row and "yes" in row
    assert any("ollama" in line and "http://localhost:11434/v1" in line for line in result.stdout.splitlines())
    assert SECRET not in result.stdout + result.stderr


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
