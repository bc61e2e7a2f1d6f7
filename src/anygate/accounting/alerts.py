"""Budget alerts: one JSON POST per threshold crossed per budget window, off the request path.

Settling a request only notes its scopes (``watch``: a dict assignment, nothing when no alert is
configured). Owned background work (``run``) looks at each noted scope once a second: for each of its
budgets with alerts (the holder's own ``alerts``, else the settings' default), what the window used in
each unit it limits, against each threshold (a fraction of the limit). A threshold reached is a
*crossing*, named ``<bucket>:<unit>:<threshold>`` (the bucket names the holder and the window). The
crossing is claimed by inserting its row into ``alert_crossings`` (its primary key): the one worker or
replica whose insert succeeds sends the alert, so it goes out once per crossing across replicas, and
never again in that window. The POST is retried with backoff; a failure is logged (never its headers)
and nothing waits for it.

A rolling window (``5h``) never starts again, so its crossing is re-armed instead: a pass that finds its
usage back below the threshold (what made it cross has left the window) deletes the crossing's row, and
the next time usage reaches the threshold is a new crossing, sent once again. A window hovering about a
threshold is so alerted once per rise past it, never twice while it stays above. Its ``resets_at`` is when
its oldest counted usage leaves it, when its headroom next grows.

    {"scope": "team", "id": "comp318", "name": "COMP318", "threshold": 0.8, "used": 41.2, "limit": 50.0,
     "unit": "usd", "window": "weekly", "resets_at": "2026-12-07T00:00:00Z"}
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from anygate.accounting.budgets import Scope
from anygate.accounting.enforcer import budget_bucket
from anygate.accounting.limiter import Limiter
from anygate.accounting.periods import is_rolling, iso_utc, next_reset, rolling_reset, slot_width
from anygate.auth import Budget
from anygate.errors import GatewayError
from anygate.settings import AlertSettings
from anygate.store.tables import alert_crossings
from anygate.transport import OutgoingRequest, Timeouts, Transport

log = logging.getLogger("anygate.alerts")

ATTEMPTS = 4
BACKOFF_BASE = 0.5
UNITS = ("tokens", "usd", "requests")
MAX_WATCHED = 10_000  # scopes noted between two passes; more wait for the next request to note them


@dataclass(frozen=True)
class AlertTarget:
    """Where one holder's alerts go."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    thresholds: tuple[float, ...] = (0.8, 1.0)
    allow_private_network: bool = False

    @classmethod
    def of(cls, value: Any) -> AlertTarget | None:
        """From a stored ``alerts`` object or the settings' default (None: none)."""
        if value is None:
            return None
        if isinstance(value, AlertSettings):
            return cls(value.url, dict(value.headers), tuple(value.thresholds), value.allow_private_network)
        if not isinstance(value, Mapping) or not value.get("url"):
            return None
        return cls(str(value["url"]), dict(value.get("headers") or {}), tuple(value.get("thresholds") or (0.8, 1.0)))


@dataclass(frozen=True)
class Crossing:
    scope: Scope
    budget: Budget
    unit: str
    threshold: float
    used: float
    limit: float
    bucket: str

    @property
    def name(self) -> str:
        return f"{self.bucket}:{self.unit}:{self.threshold:g}"


def crossings(
    scope: Scope, budget: Budget, used: Mapping[str, float], thresholds: Sequence[float], now: datetime
) -> list[Crossing]:
    """Every threshold the budget's window has reached, in each unit it limits."""
    limits = {"tokens": budget.tokens, "usd": budget.usd, "requests": budget.requests}
    bucket = budget_bucket(scope, budget, now)
    found = []
    for unit in UNITS:
        limit = limits[unit]
        if limit is None or limit <= 0:
            continue
        spent = used.get(unit, 0.0)
        for threshold in thresholds:
            if spent >= threshold * limit:
                found.append(Crossing(scope, budget, unit, threshold, spent, float(limit), bucket))
    return found


def rearmed(
    scope: Scope, budget: Budget, used: Mapping[str, float], thresholds: Sequence[float], now: datetime
) -> list[str]:
    """The crossings of a rolling window whose usage is back below their threshold: to be claimed anew."""
    if not is_rolling(budget.period):
        return []
    limits = {"tokens": budget.tokens, "usd": budget.usd, "requests": budget.requests}
    bucket = budget_bucket(scope, budget, now)
    return [
        f"{bucket}:{unit}:{threshold:g}"
        for unit in UNITS
        if (limit := limits[unit]) is not None and limit > 0
        for threshold in thresholds
        if used.get(unit, 0.0) < threshold * limit
    ]


def payload(crossing: Crossing, name: str, now: datetime, resets_at: datetime | None = None) -> dict[str, Any]:
    """The alert's body; ``resets_at``: when the window's headroom next grows, when known better than its
    period says (a rolling window's oldest usage)."""
    return {
        "scope": crossing.scope.kind,
        "id": crossing.scope.id,
        "name": name,
        "threshold": crossing.threshold,
        "used": round(crossing.used, 6),
        "limit": crossing.limit,
        "unit": crossing.unit,
        "window": crossing.budget.period,
        "resets_at": iso_utc(resets_at or next_reset(crossing.budget.period, now)),
    }


class Alerts:
    """Watches budget windows and sends each crossing once (see the module's docstring)."""

    def __init__(
        self,
        transport: Transport,
        engine: AsyncEngine,
        limiter: Limiter,
        default: AlertSettings | None = None,
        interval: float = 1.0,
    ) -> None:
        self._transport = transport
        self._engine = engine
        self._limiter = limiter
        self._default = AlertTarget.of(default)
        self._interval = interval
        self._targets: dict[str, tuple[str, AlertTarget]] = {}  # "team:comp318" -> (its name, where)
        self._names: dict[str, str] = {}
        self._watched: dict[str, Scope] = {}
        self._claimed: set[str] = set()  # crossings this process has seen claimed (by it or another)
        self._sending: set[asyncio.Task[bool]] = set()

    def replace_targets(self, targets: Mapping[str, tuple[str, Any]], names: Mapping[str, str]) -> None:
        """The holders' own alerts (``"kind:id"`` -> (name, stored alerts)) and every holder's name."""
        made = {}
        for holder, (name, alerts) in targets.items():
            target = AlertTarget.of(alerts)
            if target is not None:
                made[holder] = (name, target)
        self._targets = made
        self._names = dict(names)

    @property
    def active(self) -> bool:
        return self._default is not None or bool(self._targets)

    def watch(self, scopes: Sequence[Scope]) -> None:
        """Note a settled request's scopes (cheap; the pass reads their windows)."""
        if not self.active or len(self._watched) >= MAX_WATCHED:
            return
        for scope in scopes:
            if scope.all_budgets:
                self._watched[scope.name] = scope

    def target(self, scope: Scope) -> AlertTarget | None:
        own = self._targets.get(scope.name)
        return own[1] if own is not None else self._default

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()

    async def check(self, now: datetime | None = None) -> int:
        """One pass over the noted scopes; return how many alerts were claimed to be sent."""
        now = now or datetime.now(UTC)
        watched, self._watched = self._watched, {}
        sent = 0
        below: list[str] = []
        for scope in watched.values():
            target = self.target(scope)
            if target is None:
                continue
            for budget in scope.all_budgets:
                bucket = budget_bucket(scope, budget, now)
                try:
                    used = await self._limiter.usage(bucket)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning(
                        "alert check failed", extra={"fields": {"scope": scope.name, "error": type(exc).__name__}}
                    )
                    continue
                below += rearmed(scope, budget, used, target.thresholds, now)
                for crossing in crossings(scope, budget, used, target.thresholds, now):
                    if await self._claim(crossing):
                        self._send_soon(crossing, target, now, await self._rolling_reset(budget, bucket))
                        sent += 1
        await self._rearm(below)
        return sent

    async def _rolling_reset(self, budget: Budget, bucket: str) -> datetime | None:
        width = slot_width(budget.period)
        if width is None:
            return None
        try:
            oldest = await self._limiter.oldest_slot(bucket)
        except (SQLAlchemyError, OSError):
            return None
        return None if oldest is None else datetime.fromtimestamp(rolling_reset(width, oldest), UTC)

    async def _rearm(self, names: list[str]) -> None:
        """Forget the crossings of rolling windows back below their thresholds (one statement a pass)."""
        if not names:
            return
        try:
            async with self._engine.begin() as connection:
                await connection.execute(alert_crossings.delete().where(alert_crossings.c.crossing.in_(names)))
        except SQLAlchemyError as exc:
            log.warning("alert re-arm failed", extra={"fields": {"error": type(exc).__name__}})
            return
        self._claimed.difference_update(names)

    async def _claim(self, crossing: Crossing) -> bool:
        """Whether this process won the crossing (its row inserted now)."""
        if crossing.name in self._claimed:
            return False
        try:
            async with self._engine.begin() as connection:
                await connection.execute(
                    alert_crossings.insert().values(crossing=crossing.name, claimed_at=datetime.now(UTC))
                )
        except IntegrityError:
            self._claimed.add(crossing.name)
            return False
        except SQLAlchemyError as exc:
            log.warning(
                "alert claim failed", extra={"fields": {"crossing": crossing.name, "error": type(exc).__name__}}
            )
            return False
        if len(self._claimed) > 100_000:
            self._claimed.clear()
        self._claimed.add(crossing.name)
        return True

    def _send_soon(
        self, crossing: Crossing, target: AlertTarget, now: datetime, resets_at: datetime | None = None
    ) -> None:
        name = self._names.get(crossing.scope.name) or crossing.scope.id
        body = orjson.dumps(payload(crossing, name, now, resets_at))
        task = asyncio.ensure_future(self.send(target, body, crossing.name))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def send(self, target: AlertTarget, body: bytes, what: str) -> bool:
        headers = {**target.headers, "content-type": "application/json"}
        request = OutgoingRequest(
            "POST",
            target.url,
            headers,
            body,
            Timeouts(connect=5.0, first_byte=10.0, idle=10.0, total=15.0),
            allow_private_network=target.allow_private_network,
            origin="alerts",
        )
        for attempt in range(ATTEMPTS):
            try:
                response = await self._transport.send(request)
                await response.read()
                if response.status < 400:
                    return True
                problem = f"HTTP {response.status}"
            except (GatewayError, OSError) as exc:
                problem = type(exc).__name__
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(random.uniform(0, BACKOFF_BASE * 2**attempt))
        log.warning("budget alert not delivered", extra={"fields": {"crossing": what, "problem": problem}})
        return False

    async def close(self) -> None:
        if self._sending:
            await asyncio.wait(self._sending, timeout=5.0)
