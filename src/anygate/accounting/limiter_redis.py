"""The Redis limiter: one Lua script per decision, a bucket's keys on one hash slot (``{budget:<id>}``), a
request's scripts sent together (one round trip to reserve its buckets, one to settle them).

    {budget:<id>}       hash: ``u:<counter>`` used, ``r:<counter>`` reserved; a rolling window's also
                        ``s:<slot>:<counter>`` used in each slot (``u:`` their running sum) and ``at``,
                        the slot in progress when the slots were last dropped
    {budget:<id>}:exp   sorted set: reservation token scored by its expiry (server time, ms)
    {budget:<id>}:amt   hash: token -> ``counter=amount;...`` of the reservation

Time is Redis's own (``TIME``), so replicas with skewed clocks agree on expiries and slots. A rolling
window's slots leave its running sum in the first reserve of a new slot; its keys live while it is used.
Redis may keep nothing on disk: a budget bucket found absent is seeded from the usage ledger (``SEED``: set
only if still absent) before its first reservation, this process's buffered ledger rows written first, so a Redis
restart resets no budget. Settling on a bucket that has gone changes nothing (the ledger row of that
request, recorded before it settles, seeds it again); a settlement Redis refused is retried
(``unsettled``), and dropped when this process rebuilt its bucket from the ledger meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from anygate.accounting.limiter import (
    Claim,
    Decisions,
    Grant,
    Hold,
    Rejection,
    Settling,
    SharedRuns,
    Tokens,
)
from anygate.accounting.periods import SLOTS, oldest_counted_slot
from anygate.accounting.redis_scripts import Call, ScriptRunner
from anygate.accounting.windows import LedgerWindow, Seeder, rolling_width


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1000)


# Reclaim expired reservations of the bucket, then admit all claims or none: {1, counter, granted, left, ...}
# (left: what the counter has left after this reservation), {0, counter, available, counter, available, ...}
# refused (the refusing counter, then those checked before it), {2} when the bucket must be seeded first.
# KEYS: hash, exp, amt. ARGV: token, ttl_ms, window_ms (0: none), seeded (1: must exist), slot_ms (a rolling
# window's slot width; 0: none), now_ms (0: Redis's TIME), then per claim: counter, limit, amount, minimum
# (-1: none), hard (1|0).
RESERVE = """
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then
  return {2}
end
local now = tonumber(ARGV[6])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local slot = tonumber(ARGV[5])
if slot > 0 then
  local current = math.floor(now / slot)
  if tonumber(redis.call('HGET', KEYS[1], 'at') or '-1') ~= current then
    redis.call('HSET', KEYS[1], 'at', current)
    for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
      local n, c = string.match(f, '^s:(%-?%d+):(.+)$')
      if n and tonumber(n) < current - SLOTS then
        redis.call('HINCRBYFLOAT', KEYS[1], 'u:' .. c, -tonumber(redis.call('HGET', KEYS[1], f)))
        redis.call('HDEL', KEYS[1], f)
      end
    end
  end
end
for _, tok in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  local held = redis.call('HGET', KEYS[3], tok)
  if held then
    for c, a in string.gmatch(held, '([^=;]+)=([^;]+)') do
      redis.call('HINCRBYFLOAT', KEYS[1], 'r:' .. c, -tonumber(a))
    end
    redis.call('HDEL', KEYS[3], tok)
  end
  redis.call('ZREM', KEYS[2], tok)
end
local granted = {}
local parts = {}
local checked = {}
local i = 7
while i <= #ARGV do
  local c, limit, amount = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local minimum, hard = tonumber(ARGV[i + 3]), ARGV[i + 4] == '1'
  local used = tonumber(redis.call('HGET', KEYS[1], 'u:' .. c) or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[1], 'r:' .. c) or '0')
  local available = limit - used - reserved
  local g = nil
  if (not hard) or amount <= available then
    g = amount
  elseif minimum >= 0 and minimum <= available then
    g = available
  end
  if g == nil then
    return {0, c, tostring(available), unpack(checked)}
  end
  checked[#checked + 1] = c
  checked[#checked + 1] = tostring(available)
  granted[#granted + 1] = c
  granted[#granted + 1] = tostring(g)
  granted[#granted + 1] = tostring(available - g)
  parts[#parts + 1] = c .. '=' .. tostring(g)
  i = i + 5
end
for j = 1, #granted, 3 do
  redis.call('HINCRBYFLOAT', KEYS[1], 'r:' .. granted[j], granted[j + 1])
end
redis.call('HSET', KEYS[3], ARGV[1], table.concat(parts, ';'))
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
local window = tonumber(ARGV[3])
if window > 0 then
  for k = 1, 3 do
    if slot > 0 or redis.call('PTTL', KEYS[k]) < 0 then redis.call('PEXPIRE', KEYS[k], window) end
  end
end
return {1, unpack(granted)}
"""

# A bucket absent (never made, or lost with a Redis restart) starts from the ledger's count, unless another
# replica seeded it first. KEYS: hash. ARGV: window_ms (0: none), then field, value, ... (``u:<counter>``, and
# a rolling window's ``s:<slot>:<counter>``).
SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'seeded', '1')
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if tonumber(ARGV[1]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
"""

# Drop the reservation (if not reclaimed already) and add what was used (a rolling window's: in the slot in
# progress too); nothing on a bucket that has gone. ARGV: token, slot_ms (0: none), now_ms (0: Redis's
# TIME), counter, amount, ...
SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local held = redis.call('HGET', KEYS[3], ARGV[1])
if held then
  for c, a in string.gmatch(held, '([^=;]+)=([^;]+)') do
    redis.call('HINCRBYFLOAT', KEYS[1], 'r:' .. c, -tonumber(a))
  end
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
local slot = tonumber(ARGV[2])
local current = nil
if slot > 0 then
  local now = tonumber(ARGV[3])
  if now == 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  current = math.floor(now / slot)
end
for i = 4, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) ~= 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], 'u:' .. ARGV[i], ARGV[i + 1])
    if current then
      redis.call('HINCRBYFLOAT', KEYS[1], 's:' .. current .. ':' .. ARGV[i], ARGV[i + 1])
    end
  end
end
return 1
"""


class RedisLimiter:
    """Buckets shared by every replica that talks to the same Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "anygate:",
        seeder: Seeder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._redis = client
        self._clock = clock  # None: Redis's own time
        self._prefix = prefix
        self._seeder = seeder
        self._seeding = SharedRuns()
        self._tokens = Tokens()
        self._reserve = client.register_script(RESERVE.replace("SLOTS", str(SLOTS)))
        self._seed = client.register_script(SEED)
        self._settle = client.register_script(SETTLE)
        self._scripts = ScriptRunner(client)  # a turn's scripts, of every request, in one round trip
        # Called with a bucket's name when this process has rebuilt it from the ledger.
        self.seeded_listeners: list[Callable[[str], None]] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "anygate:",
        seeder: Seeder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> RedisLimiter:
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=64, timeout=10, decode_responses=True)
        return cls(redis.Redis(connection_pool=pool), prefix, seeder, clock)

    def keys(self, bucket: str) -> list[str]:
        base = f"{self._prefix}{{budget:{bucket}}}"
        return [base, base + ":exp", base + ":amt"]

    async def reserve(
        self,
        bucket: str,
        claims: Sequence[Claim],
        ttl: float,
        window: float | None = None,
        seed_from: LedgerWindow | None = None,
        slot: float | None = None,
    ) -> Grant | Rejection:
        return (await self.reserve_all([Hold(bucket, claims, window, seed_from, slot)], ttl))[0]

    async def reserve_all(self, holds: Sequence[Hold], ttl: float) -> Decisions:
        """Every bucket of a request in one round trip: a pipeline of one script a bucket (the buckets of a
        request may live on different nodes of a cluster, where one script could not see them all). As
        ``reserve_in_turn`` answers: the decisions up to the first rejection, and when there is one,
        nothing of the request held (what the other buckets granted is given back at once)."""
        calls = [self._reserve_call(hold, ttl) for hold in holds]
        results = await self._evaluate(
            self._reserve, [(self.keys(hold.bucket), args) for hold, (_, args) in zip(holds, calls, strict=True)]
        )
        for n, (hold, (_, args)) in enumerate(zip(holds, calls, strict=True)):
            first_of_bucket = not isinstance(results[n], Exception) and int(results[n][0]) == 2
            if first_of_bucket and hold.seed_from is not None:  # the bucket's first request: from the ledger
                await self.seed(hold.bucket, hold.seed_from, args[2])
                args[3] = "0"  # seeded now (by this replica or another): reserve whatever happens next
                results[n] = (await self._evaluate(self._reserve, [(self.keys(hold.bucket), args)]))[0]
        failure = next((result for result in results if isinstance(result, Exception)), None)
        decisions = [
            self._decision(hold, token, result)
            for hold, (token, _), result in zip(holds, calls, results, strict=True)
            if not isinstance(result, Exception)
        ]
        refused = next((n for n, decision in enumerate(decisions) if isinstance(decision, Rejection)), None)
        if refused is None and failure is None:
            return decisions
        granted: list[Settling] = [(decision, {}) for decision in decisions if isinstance(decision, Grant)]
        if granted:  # given back, as a refusal or a failure leaves nothing of the request held
            failed = await self._settle_each(granted)
            if failed and failure is None:
                failure = failed[0][1]
        if failure is not None:
            raise failure
        assert refused is not None
        return decisions[: refused + 1]

    def _reserve_call(self, hold: Hold, ttl: float) -> tuple[str, list[Any]]:
        """A reservation's token and the script's arguments."""
        token = self._tokens.next()
        window_ms = int(hold.window * 1000) if hold.window else 0
        seeded = "1" if hold.seed_from is not None and self._seeder is not None else "0"
        args: list[Any] = [token, int(ttl * 1000), window_ms, seeded, _ms(hold.slot), self._now_ms()]
        for claim in hold.claims:
            minimum = -1 if claim.minimum is None else claim.minimum
            args += [claim.counter, repr(float(claim.limit)), repr(float(claim.amount)), repr(float(minimum))]
            args.append("1" if claim.hard else "0")
        return token, args

    @staticmethod
    def _decision(hold: Hold, token: str, result: list[Any]) -> Grant | Rejection:
        if int(result[0]) == 0:
            before = result[3:]
            left = {str(before[i]): float(before[i + 1]) for i in range(0, len(before), 2)}
            return Rejection(hold.bucket, str(result[1]), float(result[2]), left)
        triples = result[1:]
        granted = {str(triples[i]): float(triples[i + 1]) for i in range(0, len(triples), 3)}
        left = {str(triples[i]): float(triples[i + 2]) for i in range(0, len(triples), 3)}
        return Grant(hold.bucket, token, granted, left, hold.slot)

    async def _evaluate(self, script: AsyncScript, calls: Sequence[Call]) -> list[Any]:
        return await self._scripts.run(script, calls)

    def _now_ms(self) -> int:
        return 0 if self._clock is None else int(self._clock() * 1000)

    async def seed(self, bucket: str, seed_from: LedgerWindow, window_ms: int) -> None:
        """Start an absent bucket from the ledger's count of its window (a no-op if it appeared meanwhile).

        Requests arriving together on an absent bucket share one ledger read in this process.
        """
        await self._seeding.run(bucket, lambda: self._seed_bucket(bucket, seed_from, window_ms))

    async def _seed_bucket(self, bucket: str, seed_from: LedgerWindow, window_ms: int) -> None:
        assert self._seeder is not None
        count = await self._seeder(seed_from)
        args: list[Any] = [window_ms]
        for counter, amount in count.used.items():
            args += [f"u:{counter}", repr(float(amount))]
        for number, counted in count.slots.items():
            for counter, amount in counted.items():
                args += [f"s:{number}:{counter}", repr(float(amount))]
        if int(await self._seed(keys=self.keys(bucket)[:1], args=args)) == 1:
            for listener in self.seeded_listeners:
                listener(bucket)

    async def settle(self, grant: Grant, actual: Mapping[str, float]) -> None:
        failed = await self._settle_each([(grant, actual)])
        if failed:
            raise failed[0][1]

    async def settle_all(self, settlements: Sequence[Settling]) -> list[Settling]:
        """Every grant of a request in one round trip; those Redis did not settle are returned (retried
        later, ``unsettled``)."""
        return [settling for settling, _ in await self._settle_each(settlements)]

    async def release(self, grant: Grant) -> None:
        await self.settle(grant, {})

    async def _settle_each(self, settlements: Sequence[Settling]) -> list[tuple[Settling, Exception]]:
        """Settle each grant; the settlements that failed, each with its error."""
        calls = []
        for grant, actual in settlements:
            args: list[Any] = [grant.token, _ms(grant.slot), self._now_ms()]
            for counter, amount in actual.items():
                args += [counter, repr(float(amount))]
            calls.append((self.keys(grant.bucket), args))
        try:
            answers = await self._evaluate(self._settle, calls)
        except (RedisError, OSError) as exc:  # none was settled, or none is known to be
            return [(settling, exc) for settling in settlements]
        return [
            (settling, answer)
            for settling, answer in zip(settlements, answers, strict=True)
            if isinstance(answer, Exception)
        ]

    async def usage(self, bucket: str) -> dict[str, float]:
        fields: dict[str, str] = await self._redis.hgetall(self.keys(bucket)[0])  # type: ignore[assignment]
        width = rolling_width(bucket)
        if width is None:
            return {str(name)[2:]: float(value) for name, value in fields.items() if str(name).startswith("u:")}
        used: dict[str, float] = {}  # its counted slots, whether or not a reserve has dropped the others yet
        for _, counter, amount in self._counted_slots(fields, width):
            used[counter] = used.get(counter, 0.0) + amount
        return used

    async def oldest_slot(self, bucket: str) -> int | None:
        width = rolling_width(bucket)
        if width is None:
            return None
        fields: dict[str, str] = await self._redis.hgetall(self.keys(bucket)[0])  # type: ignore[assignment]
        return min((n for n, _, amount in self._counted_slots(fields, width) if amount), default=None)

    def _counted_slots(self, fields: Mapping[str, str], width: float) -> list[tuple[int, str, float]]:
        oldest = oldest_counted_slot(width, time.time() if self._clock is None else self._clock())
        counted = []
        for name, value in fields.items():
            kind, _, rest = str(name).partition(":")
            number, _, counter = rest.partition(":")
            if kind == "s" and int(number) >= oldest:
                counted.append((int(number), counter, float(value)))
        return counted

    async def ping(self) -> None:
        """Readiness: raise OSError when Redis does not answer."""
        try:
            await self._redis.ping()
        except redis.RedisError as exc:
            raise OSError(f"redis: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._scripts.wait_sent()
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()
