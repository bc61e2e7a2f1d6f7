"""The Redis limiter: one Lua script reserves all of a request's buckets (all or none), one a bucket settles
them, sent together (one round trip to reserve, one to settle, shared by the requests of a turn of the loop).
Every key is on the one Redis the client talks to (a request's buckets are on different hash slots: no
Redis Cluster). A bucket's keys:

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
request, recorded before it settles, seeds it again); a settlement Redis refused, or whose answer was lost,
is retried (``unsettled``) only while its reservation is held: one that ran (its answer lost on the way
back), or whose bucket was rebuilt from the ledger meanwhile, is not counted twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

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
from anygate.accounting.redis_scripts import ScriptRunner
from anygate.accounting.windows import LedgerWindow, Seeder, rolling_width

log = logging.getLogger("anygate.accounting")


SEED_ROUNDS = 3  # reservations tried while buckets are found absent, each seeding those absent


def is_lost(answer: object) -> bool:
    """Whether a script's answer is a failure that lost it (the script went out, and may have run), not the
    script's own error."""
    return isinstance(answer, Exception) and not isinstance(answer, ResponseError)


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else int(seconds * 1000)


# Admit a request's claims on all of its buckets, or none, in one script: nothing of a refused request is
# ever held, on any bucket. Each bucket's expired reservations are reclaimed (and a rolling window's old slots
# dropped) before its claims are decided.
# KEYS: hash, exp, amt of each bucket, in order. ARGV: token (each hold's reservation is ``<token>:<its number>``,
# from 1), ttl_ms, now_ms (0: Redis's TIME), then a bucket's words in one argument, apart by spaces (fewer
# arguments: the gateway packs each one in Python): window_ms (0: none), seeded (1: must exist), slot_ms (a
# rolling window's slot width; 0: none), then per claim: counter, limit, amount, minimum (-1: none), hard (1|0).
# Answers {2, bucket, ...}: those buckets must be seeded first (nothing done); else {1 admitted | 0 refused,
# the refusing bucket (0: none), its refusing counter, what that counter had, the number of counters checked
# before it in that bucket, then (counter, available) of each, then for each bucket admitted (every bucket;
# refused: those before the refusing one) the number of its claims and (counter, granted, left) of each}.
RESERVE = """
local token, ttl, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local buckets = {}
for i = 4, #ARGV do
  local words = {}
  for word in string.gmatch(ARGV[i], '%S+') do words[#words + 1] = word end
  buckets[#buckets + 1] = {tonumber(words[1]), words[2], tonumber(words[3]), words, (#words - 3) / 5}
end
local absent = {2}
for b, bucket in ipairs(buckets) do
  if bucket[2] == '1' and redis.call('EXISTS', KEYS[3 * b - 2]) == 0 then
    absent[#absent + 1] = b
  end
end
if #absent > 1 then
  return absent
end
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local decided = {}
local pending = {}  -- per hash, what this request's holds decided before on it (a bucket held twice)
for b, bucket in ipairs(buckets) do
  local hash, exp, amt = KEYS[3 * b - 2], KEYS[3 * b - 1], KEYS[3 * b]
  local earlier = pending[hash] or {}
  local slot = bucket[3]
  if slot > 0 then
    local current = math.floor(now / slot)
    if tonumber(redis.call('HGET', hash, 'at') or '-1') ~= current then
      redis.call('HSET', hash, 'at', current)
      for _, f in ipairs(redis.call('HKEYS', hash)) do
        local n, c = string.match(f, '^s:(%-?%d+):(.+)$')
        if n and tonumber(n) < current - SLOTS then
          redis.call('HINCRBYFLOAT', hash, 'u:' .. c, -tonumber(redis.call('HGET', hash, f)))
          redis.call('HDEL', hash, f)
        end
      end
    end
  end
  for _, tok in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now)) do
    local held = redis.call('HGET', amt, tok)
    if held then
      for c, a in string.gmatch(held, '([^=;]+)=([^;]+)') do
        redis.call('HINCRBYFLOAT', hash, 'r:' .. c, -tonumber(a))
      end
      redis.call('HDEL', amt, tok)
    end
    redis.call('ZREM', exp, tok)
  end
  local granted = {}
  local checked = {}
  local words = bucket[4]
  for j = 0, bucket[5] - 1 do
    local p = 4 + 5 * j
    local c, limit, amount = words[p], tonumber(words[p + 1]), tonumber(words[p + 2])
    local minimum, hard = tonumber(words[p + 3]), words[p + 4] == '1'
    local used = tonumber(redis.call('HGET', hash, 'u:' .. c) or '0')
    local reserved = tonumber(redis.call('HGET', hash, 'r:' .. c) or '0')
    local available = limit - used - reserved - (earlier[c] or 0)
    local g = nil
    if (not hard) or amount <= available then
      g = amount
    elseif minimum >= 0 and minimum <= available then
      g = available
    end
    if g == nil then
      local refused = {0, b, c, tostring(available), #checked / 2}
      for _, v in ipairs(checked) do refused[#refused + 1] = v end
      for k = 1, b - 1 do
        refused[#refused + 1] = #decided[k] / 3
        for _, v in ipairs(decided[k]) do refused[#refused + 1] = v end
      end
      return refused
    end
    checked[#checked + 1] = c
    checked[#checked + 1] = tostring(available)
    granted[#granted + 1] = c
    granted[#granted + 1] = tostring(g)
    granted[#granted + 1] = tostring(available - g)
  end
  decided[b] = granted
  for j = 1, #granted, 3 do
    earlier[granted[j]] = (earlier[granted[j]] or 0) + tonumber(granted[j + 1])
  end
  pending[hash] = earlier
end
local admitted = {1, 0, '', '0', 0}
for b, bucket in ipairs(buckets) do
  local hash, exp, amt = KEYS[3 * b - 2], KEYS[3 * b - 1], KEYS[3 * b]
  local granted = decided[b]
  local parts = {}
  for j = 1, #granted, 3 do
    redis.call('HINCRBYFLOAT', hash, 'r:' .. granted[j], granted[j + 1])
    parts[#parts + 1] = granted[j] .. '=' .. granted[j + 1]
  end
  local held = token .. ':' .. b  -- a hold's own: a bucket held twice by a request is settled hold by hold
  redis.call('HSET', amt, held, table.concat(parts, ';'))
  redis.call('ZADD', exp, now + ttl, held)
  local window = bucket[1]
  if window > 0 then
    for _, key in ipairs({hash, exp, amt}) do
      if bucket[3] > 0 or redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
    end
  end
  admitted[#admitted + 1] = #granted / 3
  for _, v in ipairs(granted) do admitted[#admitted + 1] = v end
end
return admitted
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
# progress too); nothing on a bucket that has gone, nor, when if_held, on one that holds the reservation no
# more (answers 2: settled already). ARGV: token, slot_ms (0: none), now_ms (0: Redis's TIME), if_held (1|0),
# then what was used in one argument: counter amount counter amount ... (apart by spaces).
SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local held = redis.call('HGET', KEYS[3], ARGV[1])
if not held and ARGV[4] == '1' then
  return 2
end
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
for c, a in string.gmatch(ARGV[5], '(%S+) (%S+)') do
  if tonumber(a) ~= 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], 'u:' .. c, a)
    if current then
      redis.call('HINCRBYFLOAT', KEYS[1], 's:' .. current .. ':' .. c, a)
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
        # Called with the grants a give-back (a request gone, an answer lost) could not release now.
        self.unreleased_listeners: list[Callable[[list[Grant]], None]] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "anygate:",
        seeder: Seeder | None = None,
        clock: Callable[[], float] | None = None,
    ) -> RedisLimiter:
        # The scripts go through the limiter's ScriptRunner, never retried; what the pool serves is read
        # only (quota answers, readiness) and asked once more on a connection a restarted Redis had closed.
        retry = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=16, timeout=10, decode_responses=True, retry=retry
        )
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
        """Every bucket of a request in one script, all or none: nothing of a refused request is held on any
        bucket, even for a moment (a key flooding past its own limits takes nothing from its team's). One
        round trip, shared with the other requests of the turn (``ScriptRunner``); a bucket this Redis does
        not have yet is seeded from the ledger first."""
        if not holds:
            return []
        token = self._tokens.next()
        keys = [key for hold in holds for key in self.keys(hold.bucket)]
        args: list[Any] = [token, int(ttl * 1000), self._now_ms()]
        args += [self._bucket_words(hold, self._seeder is not None and hold.seed_from is not None) for hold in holds]
        for _ in range(SEED_ROUNDS):
            answer = await self._reserve_once(keys, args, holds, token)
            if int(answer[0]) != 2:
                return self._decisions(holds, token, answer)
            # Buckets to seed from the ledger first (nothing was reserved); asked again, another may have gone
            # meanwhile (a restarted Redis that keeps nothing).
            for number in answer[1:]:
                hold = holds[int(number) - 1]
                if hold.seed_from is not None:
                    await self.seed(hold.bucket, hold.seed_from, _ms(hold.window))
                args[2 + int(number)] = self._bucket_words(hold, must_exist=False)  # seeded now, here or elsewhere
        raise RedisError(f"budget buckets kept vanishing from Redis while they were seeded ({SEED_ROUNDS} rounds)")

    @staticmethod
    def _bucket_words(hold: Hold, must_exist: bool) -> str:
        """A bucket's part of RESERVE's arguments, one string (counters are names without spaces)."""
        claims = " ".join(
            f"{claim.counter} {float(claim.limit)!r} {float(claim.amount)!r} "
            f"{-1.0 if claim.minimum is None else float(claim.minimum)!r} {1 if claim.hard else 0}"
            for claim in hold.claims
        )
        return f"{_ms(hold.window)} {1 if must_exist else 0} {_ms(hold.slot)} {claims}"

    async def _reserve_once(self, keys: list[str], args: list[Any], holds: Sequence[Hold], token: str) -> list[Any]:
        def orphaned(answers: list[Any]) -> None:  # its caller is gone: what it was granted is given back
            answer = answers[0]
            if isinstance(answer, list) and int(answer[0]) == 1:
                self._give_back([d for d in self._decisions(holds, token, answer) if isinstance(d, Grant)])
            elif is_lost(answer):
                self._give_back(self._possible_grants(holds, token))

        answer = (await self._scripts.run(self._reserve, [(keys, args)], orphaned))[0]
        if isinstance(answer, Exception):
            if is_lost(answer):  # it went out and may have run: what it may hold is given back
                self._give_back(self._possible_grants(holds, token))
            raise answer
        return list(answer)

    @staticmethod
    def _possible_grants(holds: Sequence[Hold], token: str) -> list[Grant]:
        """What a reservation whose answer was lost may hold: a grant of each hold (giving back one that was
        never made changes nothing)."""
        return [Grant(hold.bucket, f"{token}:{number}", {}, {}, hold.slot) for number, hold in enumerate(holds, 1)]

    def _give_back(self, grants: list[Grant]) -> None:
        """Release ``grants`` in the background; those Redis cannot release now go to ``unreleased_listeners``
        (the enforcer retries them with the settlements that wait), else they are held until they expire."""
        self._scripts.start(self._release_now(grants))

    async def _release_now(self, grants: list[Grant]) -> None:
        failed = [grant for (grant, _), _ in await self._settle_each([(grant, {}) for grant in grants])]
        if not failed:
            return
        for listener in self.unreleased_listeners:
            listener(failed)
        if not self.unreleased_listeners:
            log.warning(
                "reservations could not be given back: held until they expire",
                extra={"fields": {"buckets": sorted({grant.bucket for grant in failed})}},
            )

    @staticmethod
    def _decisions(holds: Sequence[Hold], token: str, answer: list[Any]) -> Decisions:
        """The script's answer as a Grant for each bucket (refused: for those before the refusing one, with
        what they would have had left; nothing is held) and the Rejection, last."""
        admitted, refusing, counter, had = int(answer[0]) == 1, int(answer[1]), str(answer[2]), float(answer[3])
        checked = answer[5 : 5 + 2 * int(answer[4])]
        at = 5 + len(checked)
        decisions: Decisions = []
        for number, hold in enumerate(holds if admitted else holds[: refusing - 1], 1):
            triples = answer[at + 1 : at + 1 + 3 * int(answer[at])]
            at += 1 + len(triples)
            granted = {str(triples[i]): float(triples[i + 1]) for i in range(0, len(triples), 3)}
            left = {str(triples[i]): float(triples[i + 2]) for i in range(0, len(triples), 3)}
            decisions.append(Grant(hold.bucket, f"{token}:{number}", granted, left, hold.slot))
        if not admitted:
            before = {str(checked[i]): float(checked[i + 1]) for i in range(0, len(checked), 2)}
            decisions.append(Rejection(holds[refusing - 1].bucket, counter, had, before))
        return decisions

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
        answer = (await self._scripts.run(self._seed, [(self.keys(bucket)[:1], args)]))[0]
        if isinstance(answer, Exception):
            raise answer
        if int(answer) == 1:
            for listener in self.seeded_listeners:
                listener(bucket)

    async def settle(self, grant: Grant, actual: Mapping[str, float], if_held: bool = False) -> None:
        failed = await self._settle_each([(grant, actual)], if_held)
        if failed:
            raise failed[0][1]

    async def settle_all(self, settlements: Sequence[Settling]) -> list[Settling]:
        """Every grant of a request in one round trip; those Redis did not settle are returned (retried
        later, ``unsettled``)."""
        return [settling for settling, _ in await self._settle_each(settlements)]

    async def release(self, grant: Grant) -> None:
        await self.settle(grant, {})

    async def _settle_each(
        self, settlements: Sequence[Settling], if_held: bool = False
    ) -> list[tuple[Settling, Exception]]:
        """Settle each grant; the settlements that failed, each with its error."""
        if not settlements:  # a refused request held nothing: no turn of the loop spent on it
            return []
        calls = []
        held_only = "1" if if_held else "0"
        for grant, actual in settlements:
            used = " ".join(f"{counter} {float(amount)!r}" for counter, amount in actual.items())
            calls.append((self.keys(grant.bucket), [grant.token, _ms(grant.slot), self._now_ms(), held_only, used]))
        try:
            answers = await self._scripts.run(self._settle, calls)
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
        await self._scripts.close()
        await self._redis.aclose()
        await self._redis.connection_pool.disconnect()
