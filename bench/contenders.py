"""The contenders: how each one is found, configured and started against a given upstream.

`direct` has no launch: wrk talks to nginx itself, which is the floor every gateway adds to.
A contender that is not installed (or whose CLI does not start) says why through
`unavailable`, and the harness reports it as skipped. A contender with a `prepare` step gets
it once it serves, and is loaded with the key that step returns instead of the admin key.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from baseline import Baseline
from client import post
from upstream import MODEL

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
ANYGATE_BIN = ROOT / ".venv" / "bin" / "anygate"
LITELLM_BIN = BENCH_DIR / ".venv-litellm" / "bin" / "litellm"
REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/15"  # a database of its own; every key a run makes is new
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
class Serving:
    """A contender that answers: its origin (`http://127.0.0.1:port`) and the admin key."""

    origin: str
    admin_key: str


@dataclass(frozen=True)
class Credential:
    """The key to load a contender with, and a sentence for the report saying what it is."""

    key: str
    note: str


class PrepareFailed(Exception):
    """A contender serves, but its prepare step could not make the key to load with."""


@dataclass(frozen=True)
class Contender:
    """`api`: what the load posts, `chat` (`/v1/chat/completions`), `messages` (`/v1/messages`) or `agent` (a
    coding agent's ~190 KB chat request);
    `along_with`: another contender whose selection (`--only`) selects this one too."""

    name: str
    about: str
    models: tuple[str, ...]
    unavailable: Callable[[], str | None]
    launch: Callable[[LaunchContext], Launch] | None
    prepare: Callable[[Serving], Credential] | None = None
    api: str = "chat"
    along_with: str | None = None

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


def _anygate_unavailable(anygate_bin: Path) -> str | None:
    if not anygate_bin.exists():
        return f"{anygate_bin} not found (run `uv sync`)"
    try:
        done = subprocess.run(
            [str(anygate_bin), "serve", "--help"],
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


def _baseline_unavailable(baseline: Baseline) -> str | None:
    return baseline.problem or _anygate_unavailable(baseline.anygate_bin)


def accepts_prices(root: Path) -> bool:
    """Whether the anygate checked out at `root` has the `prices:` setting (its config forbids extras)."""
    try:
        settings = (root / "src" / "anygate" / "settings.py").read_text()
    except OSError:
        return False
    return re.search(r"^\s+prices:", settings, re.MULTILINE) is not None


def anygate_config(upstream_base: str, with_prices: bool) -> str:
    # A price makes accounting compute a cost for every request, as it would for a real model.
    prices = f"prices:\n  bench/{MODEL}: {{input: 1.0, output: 2.0}}\n" if with_prices else ""
    return f"""providers:
  - id: bench
    type: custom
    base_url: {upstream_base}
    api_key: upstream-key
    allow_private_network: true
    models: [{MODEL}]
{prices}"""


def _launch_anygate(anygate_bin: Path, with_prices: bool, ctx: LaunchContext, redis_url: str | None = None) -> Launch:
    config = ctx.workdir / "anygate.yaml"
    config.write_text(anygate_config(ctx.upstream_base, with_prices))
    data_dir = ctx.workdir / "data"
    data_dir.mkdir(exist_ok=True)
    argv = [
        str(anygate_bin),
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(ctx.port),
    ]
    env = loopback_env(ANYGATE_ADMIN_KEY=ctx.key, ANYGATE_DATA_DIR=str(data_dir))
    if redis_url is not None:  # the counters in Redis, as replicas share them (limiter: auto picks redis)
        env["ANYGATE_REDIS_URL"] = redis_url
    # Migrated beforehand, as a restarted gateway's database is: RSS is then what a gateway holds in
    # service, without the migration tool a first start imports once (docs/benchmarks.md says how much).
    # A revision without `anygate db upgrade` migrates at start, as before.
    migrate = [str(anygate_bin), "db", "upgrade", "--config", str(config)]
    subprocess.run(migrate, env=env, capture_output=True, timeout=120, check=False)
    return Launch(argv, env, ready_timeout=60)


# A budget and limits far above what a run can spend, so every request is counted, reserved
# and settled, and none is refused.
BENCH_KEY = {
    "alias": "bench",
    "budget": {"tokens": 10_000_000_000, "usd": 1_000_000, "period": "daily", "mode": "hard"},
    "limits": {"rpm": 100_000_000, "tpm": 100_000_000_000, "concurrency": 10_000},
}
BUDGET_NOTE = (
    "a key made through POST /v1/keys with a daily hard budget (tokens and USD) and rpm, tpm and "
    "concurrency limits, none of which the run reaches"
)


def make_budgeted_key(serving: Serving) -> Credential:
    """Create the bench key with the admin key; an anygate without the key API keeps the admin key."""
    status, body = post(serving.origin + "/v1/keys", json.dumps(BENCH_KEY), serving.admin_key)
    if status in (404, 405):
        return Credential(serving.admin_key, f"the admin key (no budget): POST /v1/keys answered {status}")
    if status != 201:
        raise PrepareFailed(f"POST /v1/keys answered {status}: {body[:200]!r}")
    try:
        key = json.loads(body)["key"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PrepareFailed(f"POST /v1/keys answered without a key: {body[:200]!r}") from exc
    return Credential(key, BUDGET_NOTE)


# A team with three budgets (daily tokens, 5-hour requests, monthly USD), none of which a run reaches.
BENCH_TEAM = {
    "name": "bench-course",
    "budgets": [
        {"tokens": 10_000_000_000, "window": "daily"},
        {"requests": 1_000_000_000, "window": "5h"},
        {"usd": 1_000_000, "window": "monthly"},
    ],
}
TEAM_NOTE = BUDGET_NOTE + ", whose user is in a team with three budgets (daily tokens, 5h requests, monthly USD)"


def make_team_key(serving: Serving) -> Credential:
    """The bench key, owned by a user of a team with three budgets: five budget windows a request."""
    made: list[Any] = []
    for path, given in (("/v1/teams", BENCH_TEAM), ("/v1/users", {"name": "bench-student"})):
        body = {**given, "team_id": made[0]["id"]} if path == "/v1/users" else given
        status, answer = post(serving.origin + path, json.dumps(body), serving.admin_key)
        if status != 201:
            raise PrepareFailed(f"POST {path} answered {status}: {answer[:200]!r}")
        made.append(json.loads(answer))
    status, answer = post(
        serving.origin + "/v1/keys", json.dumps({**BENCH_KEY, "user_id": made[1]["id"]}), serving.admin_key
    )
    if status != 201:
        raise PrepareFailed(f"POST /v1/keys answered {status}: {answer[:200]!r}")
    return Credential(json.loads(answer)["key"], TEAM_NOTE)


def _anygate_contenders(baseline: Baseline | None) -> list[Contender]:
    models = (f"bench/{MODEL}", MODEL)
    current = partial(_launch_anygate, ANYGATE_BIN, accepts_prices(ROOT))
    available = partial(_anygate_unavailable, ANYGATE_BIN)
    contenders = [
        Contender(
            "anygate",
            "this checkout with auth, accounting and metrics on; prices configured",
            models,
            available,
            current,
            make_budgeted_key,
        ),
        Contender(
            "anygate-admin",
            "the same server and config, loaded with the admin key (no budget, no limits)",
            models,
            available,
            current,
        ),
        Contender(
            "anygate-messages",
            "the same server and config, posting Anthropic Messages requests to /v1/messages (translated to chat "
            "completions and back)",
            models,
            available,
            current,
            make_budgeted_key,
            api="messages",
            along_with="anygate",
        ),
        Contender(
            "anygate-team",
            "the same server and config, loaded with a budgeted key whose user is in a team with three budgets",
            models,
            available,
            current,
            make_team_key,
            along_with="anygate",
        ),
        Contender(
            "anygate-agent",
            "the same server and config, loaded with the budgeted key, posting a coding agent's ~190 KB chat "
            "request (compared with passthrough-agent)",
            models,
            available,
            current,
            make_budgeted_key,
            api="agent",
            along_with="anygate",
        ),
    ]
    contenders.append(
        Contender(
            "anygate-redis",
            "this checkout with the budgeted key and its counters in Redis (as replicas share them: "
            f"{REDIS_URL}); Redis's own CPU is not counted",
            models,
            partial(_redis_unavailable, ANYGATE_BIN),
            partial(_launch_anygate, ANYGATE_BIN, accepts_prices(ROOT), redis_url=REDIS_URL),
            make_budgeted_key,
        )
    )
    if baseline is not None:
        with_prices = accepts_prices(baseline.root)
        launch = partial(_launch_anygate, baseline.anygate_bin, with_prices)
        config = "the same config" if with_prices else "the same config minus `prices:` (not a setting there)"
        about = f"anygate built from {baseline.rev} ({baseline.subject}), with {config}"
        about += f"; {baseline.fixup}" if baseline.fixup else ""
        unavailable = partial(_baseline_unavailable, baseline)
        contenders.append(Contender(baseline.name, about, models, unavailable, launch, make_budgeted_key))
    return contenders


def _redis_unavailable(anygate_bin: Path) -> str | None:
    """Why the Redis row cannot run: anygate's own reason, or no Redis listening on the loopback."""
    reason = _anygate_unavailable(anygate_bin)
    if reason is not None:
        return reason
    try:
        with socket.create_connection(("127.0.0.1", REDIS_PORT), timeout=1):
            return None
    except OSError:
        return f"no Redis at 127.0.0.1:{REDIS_PORT}"


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


def all_contenders(baseline: Baseline | None = None) -> list[Contender]:
    """Every contender, in the order the report lists them; `anygate@REV` when given a baseline."""
    return [
        Contender("direct", "nginx answering wrk itself: the floor", (MODEL,), _always_available, None),
        Contender(
            "passthrough",
            "bench/passthrough.py, uvicorn + aiohttp: the ceiling of a Python proxy",
            (MODEL,),
            _always_available,
            _launch_passthrough,
        ),
        Contender(
            "passthrough-agent",
            "the same passthrough, posting a coding agent's ~190 KB chat request",
            (MODEL,),
            _always_available,
            _launch_passthrough,
            api="agent",
            along_with="passthrough",
        ),
        *_anygate_contenders(baseline),
        Contender(
            "litellm", "LiteLLM's proxy, one worker, master key", (MODEL,), _litellm_unavailable, _launch_litellm
        ),
    ]
