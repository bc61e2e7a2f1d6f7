"""Graceful drain: SIGTERM stops accepting, lets open streams finish (up to the grace period), keeps
every usage row, and the process exits 0, with one worker or several."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import orjson
import pytest
import yaml

from tests.support.fake_upstream import FakeUpstream, Reply

pytestmark = pytest.mark.sockets  # a gateway process, signals and connections as the server sees them

ADMIN_KEY = "sk-ag-drain-test-admin-key"
STREAMS = 20


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gateway(
    tmp_path: Path, upstream: FakeUpstream, workers: int, *extra: str
) -> tuple[subprocess.Popen[bytes], int]:
    config = {
        "providers": [
            {
                "id": "fake",
                "type": "custom",
                "base_url": upstream.base_url,
                "api_key": "sk-upstream",
                "allow_private_network": True,
            }
        ]
    }
    config_path = tmp_path / "anygate.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {**os.environ, "ANYGATE_ADMIN_KEY": ADMIN_KEY, "ANYGATE_DATA_DIR": str(tmp_path / "data")}
    command = [sys.executable, "-m", "anygate", "serve", "--config", str(config_path), "--port", str(port)]
    with (tmp_path / "gateway.log").open("wb") as log:
        # A session of its own: ``stop`` can kill the workers too, never left serving after a failed test.
        process = subprocess.Popen(
            [*command, "--workers", str(workers), *extra], env=env, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 60
    log_path = tmp_path / "gateway.log"
    while time.monotonic() < deadline and process.poll() is None:
        try:
            # Every worker has started (the first answering /health says nothing of the others).
            started = log_path.read_bytes().count(b"Application startup complete") >= workers
            if started and httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, port
        except httpx2.TransportError:
            pass
        time.sleep(0.05)  # never a busy loop: it would take the CPU from the workers it waits for
    stop(process)
    raise AssertionError(f"gateway did not start: {(tmp_path / 'gateway.log').read_text()}")


def open_stream(port: int, results: list[bytes], started: threading.Semaphore) -> None:
    body = {"model": "fake/fake-model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        httpx2.Client(timeout=30) as client,
        client.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        started.release()
        results.append(first + b"".join(chunks))


def open_streams(port: int) -> tuple[list[bytes], list[threading.Thread]]:
    results: list[bytes] = []
    started = threading.Semaphore(0)
    threads = [threading.Thread(target=open_stream, args=(port, results, started)) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    for _ in range(STREAMS):
        assert started.acquire(timeout=20)
    return results, threads


def post_chat(port: int) -> httpx2.Response:
    body = {"model": "fake/fake-model", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return httpx2.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers, timeout=30)


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.02)


def refused_while_draining(process: subprocess.Popen[bytes], port: int, finished: list[bytes]) -> bool:
    """Whether new connections are refused while the open streams are still running (a connection the
    kernel accepts during the drain would wait in a backlog that no worker serves any more)."""
    while process.poll() is None and len(finished) < STREAMS:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except ConnectionRefusedError:
            return len(finished) < STREAMS
        except TimeoutError:
            pass
        time.sleep(0.05)
    return False


def ledger(tmp_path: Path) -> list[tuple[int, int]]:
    """(status, output tokens) of every usage row."""
    with sqlite3.connect(tmp_path / "data" / "anygate.db") as db:
        return list(db.execute("select status, output_tokens from usage_ledger"))


def stop(process: subprocess.Popen[bytes]) -> None:
    """Kill the gateway and its workers (its process group), if still there."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_open_streams_finishes_them_and_exits_zero(tmp_path: Path, workers: int) -> None:
    with FakeUpstream.start_in_thread(chunks=60, event_delay=0.1) as upstream:  # six seconds each
        process, port = start_gateway(tmp_path, upstream, workers)
        try:
            results, threads = open_streams(port)
            process.send_signal(signal.SIGTERM)
            refused = refused_while_draining(process, port, results)
            for thread in threads:
                thread.join(timeout=30)
            assert process.wait(timeout=40) == 0
        finally:
            stop(process)
    assert refused, (tmp_path / "gateway.log").read_text()
    assert len(results) == STREAMS
    assert all(result.rstrip().endswith(b"data: [DONE]") for result in results)
    rows = ledger(tmp_path)
    assert len(rows) == STREAMS and all(status == 200 and tokens > 0 for status, tokens in rows)


@pytest.mark.parametrize("workers", [1, 2])
def test_streams_still_open_when_the_grace_period_ends_get_an_error_event(tmp_path: Path, workers: int) -> None:
    with FakeUpstream.start_in_thread(chunks=600, event_delay=0.1) as upstream:  # a minute each
        process, port = start_gateway(tmp_path, upstream, workers, "--grace", "1")
        try:
            results, threads = open_streams(port)
            upstream.script(Reply(hang_before_headers=True), path="/v1/chat/completions")
            waiting: list[httpx2.Response] = []
            threads.append(threading.Thread(target=lambda: waiting.append(post_chat(port))))
            threads[-1].start()
            wait_for(lambda: len(upstream.requests_to("/v1/chat/completions")) > STREAMS)
            process.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(timeout=30)
            assert process.wait(timeout=40) == 0
        finally:
            stop(process)
    assert waiting[0].status_code == 503  # still waiting for its upstream: an answer, not a cut connection
    assert waiting[0].json()["error"]["code"] == "shutting_down"
    assert len(results) == STREAMS
    for result in results:
        last = result.rstrip().rsplit(b"\n\n", 1)[-1]
        assert orjson.loads(last.removeprefix(b"data: "))["error"]["code"] == "shutting_down"
        assert b"data: [DONE]" not in result
    rows = ledger(tmp_path)
    assert len(rows) == STREAMS + 1 and all(status == 503 for status, _ in rows)


LISTENER_STOPPED = b"stopped accepting connections"


class Attempts:
    """Connection attempts made one after another from several threads, each classified: refused at
    connect, answered in full, or dropped (connected, then closed or reset without a whole answer)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.outcomes: list[tuple[float, str]] = []  # (when the attempt started, outcome)
        self.done = threading.Event()

    def attempt(self) -> str:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except ConnectionRefusedError:
            return "refused"
        with sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
            except OSError:
                return "dropped"
        whole = received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status":"ok"}')
        return "answered" if whole else "dropped"

    def run(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            self.outcomes.append((started, self.attempt()))

    def start(self, threads: int) -> list[threading.Thread]:
        running = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for thread in running:
            thread.start()
        return running


def test_after_sigterm_every_connection_is_answered_or_refused_and_none_is_served_once_stopped(
    tmp_path: Path,
) -> None:
    """With several workers, SIGTERM stops the listener at once: a connection attempt made after that is
    refused at connect; one made before it is answered in full, never accepted and then dropped."""
    with FakeUpstream.start_in_thread() as upstream:
        process, port = start_gateway(tmp_path, upstream, 4)
        log = tmp_path / "gateway.log"
        attempts = Attempts(port)
        threads = attempts.start(8)
        try:
            wait_for(lambda: sum(outcome == "answered" for _, outcome in attempts.outcomes) >= 200)
            process.send_signal(signal.SIGTERM)
            wait_for(lambda: LISTENER_STOPPED in log.read_bytes())
            stopped_at = time.monotonic()
            wait_for(lambda: any(started > stopped_at for started, _ in attempts.outcomes))
            assert process.wait(timeout=40) == 0
            wait_for(lambda: sum(started > stopped_at for started, _ in attempts.outcomes) >= 20)
        finally:
            attempts.done.set()
            for thread in threads:
                thread.join(timeout=30)
            stop(process)
    outcomes = attempts.outcomes
    assert not [o for o in outcomes if o[1] == "dropped"], log.read_text()
    assert {outcome for started, outcome in outcomes if started > stopped_at} == {"refused"}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_connection_made_before_sigterm_gets_its_request_answered_after_it(tmp_path: Path, workers: int) -> None:
    """Accepted before the stop, its request sent after: answered (and then closed), not cut off."""
    with FakeUpstream.start_in_thread() as upstream:
        process, port = start_gateway(tmp_path, upstream, workers)
        try:
            early = socket.create_connection(("127.0.0.1", port), timeout=10)
            with early:
                process.send_signal(signal.SIGTERM)
                # uvicorn logs this, then closes every connection that is not answering a request
                wait_for(lambda: (tmp_path / "gateway.log").read_bytes().count(b"Shutting down") == workers)
                early.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
                received = b""
                while chunk := early.recv(65536):
                    received += chunk
            assert process.wait(timeout=40) == 0
        finally:
            stop(process)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b'{"status":"ok"}')
    assert b"\r\nconnection: close\r\n" in received  # and then closed
