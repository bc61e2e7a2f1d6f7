"""The README's quick start and examples, run as a newcomer runs them: ``scripts/serve`` with the Groq example
(a loopback fake standing in for Groq), the admin key it prints, a key from ``scripts/anygate keys create``,
then the curl commands, the Python example and the library example, each taken from the README itself."""

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

from tests.support.docs import ROOT, code_block
from tests.support.fake_upstream import FakeUpstream
from tests.support.waiting import eventually

pytestmark = pytest.mark.sockets
README = "README.md"
VENDOR_KEY = "gsk_readme-test-key-0123456789"
MODEL = "llama-3.1-8b-instant"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    """The user's environment without anygate's settings, with a data dir of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYGATE_", "OPENAI_", "OPENROUTER_"))}
    return {**env, "ANYGATE_DATA_DIR": str(data_dir), "COLUMNS": "200", "NO_COLOR": "1", **extra}


def as_run_here(command: str, base_url: str) -> str:
    """A README command with the checkout's scripts by their full path and the gateway where the test runs it."""
    return command.replace("scripts/", f"{ROOT}/scripts/").replace("http://127.0.0.1:8080", base_url)


@contextmanager
def started(command: str, env: dict[str, str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    process = subprocess.Popen(
        ["bash", "-c", command],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stream = process.stderr
    reader = threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout=5)
        stream.close()


def key_works(base_url: str, key: str) -> bool:
    return httpx2.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code == 200


def printed_until_ready(port: int, process: subprocess.Popen[str], lines: queue.Queue[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "scripts/serve exited"
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx2.TransportError:
            time.sleep(0.1)
    text = []
    while not lines.empty():
        text.append(lines.get_nowait())
    return "".join(text)


@pytest.mark.timeout(300)  # a gateway and six commands, each a process that imports anygate
def test_the_quick_start_and_the_examples_work_as_written(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    data_dir, folder = tmp_path / "data", tmp_path / "my-folder"
    folder.mkdir()
    serve_line = code_block(README, "sh", "OPENAI_COMPATIBLE_BASE_URL=").splitlines()[0]
    with FakeUpstream.start_in_thread(models=[MODEL, "mixtral-8x7b"]) as groq:
        serve = as_run_here(serve_line, base_url).replace("https://api.groq.com/openai/v1", groq.base_url)
        serve = serve.replace("gsk_...", VENDOR_KEY) + f" --port {port}"
        env = environment(data_dir)
        with started(serve, env, folder) as (process, lines):
            printed = printed_until_ready(port, process, lines)
            admin_key = re.search(r"admin key: generated now and shown this once .*?(sk-ag-[\w-]+)", printed)
            assert admin_key is not None, printed
            assert f"console:   {base_url}/ui/" in printed

            create = as_run_here(code_block(README, "sh", "keys create --alias me").strip(), base_url)
            created = subprocess.run(
                ["bash", "-c", create], env=env, cwd=folder, capture_output=True, text=True, timeout=120
            )
            assert created.returncode == 0, created.stderr
            [key] = re.findall(r"sk-ag-[\w-]+", created.stdout)
            # In another terminal the provider given to scripts/serve's environment is not known: said so.
            assert "one given only to the running gateway's environment is not seen here" in created.stderr

            # `anygate models` in that terminal: why it sees nothing, then with the admin key what is served.
            cli_env = {**env, "ANYGATE_PORT": str(port)}
            models_cmd = ["bash", "-c", f"{ROOT}/scripts/anygate models"]
            unseen = subprocess.run(models_cmd, env=cli_env, cwd=folder, capture_output=True, text=True, timeout=120)
            listed = subprocess.run(
                models_cmd,
                env={**cli_env, "ANYGATE_ADMIN_KEY": admin_key.group(1)},
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=120,
            )

            # A new key reaches the running gateway at its next look at the store (within a second or so).
            eventually(lambda: key_works(base_url, key), "the new key works")
            curl = as_run_here(code_block(README, "sh", "v1/chat/completions"), base_url).replace("sk-ag-...", key)
            curled = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", curl], env=env, capture_output=True, text=True, timeout=60
            )
            python = as_run_here(code_block(README, "python", "from openai import OpenAI"), base_url)
            streamed = subprocess.run(
                [sys.executable, "-c", python],
                env={**env, "ANYGATE_KEY": key},
                capture_output=True,
                text=True,
                timeout=60,
            )
            with httpx2.Client(base_url=base_url, timeout=10) as browser:
                opened = browser.get("/")
                as_admin = browser.get("/v1/models", headers={"Authorization": f"Bearer {admin_key.group(1)}"})
    assert unseen.returncode == 1
    assert f"though a gateway answers at {base_url}" in unseen.stderr and "ANYGATE_ADMIN_KEY" in unseen.stderr
    assert listed.returncode == 0, listed.stderr
    assert "openai_compatible" in listed.stdout and MODEL in listed.stdout
    assert curled.returncode == 0, curled.stderr
    assert f'"id":"openai_compatible/{MODEL}"' in curled.stdout.replace(" ", "")
    assert "Hello from the fake upstream!" in curled.stdout
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == "Hello from the fake upstream!"
    assert opened.status_code == 307 and opened.headers["location"] == "/ui/"
    assert as_admin.status_code == 200
    chats = groq.requests_to("/v1/chat/completions")
    assert [r.json["model"] for r in chats] == [MODEL, MODEL]
    assert all(r.headers["authorization"] == f"Bearer {VENDOR_KEY}" for r in chats)


def test_the_library_example_runs_as_written(tmp_path: Path) -> None:
    example = code_block(README, "python", "from anygate import OpenAICompatibleProvider")
    with FakeUpstream.start_in_thread(models=["m-1"]) as together:
        runnable = example.replace('"https://api.together.xyz/v1"', repr(together.base_url)).replace(
            "base_url=url)", "base_url=url, allow_private_network=True)"
        )
        assert runnable != example
        ran = subprocess.run(
            [sys.executable, "-c", runnable],
            env=environment(tmp_path, TOGETHER_API_KEY="tk-readme"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 0, ran.stderr
    assert "Hello from the fake upstream!" in ran.stdout
    assert together.requests_to("/v1/chat/completions")[0].json["model"] == "m-1"


def test_the_quick_starts_variables_in_a_dotenv_reach_a_command_run_in_that_folder(tmp_path: Path) -> None:
    """The README: variables on the scripts/serve line reach that gateway only; in a .env in the folder, the
    command line run there sees them too."""
    said = " ".join((ROOT / README).read_text(encoding="utf-8").split())
    assert "put them in a `.env` in the folder you run both from" in said
    serve_line = code_block(README, "sh", "OPENAI_COMPATIBLE_BASE_URL=").splitlines()[0]
    variables = [word for word in serve_line.split() if word.startswith("OPENAI_COMPATIBLE_")]
    assert [v.split("=")[0] for v in variables] == ["OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY"]
    with FakeUpstream.start_in_thread(models=[MODEL]) as groq:
        dotenv = "\n".join(variables).replace("https://api.groq.com/openai/v1", groq.base_url)
        (tmp_path / ".env").write_text(dotenv.replace("gsk_...", VENDOR_KEY) + "\n", encoding="utf-8")
        listed = subprocess.run(
            [str(ROOT / "scripts/anygate"), "models"],
            cwd=tmp_path,
            env=environment(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert listed.returncode == 0, listed.stderr
    assert any("openai_compatible" in line and MODEL in line for line in listed.stdout.splitlines())
    assert groq.requests_to("/v1/models")[0].headers["authorization"] == f"Bearer {VENDOR_KEY}"
