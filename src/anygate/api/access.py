"""What each request leaves behind when it ends: one access line and the request metrics."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from anygate.api.http import Scope
from anygate.exchange import Exchange
from anygate.telemetry import Metrics, direct_handler

if TYPE_CHECKING:
    from anygate.api.state import AppState

log = logging.getLogger("anygate.access")

UNLISTED_MODEL = "unlisted"


def observe(state: AppState, scope: Scope, elapsed: float, exchange: Exchange | None, status: int) -> None:
    """Count the request in the metrics and write its access line (model requests say where they went)."""
    fields: dict[str, Any] = {}
    if exchange is not None:
        status = exchange.status or status
        measure(state, exchange, status, elapsed)
        fields = {
            "provider": exchange.provider_id or "",
            "model": exchange.model or "",
            "key": exchange.principal.key_id,
            "stream": exchange.stream,
        }
        if exchange.error is not None:
            fields["error"] = exchange.error
    else:
        state.metrics.requests.inc(("management", "", "", str(status)))
    if log.isEnabledFor(logging.INFO):
        line = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            **fields,
        }
        direct = direct_handler(log, logging.INFO)
        if direct is not None:  # the line made by the formatter and kept, without a LogRecord
            handler, formatter = direct
            handler.write_line(formatter.line(time.time(), "INFO", log.name, "request", line), logging.INFO)
        else:  # without logging's search of the stack for the caller (the formatter shows none)
            log.handle(log.makeRecord(log.name, logging.INFO, "", 0, "request", (), None, extra={"fields": line}))


def measure(state: AppState, exchange: Exchange, status: int, elapsed: float) -> None:
    metrics = state.metrics
    provider, model = exchange.provider_id or "", model_label(state, exchange)
    metrics.count_request(exchange.route, provider, model, str(status), elapsed)
    if exchange.stream and exchange.first_byte_at is not None:
        metrics.time_to_first_token.observe((provider, model), exchange.first_byte_at - exchange.started)
    count_tokens(metrics, exchange, provider, model)
    if exchange.cost_usd and not exchange.byok:  # what the gateway's own provider keys paid
        metrics.count_spend(provider, model, exchange.principal.label or exchange.principal.key_id, exchange.cost_usd)


def model_label(state: AppState, exchange: Exchange) -> str:
    """The model as a metric label: a model its provider lists, else ``unlisted``. A client may send any
    name (through ``/proxy``, or to a provider whose list is unknown); label values must stay few."""
    if not exchange.model or not exchange.provider_id:
        return ""
    if state.registry.index.lists_model(exchange.provider_id, exchange.model):
        return exchange.model
    return UNLISTED_MODEL


def count_tokens(metrics: Metrics, exchange: Exchange, provider: str, model: str) -> None:
    usage = exchange.usage
    if not usage:
        return
    for field, direction in (("prompt_tokens", "input"), ("completion_tokens", "output")):
        value = usage.get(field)
        if isinstance(value, int) and value > 0:
            metrics.count_tokens(provider, model, direction, value)
