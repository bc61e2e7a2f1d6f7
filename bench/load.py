"""Load generation: wrk with a Lua script that posts one small chat (or Messages) request over and over.

The script's `done` hook prints one machine-readable line, so nothing depends on the layout
of wrk's human report. wrk times a request until its response has fully arrived, which for
a stream means the last SSE event.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from processes import LOAD_CORE, pinned

RESULT_MARK = "WRK_RESULT"

TURN_MARK = "@TURN@"  # where an agent's request gets its turn's number (``lua_script``)
_DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("%s %d %d %.1f %.1f %d %d %d %d %d\\n", "{mark}",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class Scenario:
    """One load shape: streamed or not, and how many connections wrk keeps busy."""

    is_stream: bool
    connections: int
    is_paced: bool = False  # against the slow upstream: events 100 ms apart, many streams open at once

    @property
    def mode(self) -> str:
        if self.is_paced:
            return "slow-stream"
        return "stream" if self.is_stream else "json"

    def __repr__(self) -> str:
        return f"Scenario({self.mode}, c={self.connections})"


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured; latencies in milliseconds."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    bad_statuses: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.socket_errors + self.bad_statuses


class LoadFailed(Exception):
    """wrk did not run or printed no result line."""


def request_body(model: str, is_stream: bool, api: str = "chat") -> str:
    """A small request: chat completions, or (`api="messages"`) the Anthropic Messages API; `api="agent"`: a
    coding agent's ~190 KB chat request (`agent_conversation`)."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if api == "agent":
        body = agent_conversation(model, TURN_MARK)
    if api == "messages":
        body["max_tokens"] = 64
    if is_stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def lua_script(body: str, key: str) -> str:
    """The wrk script: method, body, headers, and the result hook. A body holding ``TURN_MARK`` gets a
    number there, one more each request (an agent's turn: its newest part never seen before)."""
    head, marked, tail = body.partition(TURN_MARK)
    each = (
        f"local head, tail, turn = [==[{head}]==], [==[{tail}]==], 0\n"
        "request = function()\n  turn = turn + 1\n  return wrk.format(nil, nil, nil, head .. turn .. tail)\nend\n"
        if marked
        else f"wrk.body = [==[{body}]==]\n"
    )
    return (
        'wrk.method = "POST"\n'
        + each
        + 'wrk.headers["Content-Type"] = "application/json"\n'
        + f'wrk.headers["Authorization"] = "Bearer {key}"\n'
        + _DONE_HOOK.replace("{mark}", RESULT_MARK)
    )


def parse_result(stdout: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARK):
            fields = line.split()[1:]
            requests, duration_us = int(fields[0]), int(fields[1])
            p50_us, p99_us = float(fields[2]), float(fields[3])
            connect, read, write, status, timeout = (int(f) for f in fields[4:9])
            return LoadResult(
                requests=requests,
                seconds=duration_us / 1e6,
                p50_ms=p50_us / 1e3,
                p99_ms=p99_us / 1e3,
                socket_errors=connect + read + write + timeout,
                bad_statuses=status,
            )
    raise LoadFailed(f"no {RESULT_MARK} line in wrk output: {stdout[-400:]!r}")


def run_wrk(
    url: str, script: Path, connections: int, seconds: int, midway: Callable[[], None] | None = None
) -> LoadResult:
    """Run wrk on the load core for `seconds` and return what it measured; `midway` is called halfway."""
    argv = pinned(
        LOAD_CORE,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
    )
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as wrk:
        if midway is not None:
            time.sleep(seconds / 2)
            midway()
        try:
            stdout, stderr = wrk.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired as exc:
            wrk.kill()
            raise LoadFailed(f"wrk did not finish within {seconds + 30} s") from exc
    if wrk.returncode != 0:
        raise LoadFailed(f"wrk exited {wrk.returncode}: {stderr.strip()[-400:]}")
    return parse_result(stdout)


def agent_conversation(model: str, turn: str = "") -> dict[str, object]:
    """A coding agent's chat request (~190 KB), as Claude Code or Codex send one every turn: a long system
    prompt, twenty tools, and fifty turns of tool results (code) and replies, the last one marked with
    ``turn`` (the load makes it new every request, ``TURN_MARK``: a turn's newest tool result, counted,
    where the rest was counted before). A body that names `model` again inside (a tool's parameter) costs
    anygate more: its members are checked by a second, slower parse."""
    words = [f"{stem}{n % 97}" for n, stem in enumerate(("handler", "request", "budget", "answer", "cache") * 60)]
    code = "\n".join(f"def {words[n]}(value):  # café {n}\n    return {words[n + 1]}(value) + {n}" for n in range(45))
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"tool_{n}",
                "description": f"Tool {n}: reads, edits and searches the repository. " * 12,
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
            },
        }
        for n in range(20)
    ]
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a careful coding agent. " * 450}]
    for number in range(50):
        messages.append({"role": "assistant", "content": f"Reading file {number} next."})
        messages.append({"role": "user", "content": f"{code}\n# file {number}"})
    messages[-1]["content"] += f" (turn {turn})"
    return {"model": model, "messages": messages, "tools": tools}
