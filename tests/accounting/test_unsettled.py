"""Usage is never lost when the limiter's backend fails at settle: the ledger row is written whatever
happens to the counters, the settlement is retried, and the budget holds after recovery.

Redis dies (a private ``redis-server`` this test kills) while requests are in flight, and comes back
empty; the SQL limiter's database refuses settlements for a while (an injected failure).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from sqlalchemy.exc import OperationalError

from anygate.accounting.budgets import StaticBudgets
from anygate.accounting.limiter import Grant
from anygate.accounting.limiter_redis import RedisLimiter
from anygate.accounting.limiter_sql import SqlLimiter
from anygate.accounting.unsettled import Settlement, UnsettledQueue
from anygate.auth import Budget, Principal
from tests.accounting.gateway import eventually, fake_provider_settings, running_gateway
from tests.store.conftest import postgres_database, run_sql
from tests.support.fake_upstream import FakeUpstream, Reply, Usage
from tests.support.tokens import estimate_prompt

STUDENT = "sk-ag-student-unsettled-5555555555"
HEADERS = {"Authorization": f"Bearer {STUDENT}"}
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
BODY = {"model": "fake/fake-model", "messages": MESSAGES, "max_tokens": 20}
PER_REQUEST = estimate_prompt({"messages": MESSAGES}) + 20  # reserved, and what the fake reports using
BUDGET_REQUESTS = 10


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free port, keeping nothing on disk: killing it and
    starting it again is a Redis that comes back empty."""

    def __init__(self, directory: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(argv, cwd=self.directory, stdout=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        eventually(lambda: answers(client), "the private Redis answers")
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream.start_in_thread(usage=Usage(PER_REQUEST - 20, 20)) as up:
        yield up


def budgeted() -> tuple[dict[str, Principal], StaticBudgets]:
    principal = Principal(key_id="student", is_admin=False, label="student")
    return {STUDENT: principal}, StaticBudgets(
        {"student": Budget(tokens=BUDGET_REQUESTS * PER_REQUEST, period="daily")}
    )


def ask_until_refused(base: str, most: int = 3 * BUDGET_REQUESTS) -> int:
    """Requests one after another until the budget refuses one; how many were answered."""
    for answered in range(most):
        status = httpx.post(base + "/v1/chat/completions", json=BODY, headers=HEADERS, timeout=30).status_code
        if status == 429:
            return answered
        assert status == 200
    raise AssertionError("the budget never refused a request")


def used_tokens(base: str) -> float:
    return float(httpx.get(base + "/v1/quota", headers=HEADERS).json()["tokens"]["used"])


@pytest.mark.sockets  # a Redis server of its own, killed and started again
@pytest.mark.services
def test_redis_dying_mid_request_and_coming_back_empty_loses_no_usage(
    private_redis: PrivateRedis, upstream: FakeUpstream, tmp_path: Path
) -> None:
    in_flight = 4
    upstream.script_many([Reply(first_byte_delay=1.0)] * in_flight, path="/v1/chat/completions")
    with postgres_database() as database:
        settings = fake_provider_settings(
            upstream.base_url, tmp_path, database_url=database, redis_url=private_redis.url, limiter="redis"
        )
        with running_gateway(settings, *budgeted()) as (base, gateway), ThreadPoolExecutor(in_flight) as pool:
            url = base + "/v1/chat/completions"
            post = [pool.submit(httpx.post, url, json=BODY, headers=HEADERS, timeout=30) for _ in range(in_flight)]
            eventually(lambda: len(upstream.requests_to("/v1/chat/completions")) == in_flight, "all are upstream")
            private_redis.kill()  # every one of them has reserved; none has settled
            assert [answer.result().status_code for answer in post] == [200] * in_flight
            name = database.rsplit("/", 1)[1]
            eventually(
                lambda: len(asyncio.run(run_sql(name, "SELECT 1 FROM usage_ledger WHERE status = 200"))) == in_flight,
                "the ledger has every answered request",
            )
            accounting = gateway.state.accounting
            assert accounting is not None and len(accounting.enforcer.unsettled) == in_flight
            limiter = accounting.enforcer.limiter
            assert isinstance(limiter, RedisLimiter)  # what it cannot give back now waits with them
            assert limiter.unreleased_listeners == [accounting.enforcer.unsettled.release_later]
            private_redis.start()  # empty
            answered_after = ask_until_refused(base)
            used = used_tokens(base)
            eventually(
                lambda: not gateway.state.accounting.enforcer.unsettled,  # type: ignore[union-attr]
                "nothing waits to settle",
            )
            assert used_tokens(base) == used  # applied late, nothing counted twice
    assert in_flight + answered_after == BUDGET_REQUESTS  # the budget admitted what it holds, no more
    assert used == BUDGET_REQUESTS * PER_REQUEST


@pytest.mark.sockets
@pytest.mark.parametrize("ran", [False, True], ids=["refused", "answer-lost"])
def test_the_sql_limiter_failing_at_settle_loses_no_usage_and_counts_none_twice(
    upstream: FakeUpstream, tmp_path: Path, ran: bool
) -> None:
    """The database refuses the settlements for a while (locked), or commits them and the connection drops
    before it says so: either way each request's settlement is retried, and its usage counted once (a
    reservation gone was settled already)."""
    settings = fake_provider_settings(upstream.base_url, tmp_path, limiter="sql")
    with running_gateway(settings, *budgeted()) as (base, gateway):
        accounting = gateway.state.accounting
        assert accounting is not None
        limiter = accounting.enforcer.limiter
        assert isinstance(limiter, SqlLimiter)
        settle = limiter._settle_all  # the one transaction settling a request's grants
        failing = True

        async def failing_settle(settlements: Any, if_held: bool = False) -> None:
            if ran or not failing:
                await settle(settlements, if_held)
            if failing:
                error = "server closed the connection unexpectedly" if ran else "database is locked"
                raise OperationalError("COMMIT" if ran else "UPDATE limiter_counters", {}, Exception(error))

        limiter._settle_all = failing_settle  # type: ignore[method-assign]
        failed = 3
        for _ in range(failed):
            assert httpx.post(base + "/v1/chat/completions", json=BODY, headers=HEADERS).status_code == 200
        eventually(lambda: ledger(tmp_path)[0] == failed, "the ledger has every answered request")
        assert len(accounting.enforcer.unsettled) == failed
        failing = False
        eventually(lambda: not accounting.enforcer.unsettled, "the settlements are retried")
        assert used_tokens(base) == failed * PER_REQUEST  # once each
        answered_after = ask_until_refused(base)
        used = used_tokens(base)
    answered, ledger_tokens = ledger(tmp_path)
    assert failed + answered_after == BUDGET_REQUESTS == answered
    assert used == ledger_tokens == BUDGET_REQUESTS * PER_REQUEST


def ledger(data_dir: Path) -> tuple[int, int]:
    """Answered requests in the SQLite ledger, and their tokens."""
    with sqlite3.connect(data_dir / "anygate.db") as db:
        query = "SELECT count(*), coalesce(sum(input_tokens + output_tokens), 0) FROM usage_ledger WHERE status = 200"
        answered, tokens = db.execute(query).fetchone()
    return int(answered), int(tokens)


class FlakyLimiter:
    """Settles while ``up``; records what it settled."""

    def __init__(self) -> None:
        self.up = False
        self.settled: list[str] = []

    async def settle(self, grant: Grant, actual: Any, if_held: bool = False) -> None:
        if not self.up:
            raise redis.ConnectionError("down")
        self.settled.append(grant.token)


async def test_the_queue_keeps_order_forgets_rebuilt_buckets_and_stays_bounded() -> None:
    queue = UnsettledQueue(limit=3)
    grants = [
        Grant(bucket, token, {"tokens": 1.0}) for bucket, token in [("a", "1"), ("b", "2"), ("a", "3"), ("b", "4")]
    ]
    queue.add(Settlement(grant, {"tokens": 1.0}) for grant in grants)
    assert len(queue) == 3  # the oldest was dropped (and logged)
    limiter = FlakyLimiter()
    assert await queue.retry(limiter) == 0 and len(queue) == 3  # still down: nothing lost
    queue.forget_bucket("a")  # rebuilt from the ledger by this process: it counts them already
    limiter.up = True
    assert await queue.retry(limiter) == 2
    assert limiter.settled == ["2", "4"] and not queue
