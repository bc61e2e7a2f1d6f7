"""``Exchange``: one model request through the gateway, as routing, accounting, metrics and the ledger see it.

The edge makes one per request and fills it as the request goes: which model was asked for, which
provider and model answered, the status, the usage the upstream reported, when the first byte reached
the client. It lives below both the API and the accounting so that both read the same record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anygate.auth import Principal
from anygate.errors import GatewayError


@dataclass(slots=True)
class Exchange:
    request_id: str
    principal: Principal
    route: str  # chat/completions, completions, embeddings, responses, messages, proxy
    started: float  # time.perf_counter() when the request arrived
    endpoint: str | None = None  # the upstream endpoint a proxied request names (chat/completions...)
    requested_model: str | None = None
    provider_id: str | None = None
    model: str | None = None
    status: int = 0
    stream: bool = False
    usage: dict[str, Any] | None = None  # the upstream's ``usage`` object, as reported
    first_byte_at: float | None = None  # perf_counter() when the response started: nothing is retried after
    error: str | None = None  # the failure's code, when the request failed
    byok: bool = False  # the last attempt used the caller's own provider key
    attempts: int = 0
    client_gone: bool = False  # the client disconnected
    broken_by_upstream: GatewayError | None = None  # the upstream's failure that ended a started stream
    group: int = 0  # the deployment group being tried: 0 the model's own, 1 its first fallback...
    cost_usd: float | None = None  # what the accounting priced it at when it settled (None: unknown)

    @property
    def has_answered(self) -> bool:
        """Whether the response has started: then an error can only end it, never replace it."""
        return self.first_byte_at is not None

    def __repr__(self) -> str:
        where = f"{self.provider_id}/{self.model}" if self.provider_id else self.requested_model
        return f"Exchange({self.request_id} {self.route} {where} status={self.status} attempts={self.attempts})"
