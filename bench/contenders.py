"""The contenders: how each one is found, configured and started against a given upstream.

`direct` has no launch: wrk talks to nginx itself, which is the floor every gateway adds to.
A contender that is not installed (or whose CLI does not start) says why through
`unavailable`, and the harness reports it as skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from upstream import MODEL

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
ANYGATE_BIN = ROOT / ".venv" / "bin" / "anygate"
LITELLM_BIN = BENCH_DIR / ".venv-litellm" / "bin" / "litellm"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@dataclass(frozen=True)
class LaunchContext:
    """What a contender needs to start: its upstream (an OpenAI base URL), port, dir and key."""

    upstream_base: str
    port: int
    workdir: Path
    key: str


@dataclass(frozen=True)
class Launch:
    """A command line to run pinned to the gateway core, and how long it may take to answer."""

    argv: list[str]
    env: dict[str, str]
    ready_timeout: float


@dataclass(frozen=True)
class Contender:
    name: str
    models: tuple[str, ...]
    unavailable: Callable[[], str | None]
    launch: Callable[[LaunchContext], Launch] | None

    def __repr__(self) -> str:
        return f"Contender({self.name})"


def loopback_env(**extra: str) -> dict[str, str]:
    """The harness's environment without proxies, so every request stays on loopback."""
    env = {name: value for name, value in os.environ.items() if name not in PROXY_VARS}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", **extra}


def _always_available() -> str | None:
    return None


def _launch_passthrough(ctx: LaunchContext) -> Launch:
    origin = ctx.upstream_base.removesuffix("/v1")
    argv = [
        sys.executable,
        str(BENCH_DIR / "passthrough.py"),
        "--upstream",
        origin,
        "--port",
        str(ctx.port),
    ]
    return Launch(argv, loopback_env(), ready_timeout=30)


def _anygate_unavailable() -> str | None:
    if not ANYGATE_BIN.exists():
        return f"{ANYGATE_BIN} not found (run `uv sync`)"
    try:
        done = subprocess.run(
            [str(ANYGATE_BIN), "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`anygate serve --help` did not answer within 60 s"
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"`anygate serve --help` exited {done.returncode}: {last[0]}"
    return None


def anygate_config(upstream_base: str) -> str:
    return f"""providers:
  - id: bench
    type: custom
    base_url: {upstream_base}
    api_key: upstream-key
    allow_private_network: true
    models: [{MODEL}]
"""


def _launch_anygate(ctx: LaunchContext) -> Launch:
    config = ctx.workdir / "anygate.yaml"
    config.write_text(anygate_config(ctx.upstream_base))
    data_dir = ctx.workdir / "data"
    data_dir.mkdir(exist_ok=True)
    argv = [
        str(ANYGATE_BIN),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(ctx.port),
    ]
    env = loopback_env(ANYGATE_ADMIN_KEY=ctx.key, ANYGATE_DATA_DIR=str(data_dir))
    return Launch(argv, env, ready_timeout=60)


def _litellm_unavailable() -> str | None:
    if LITELLM_BIN.exists():
        return None
    return f"{LITELLM_BIN.relative_to(ROOT)} not found (run bench/setup)"


def litellm_config(upstream_base: str, key: str) -> str:
    return f"""model_list:
  - model_name: {MODEL}
    litellm_params:
      model: openai/{MODEL}
      api_base: {upstream_base}
      api_key: upstream-key
general_settings:
  master_key: {key}
"""


def _launch_litellm(ctx: LaunchContext) -> Launch:
    config = ctx.workdir / "litellm.yaml"
    config.write_text(litellm_config(ctx.upstream_base, ctx.key))
    argv = [
        str(LITELLM_BIN),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(ctx.port),
        "--num_workers",
        "1",
    ]
    # A local price map instead of fetching one from GitHub; ERROR level also silences
    # uvicorn's per-request access log, as one would in production.
    env = loopback_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    return Launch(argv, env, ready_timeout=120)


def all_contenders() -> list[Contender]:
    """Every contender, in the order the report lists them."""
    return [
        Contender("direct", (MODEL,), _always_available, None),
        Contender("passthrough", (MODEL,), _always_available, _launch_passthrough),
        Contender("anygate", (f"bench/{MODEL}", MODEL), _anygate_unavailable, _launch_anygate),
        Contender("litellm", (MODEL,), _litellm_unavailable, _launch_litellm),
    ]
