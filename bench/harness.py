"""Benchmark anygate against nginx directly, a bare Python passthrough and LiteLLM's proxy.

Run it through `bench/run` (see `bench/run --help`). For each contender and mode (JSON or SSE)
the harness starts the contender against a fixed nginx upstream, checks one real request,
records idle RSS, then for 1 and 16 connections runs a wrk warmup and a measured run and
records RSS again. A contender with a prepare step (anygate: a budgeted key) gets it once it
serves and is loaded with the key it returns. `--baseline REV` adds anygate built from REV in a
temporary git worktree. Every process it starts is stopped, and the worktree removed, on exit,
Ctrl-C, SIGTERM or failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import FrameType

import baseline
from client import post
from contenders import (
    BENCH_DIR,
    LITELLM_BIN,
    ROOT,
    Contender,
    Credential,
    LaunchContext,
    PrepareFailed,
    Serving,
    all_contenders,
)
from load import LoadFailed, LoadResult, Scenario, lua_script, request_body, run_wrk
from processes import GATEWAY_CORE, LOAD_CORE, free_port, log_tail, pinned, running, tree_cpu_seconds, tree_rss_kib
from report import Run, first_line, load_average, render
from rows import Row
from upstream import MODEL, Upstream, nginx_config

SCENARIOS = (Scenario(False, 1), Scenario(False, 16), Scenario(True, 1), Scenario(True, 16))
# The slow-streams row: many streams open at once, each event arriving alone; anygate-messages translates
# each to Anthropic events, as a Claude Code stream over a chat upstream is.
SLOW_STREAM_CONTENDERS = ("passthrough", "anygate", "anygate-messages")
SLOW_INTERVAL = 0.1  # seconds between the slow upstream's events
SLOW_MIN_SECONDS = 20  # a slow stream lasts a second or more: the row runs long enough for many of them
CHAT_PATH = "/chat/completions"
API_PATHS = {"chat": CHAT_PATH, "messages": "/messages", "agent": CHAT_PATH}  # under the gateway's /v1
PROBE_GRACE = 5.0
BUSY_LOAD = 0.5
LITELLM_VERSION = "import importlib.metadata as m; print(m.version('litellm'))"


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    rounds: int
    slow_streams: int
    contenders: tuple[str, ...]
    baseline: str | None
    output: Path
    command: str


@dataclass(frozen=True)
class Endpoint:
    """Where a contender answers, with which key, streamed or not, in which API (`chat` or `messages`)."""

    url: str
    key: str
    is_stream: bool
    api: str = "chat"


@dataclass(frozen=True)
class Target:
    """A serving contender: its endpoint, the model it answered for, whose RSS to read."""

    endpoint: Endpoint
    model: str
    pid: int


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived; unwinding stops every process."""


class NotServing(Exception):
    """A contender did not answer a real request correctly."""


def parse_args(argv: Sequence[str]) -> Options:
    names = [c.name for c in all_contenders()]
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s per row, 1 s warmup")
    parser.add_argument("--duration", type=int, help="seconds of measured load per row (default 10)")
    parser.add_argument("--warmup", type=int, help="seconds of warmup per row (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measured runs per row, keeping the best; 3 helps on a busy machine (default 1)",
    )
    parser.add_argument(
        "--slow-streams",
        type=int,
        default=1000,
        help="open streams in the slow-streams row (upstream events 100 ms apart); 0 skips it (default 1000)",
    )
    parser.add_argument(
        "--only",
        default=",".join(names),
        help=f"comma-separated contenders (default: {','.join(names)})",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure anygate built from git revision REV (added to --only), e.g. 77053f7",
    )
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "results" / "latest.md")
    args = parser.parse_args(argv)
    chosen = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    rev = None
    if args.baseline:
        try:
            rev = baseline.resolve(args.baseline)[0]
        except ValueError as exc:
            parser.error(str(exc))
    duration = args.duration or (3 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    command = shlex.join(["bench/run", *argv])
    return Options(duration, warmup, max(args.rounds, 1), max(args.slow_streams, 0), chosen, rev, args.output, command)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def answer_problem(status: int, body: bytes, is_stream: bool, api: str = "chat") -> str | None:
    """Why a response is not a successful chat completion (or Anthropic message), or None when it is one."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    if api == "messages":
        return messages_problem(body, is_stream)
    if is_stream:
        # Usage is not required: LiteLLM relays it only when stream_options asks for it.
        is_complete = b"chat.completion.chunk" in body and b"data: [DONE]" in body
        return None if is_complete else f"bad stream {body[:200]!r}"
    try:
        return None if json.loads(body).get("choices") else f"no choices in {body[:200]!r}"
    except ValueError:
        return f"not JSON: {body[:200]!r}"


def messages_problem(body: bytes, is_stream: bool) -> str | None:
    """Why a 200 is not a whole Anthropic message (a stream: through `message_stop`), or None."""
    if is_stream:
        is_complete = b"event: message_start" in body and b"event: message_stop" in body
        return None if is_complete else f"bad stream {body[:200]!r}"
    try:
        return None if json.loads(body).get("type") == "message" else f"not a message: {body[:200]!r}"
    except ValueError:
        return f"not JSON: {body[:200]!r}"


def probe(endpoint: Endpoint, model: str) -> str | None:
    """Send one real request; None when it succeeded, else why not. Raises OSError when refused."""
    status, body = post(endpoint.url, request_body(model, endpoint.is_stream, endpoint.api), endpoint.key)
    return answer_problem(status, body, endpoint.is_stream, endpoint.api)


def wait_until_serving(
    process: subprocess.Popen[bytes],
    log: Path,
    endpoint: Endpoint,
    models: Sequence[str],
    timeout: float,
) -> str:
    """Poll until one of `models` gets a correct answer; return that model name."""
    deadline, answered_at, problems = time.monotonic() + timeout, 0.0, {}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotServing(f"exited with code {process.returncode}: {log_tail(log, 3)}")
        for model in models:
            try:
                problem = probe(endpoint, model)
            except OSError as exc:
                problems[model] = f"not answering ({exc})"
                continue
            if problem is None:
                return model
            problems[model] = problem
            answered_at = answered_at or time.monotonic()
        if answered_at and time.monotonic() - answered_at > PROBE_GRACE:
            break
        time.sleep(0.25)
    raise NotServing("; ".join(f"{model}: {problem}" for model, problem in problems.items()))


def measure(contender: str, target: Target, scenarios: Sequence[Scenario], opts: Options, workdir: Path) -> list[Row]:
    """Warm up and measure each scenario against a serving target, reading RSS and CPU time around it.

    A slow-streams scenario reads RSS halfway through its run, while its streams are open."""
    rows, idle, url = [], tree_rss_kib(target.pid), target.endpoint.url
    for scenario in scenarios:
        script = workdir / f"{contender}-{scenario.mode}.lua"
        body = request_body(target.model, scenario.is_stream, target.endpoint.api)
        script.write_text(lua_script(body, target.endpoint.key))
        open_rss: list[int] = []
        midway = partial(_sample_rss, target.pid, open_rss) if scenario.is_paced else None
        try:
            if opts.warmup:
                run_wrk(url, script, scenario.connections, opts.warmup)
            runs = []
            seconds = max(opts.duration, SLOW_MIN_SECONDS) if scenario.is_paced else opts.duration
            for _ in range(opts.rounds):
                cpu_before = tree_cpu_seconds(target.pid)
                result = run_wrk(url, script, scenario.connections, seconds, midway)
                runs.append((result, tree_cpu_seconds(target.pid) - cpu_before))
            result, cpu = max(runs, key=lambda run: run[0].rps)
        except LoadFailed as exc:
            rows.append(Row(contender, scenario, None, idle, tree_rss_kib(target.pid), str(exc)))
            continue
        after = max(open_rss) if open_rss else tree_rss_kib(target.pid)
        row = Row(contender, scenario, result, idle, after, _note(result), cpu)
        rows.append(row)
        progress(
            f"  {contender} {scenario.mode} c={scenario.connections}: {result.rps:,.0f} rps, "
            f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, {result.errors} errors, "
            f"{row.cpu_us_per_request or 0:,.0f} us CPU/request"
        )
    return rows


def _sample_rss(pid: int, into: list[int]) -> None:
    into.append(tree_rss_kib(pid))


def _note(result: LoadResult) -> str:
    if not result.errors:
        return ""
    return f"{result.bad_statuses} non-2xx and {result.socket_errors} socket errors in {result.requests} requests"


def bench_direct(upstream: Upstream, nginx_pid: int, key: str, opts: Options, workdir: Path) -> list[Row]:
    rows = []
    for is_stream in (False, True):
        endpoint = Endpoint(upstream.base_for(is_stream) + CHAT_PATH, key, is_stream)
        problem = probe(endpoint, MODEL)
        if problem is not None:
            raise NotServing(f"nginx upstream answered badly: {problem}")
        scenarios = [s for s in SCENARIOS if s.is_stream == is_stream]
        rows += measure("direct", Target(endpoint, MODEL, nginx_pid), scenarios, opts, workdir)
    return rows


def loading_credential(contender: Contender, origin: str, endpoint: Endpoint, model: str) -> Credential:
    """The key to load a serving contender with: its prepare step's, checked with one request."""
    if contender.prepare is None:
        return Credential(endpoint.key, "")
    credential = contender.prepare(Serving(origin, endpoint.key))
    problem = probe(replace(endpoint, key=credential.key), model)
    if problem is not None:
        raise NotServing(f"with the prepared key: {problem}")
    return credential


def modes(contender: Contender, upstream: Upstream, opts: Options) -> list[tuple[str, list[Scenario]]]:
    """Each instance to start: its upstream base URL and the scenarios measured against it."""
    found = [
        (upstream.base_for(is_stream), [s for s in SCENARIOS if s.is_stream == is_stream])
        for is_stream in (False, True)
    ]
    if opts.slow_streams and upstream.slow_port and contender.name in SLOW_STREAM_CONTENDERS:
        found.append((upstream.slow_base, [Scenario(True, opts.slow_streams, is_paced=True)]))
    return found


def bench_gateway(
    contender: Contender, upstream: Upstream, key: str, opts: Options, workdir: Path
) -> tuple[list[Row], list[str]]:
    """Start the contender once per mode against the matching upstream port and measure it.

    Returns the rows and what its prepare step said about the key it loaded with.
    """
    assert contender.launch is not None
    rows: list[Row] = []
    notes: list[str] = []
    for upstream_base, scenarios in modes(contender, upstream, opts):
        is_stream = scenarios[0].is_stream
        instance_dir = workdir / f"{contender.name}-{scenarios[0].mode}"
        instance_dir.mkdir()
        port = free_port()
        launch = contender.launch(LaunchContext(upstream_base, port, instance_dir, key))
        log = instance_dir / "server.log"
        origin = f"http://127.0.0.1:{port}"
        endpoint = Endpoint(f"{origin}/v1{API_PATHS[contender.api]}", key, is_stream, contender.api)
        with running(pinned(GATEWAY_CORE, launch.argv), log, launch.env) as process:
            try:
                model = wait_until_serving(process, log, endpoint, contender.models, launch.ready_timeout)
                credential = loading_credential(contender, origin, endpoint, model)
            except (NotServing, PrepareFailed) as exc:
                progress(f"  {contender.name} {scenarios[0].mode}: did not serve: {exc}")
                rows += [Row(contender.name, s, None, note=f"did not serve: {exc}") for s in scenarios]
                continue
            progress(f"  serving {model!r} on port {port} (pid {process.pid})")
            notes += [credential.note] if credential.note else []
            target = Target(replace(endpoint, key=credential.key), model, process.pid)
            rows += measure(contender.name, target, scenarios, opts, instance_dir)
    return rows, notes


@contextlib.contextmanager
def nginx_upstream(workdir: Path) -> Iterator[tuple[Upstream, int]]:
    """Run the fixed nginx upstream and the paced one on the load core; yields them and nginx's pid."""
    upstream = Upstream(free_port(), free_port(), free_port())
    config = workdir / "nginx.conf"
    config.write_text(nginx_config(upstream, workdir))
    argv = ["nginx", "-p", str(workdir), "-c", str(config), "-e", str(workdir / "nginx-error.log")]
    slow = [sys.executable, str(BENCH_DIR / "slow_upstream.py"), "--port", str(upstream.slow_port)]
    slow += ["--interval", str(SLOW_INTERVAL)]
    log = workdir / "nginx.log"
    with (
        running(pinned(LOAD_CORE, argv), log) as process,
        running(pinned(LOAD_CORE, slow), workdir / "slow-upstream.log") as slow_process,
    ):
        _wait_for_models(process, upstream, log)
        _wait_for_models(
            slow_process, replace(upstream, json_port=upstream.slow_port, sse_port=upstream.slow_port), log
        )
        yield upstream, process.pid


def _wait_for_models(process: subprocess.Popen[bytes], upstream: Upstream, log: Path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotServing(f"nginx exited {process.returncode}: {log_tail(log)}")
        try:
            for base in (upstream.json_base, upstream.sse_base):
                with opener.open(base + "/models", timeout=2) as response:
                    response.read()
            return
        except OSError:
            time.sleep(0.1)
    raise NotServing("nginx did not answer GET /v1/models within 10 s")


def versions(opts: Options) -> dict[str, str]:
    git = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    litellm = [str(LITELLM_BIN.parent / "python"), "-c", LITELLM_VERSION]
    facts = {
        "python": sys.version.split()[0],
        "anygate commit": first_line(git),
        "litellm": first_line(litellm) if LITELLM_BIN.exists() else "not installed",
    }
    if opts.baseline:
        facts["baseline commit"] = first_line(["git", "-C", str(ROOT), "log", "-1", "--format=%H %s", opts.baseline])
    return facts


@dataclass
class Outcome:
    """What `bench_all` found: measured rows, skipped contenders and what each contender was."""

    rows: list[Row]
    skipped: dict[str, str]
    about: dict[str, str]


def bench_one(contender: Contender, upstream: Upstream, nginx_pid: int, opts: Options, workdir: Path) -> Outcome:
    key = "sk-bench-" + secrets.token_hex(16)
    reason = contender.unavailable()
    if reason is not None:
        progress(f"{contender.name}: skipped, {reason}")
        return Outcome([], {contender.name: reason}, {})
    progress(f"{contender.name}:")
    if contender.launch is None:
        rows, notes = bench_direct(upstream, nginx_pid, key, opts, workdir), []
    else:
        rows, notes = bench_gateway(contender, upstream, key, opts, workdir)
    if all(row.result is None for row in rows):
        return Outcome([], {contender.name: rows[0].note}, {})
    about = "; ".join([contender.about, *(f"loaded with {note}" for note in dict.fromkeys(notes))])
    return Outcome(rows, {}, {contender.name: about})


def bench_all(opts: Options, workdir: Path) -> Outcome:
    outcome = Outcome([], {}, {})
    with contextlib.ExitStack() as stack:
        built = None
        if opts.baseline:
            progress(f"building anygate@{opts.baseline} in a git worktree")
            built = stack.enter_context(baseline.checkout(opts.baseline, workdir))
        upstream, nginx_pid = stack.enter_context(nginx_upstream(workdir))
        progress(f"nginx upstream: json {upstream.json_base}, sse {upstream.sse_base}")
        for contender in all_contenders(built):
            chosen = contender.name in opts.contenders or contender.along_with in opts.contenders
            if chosen or (built and contender.name == built.name):
                one = bench_one(contender, upstream, nginx_pid, opts, workdir)
                outcome.rows += one.rows
                outcome.skipped.update(one.skipped)
                outcome.about.update(one.about)
    return outcome


def main(argv: Sequence[str]) -> int:
    opts = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupted)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    if float(load_before.split()[0]) > BUSY_LOAD:
        progress(f"warning: load average {load_before}; other work on this machine skews results")
    try:
        with tempfile.TemporaryDirectory(prefix="anygate-bench-") as tmp:
            outcome = bench_all(opts, Path(tmp))
    except (KeyboardInterrupt, Interrupted):
        progress("interrupted; every started process has been stopped")
        return 130
    except NotServing as exc:
        progress(f"upstream failed: {exc}")
        return 1
    run = Run(outcome.rows, outcome.skipped, outcome.about, opts.command, started, opts, load_before)
    text = render(run, SCENARIOS, versions(opts))
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    print(text)
    progress(f"written to {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
