"""Metrics (Prometheus, one registry per app) and logs carrying the request id, with secrets masked: JSON
lines for a log collector, or one readable line each on a terminal (``log_format``)."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from anygate.auth import Principal
from anygate.errors import GatewayError, UpstreamStatusError, UpstreamTimeout, UpstreamUnavailable
from anygate.log_batches import BatchedStreamHandler
from anygate.loop_metrics import LoopCounter, LoopGauge, LoopHistogram
from anygate.settings import LogFormat

REQUEST_ID: ContextVar[str | None] = ContextVar("anygate_request_id", default=None)
SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"\bsk-[A-Za-z0-9._-]{4,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)
# Upstream statuses counted under their own ``kind`` label; any other is counted as its class (4xx, 5xx).
COUNTED_STATUSES = frozenset({400, 401, 402, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504})
# Distinct key aliases ``anygate_spend_usd_total`` names; the keys spending after them are counted as ``other``.
KEY_LABEL_LIMIT = 1_000
OTHER_KEYS = "other"
# Budget scopes (keys and users) ``anygate_budget_remaining`` follows; past it, new ones have no series.
BUDGET_SERIES_LIMIT = 10_000
UNCHECKED = -1  # ``anygate_provider_healthy`` of a provider not checked yet
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def mask_secrets(text: str) -> str:
    if not may_hold_secret(text.lower()):
        return text
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text


def may_hold_secret(lowered: str) -> bool:
    """Whether a lowercased text has what every match of ``SECRET_PATTERNS`` has: a text without it is
    left as it is without running the patterns (most log texts; an ``or`` chain is the cheapest test)."""
    return (
        "bearer" in lowered
        or "sk-" in lowered
        or "api" in lowered  # api_key, api-key, apikey; not every "key" (a key id's "key_" prefix)
        or "token" in lowered
        or "secret" in lowered
        or "password" in lowered
    )


class Metrics:
    """The gateway's Prometheus metrics, in a registry owned by one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Counted by every request, in the event loop: without prometheus_client's locks (``loop_metrics``).
        self.requests = LoopCounter(
            "anygate_requests",
            "Requests answered, by route, provider, model and status.",
            ("route", "provider", "model", "status"),
        )
        self.latency = LoopHistogram(
            "anygate_request_duration_seconds",
            "Time from request to the last byte of the response, by route, provider, model and status.",
            ("route", "provider", "model", "status"),
            LATENCY_BUCKETS,
        )
        self.time_to_first_token = LoopHistogram(
            "anygate_time_to_first_token_seconds",
            "Time from request to the first streamed event.",
            ("provider", "model"),
            LATENCY_BUCKETS,
        )
        self.upstream_errors = Counter(
            "anygate_upstream_errors_total",
            "Failed upstream attempts, by provider and kind.",
            ("provider", "kind"),
            registry=self.registry,
        )
        self.tokens = LoopCounter(
            "anygate_tokens",
            "Tokens reported by upstreams (or estimated), by provider, model and direction.",
            ("provider", "model", "direction"),
        )
        self.provider_healthy = Gauge(
            "anygate_provider_healthy",
            "1 when the provider's last health check passed, 0 when it failed, -1 before its first check.",
            ("provider",),
            registry=self.registry,
        )
        self.export_records = Counter(
            "anygate_export_records_total",
            "Per-generation telemetry records, by sink and outcome (sent, dropped: its queue was full, "
            "failed: the sink refused them or could not be reached).",
            ("sink", "outcome"),
            registry=self.registry,
        )
        self.spend = LoopCounter(
            "anygate_spend_usd",
            "USD the gateway's provider keys were charged (at the configured or discovered prices), by provider, "
            "model and key alias.",
            ("provider", "model", "key"),
        )
        # Set by every settled request of a budgeted caller (two series or more): a loop gauge, too.
        self.budget_remaining = LoopGauge(
            "anygate_budget_remaining",
            "What is left of a key's or user's budget in its current window (tokens or USD), as of its last "
            "settled request.",
            ("scope", "id", "alias", "unit"),
            limit=BUDGET_SERIES_LIMIT,
        )
        for collector in (self.requests, self.latency, self.time_to_first_token, self.tokens, self.spend):
            self.registry.register(collector)
        self.registry.register(self.budget_remaining)
        self._tracked_providers: set[str] = set()
        self.quota_remaining = Gauge(
            "anygate_upstream_quota_remaining",
            "Remaining upstream quota as the provider reports it.",
            ("provider", "unit"),
            registry=self.registry,
        )

        self._key_labels: set[str] = set()

    def count_request(self, route: str, provider: str, model: str, status: str, seconds: float) -> None:
        """One answered request: ``anygate_requests_total`` and ``anygate_request_duration_seconds``."""
        series = (route, provider, model, status)
        self.requests.inc(series)
        self.latency.observe(series, seconds)

    def count_tokens(self, provider: str, model: str, direction: str, tokens: int) -> None:
        self.tokens.inc((provider, model, direction), tokens)

    def count_spend(self, provider: str, model: str, key: str, usd: float) -> None:
        """Add a request's cost to ``anygate_spend_usd_total``; ``key`` is the key's alias."""
        self.spend.inc((provider, model, self.key_label(key)), usd)

    def key_label(self, alias: str) -> str:
        """The key as a label: its alias, for the first ``KEY_LABEL_LIMIT`` aliases seen; ``other`` after."""
        if alias in self._key_labels:
            return alias
        if len(self._key_labels) >= KEY_LABEL_LIMIT:
            return OTHER_KEYS
        self._key_labels.add(alias)
        return alias

    def observe_budget_left(self, principal: Principal, scope: str, unit: str, left: float) -> None:
        """Set ``anygate_budget_remaining`` of one budget of ``principal`` (``scope``: ``key:<id>`` or
        ``user:<id>``) to what its last settled request left."""
        kind, _, scope_id = scope.partition(":")
        self.budget_remaining.set((kind, scope_id, scope_alias(principal, kind, scope_id), unit), left)

    def count_upstream_failure(self, provider_id: str, error: GatewayError) -> None:
        """One failed attempt in ``anygate_upstream_errors_total``, when the failure is the upstream's."""
        kind = upstream_error_kind(error)
        if kind is not None:
            self.upstream_errors.labels(provider_id, kind).inc()

    def count_export(self, sink: str, outcome: str, records: int) -> None:
        self.export_records.labels(sink, outcome).inc(records)

    def track_providers(self, provider_ids: Iterable[str]) -> None:
        """Give each provider a health sample from the moment it is registered (``UNCHECKED`` until its first
        check), and drop the sample of a provider that is gone."""
        current = set(provider_ids)
        for gone in self._tracked_providers - current:
            self.provider_healthy.remove(gone)
        for new in current - self._tracked_providers:
            self.provider_healthy.labels(new).set(UNCHECKED)
        self._tracked_providers = current

    def render(self) -> bytes:
        return generate_latest(self.registry)


def scope_alias(principal: Principal, kind: str, scope_id: str) -> str:
    """The alias of the key a budget scope names (the caller's own, or a key it was made from); ``""`` for a
    user (the principal carries no user name)."""
    if kind != "key":
        return ""
    for key in (principal, *principal.ancestors):
        if key.key_id == scope_id:
            return key.label or key.key_id
    return scope_id


class LineFormatter(logging.Formatter):
    """A formatter whose line can also be made from its parts, without a ``LogRecord`` (``direct_handler``)."""

    def format(self, record: logging.LogRecord) -> str:
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line(record.created, record.levelname, record.name, record.getMessage(), fields_of(record), exc)

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exc: str | None = None
    ) -> str:
        raise NotImplementedError


class JsonFormatter(LineFormatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1  # the second ``_second_text`` spells: many lines share it
        self._second_text = ""

    def timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exc: str | None = None
    ) -> str:
        entry: dict[str, Any] = {
            "ts": self.timestamp(created),
            "level": level.lower(),
            "logger": logger,
            "msg": mask_secrets(message),
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            entry["request_id"] = request_id
        entry.update(masked(fields))
        if exc is not None:
            entry["exc"] = mask_secrets(exc)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(LineFormatter):
    """One line a person reads on a terminal: local time, level, the message, then its fields as
    ``name=value`` (quoted when they hold a space), secrets masked as in the JSON lines.

        10:42:07 WARNING  model discovery failed  provider=groq error="HTTP 401"
    """

    def line(
        self, created: float, level: str, logger: str, message: str, fields: dict[str, Any], exc: str | None = None
    ) -> str:
        parts = [time.strftime("%H:%M:%S", time.localtime(created)), f"{level:<8}", mask_secrets(message)]
        shown = [f"{name}={text_value(value)}" for name, value in masked(fields).items()]
        request_id = REQUEST_ID.get()
        if request_id is not None:
            shown.append(f"request_id={request_id}")
        text = " ".join(parts) + ("  " + " ".join(shown) if shown else "")
        if exc is not None:
            text += "\n" + mask_secrets(exc)
        return text


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


def masked(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_secrets(v) if isinstance(v, str) else v for k, v in fields.items()}


def text_value(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    return orjson.dumps(text).decode() if not text or any(c.isspace() or c == '"' for c in text) else text


def formatter_for(log_format: LogFormat, is_terminal: bool) -> logging.Formatter:
    """Readable lines on a terminal and JSON lines otherwise (``auto``), or the format asked for."""
    if log_format == "text" or (log_format == "auto" and is_terminal):
        return TextFormatter()
    return JsonFormatter()


def configure_logging(level: str, log_format: LogFormat = "auto") -> None:
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format, sys.stderr.isatty()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def direct_handler(logger: logging.Logger, level: int) -> tuple[BatchedStreamHandler, LineFormatter] | None:
    """Where a record of ``logger`` at ``level`` goes, when that is all that would become of it: anygate's
    batched handler with one of its formatters, the root's only handler, and no filter or other handler on
    the way. A line for it can then be made and kept without a ``LogRecord`` (the access line: two thirds
    of its cost, docs/benchmarks.md). None otherwise (a test capturing records, an embedder's handler)."""
    node: logging.Logger | None = logger
    while node is not None and node.parent is not None:  # up to the root
        if node.handlers or node.filters or not node.propagate:
            return None
        node = node.parent
    if node is None or node.filters or len(node.handlers) != 1:
        return None
    handler = node.handlers[0]
    if not isinstance(handler, BatchedStreamHandler) or handler.filters or handler.level > level:
        return None
    formatter = handler.formatter
    if not isinstance(formatter, LineFormatter):
        return None
    return handler, formatter


def flush_logs() -> None:
    """Write what the log handlers hold (the access lines of the last requests): at the lifespan's end, so
    that a worker process, however it exits, has written them."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def upstream_error_kind(error: GatewayError) -> str | None:
    """The ``kind`` label of a failure that is the upstream's (None for anything else), from a bounded set."""
    if isinstance(error, UpstreamStatusError):
        status = error.status
        return error.code if status in COUNTED_STATUSES else f"upstream_http_{status // 100}xx"
    if isinstance(error, UpstreamUnavailable | UpstreamTimeout):
        return error.code
    return None
