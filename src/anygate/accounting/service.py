"""Accounting on the request path, through one small interface: reserve, tap, settle.

``Accounting.reserve`` (before a request reaches an upstream) reserves the caller's budgets and rate
limits (429 when refused), writes the output limits a hard budget needs into the body
(``output_limits``: never more than was reserved), and asks the upstream for usage on a stream
(``stream_options.include_usage``) where the provider takes it (``stream_usage``). It returns the request's
``Ticket``: the body to send, ``retry_body`` (the same without what anygate added, for an upstream that
refuses it), ``tap`` (usage from a stream's events, and the events as the client would have had them),
and ``keep_body`` (a body to estimate from when it reports no usage).

``Accounting.settle`` (when the request has ended, whatever happened) takes the usage the upstream
reported (or estimates it, marked estimated), prices it by token class (or takes the cost the upstream
reported), hands one row to the ledger and settles the reservations. Neither touches the database unless
the SQL limiter was chosen. ``Accounting.answer_cost`` prices a whole answer before it is sent (the
``x-anygate-cost`` header); settling then uses that charge.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, Protocol

from anygate.accounting.alerts import Alerts
from anygate.accounting.backend_errors import counters_errors
from anygate.accounting.budgets import BudgetSource, Scope
from anygate.accounting.enforcer import Admission, Ask, Enforcer
from anygate.accounting.estimate import (
    Tokenizer,
    completion_text,
    counting_owner,
    estimate,
    estimate_prompt,
    stream_text,
)
from anygate.accounting.export import Exporter, Generation
from anygate.accounting.ledger import Ledger, UsageRow
from anygate.accounting.output_limits import OUTPUT_LIMIT_FIELDS, OutputRequest, limit_changes, requested_output
from anygate.accounting.pricing import CostSource, Price, PriceBook, usd_text
from anygate.accounting.stream_usage import REFUSING_STATUSES, StreamUsagePolicy, strip_null_usage
from anygate.accounting.usage import (
    USAGE_NAME,
    TokenCount,
    anthropic_event_usage,
    chat_usage_of_anthropic,
    chunk_usage,
    count_of,
    upstream_cost,
    wants_stream_usage,
    with_stream_usage,
)
from anygate.auth import Principal
from anygate.errors import InvalidRequest, PriceUnknown, ServiceUnavailable
from anygate.exchange import Exchange
from anygate.wire.members import add_members, replace_model


class ModelRef(Protocol):
    """Where a request is expected to go (a routing Deployment or a models Target)."""

    @property
    def provider_id(self) -> str: ...

    @property
    def model(self) -> str: ...


log = logging.getLogger("anygate.accounting")

KEPT_STREAM_BYTES = 4 * 1024 * 1024  # events kept to estimate a stream that reports no usage
STREAM_USAGE_ROUTES = frozenset({"chat/completions", "completions"})
PRICED_ROUTES = frozenset({*OUTPUT_LIMIT_FIELDS, "embeddings"})  # what a USD budget pays for
ROUTE_LENGTH = 32  # the ledger's route column
ERROR_LENGTH = 64  # the ledger's error column


class Charge(NamedTuple):
    """What a request is charged: its tokens, their cost (None: unknown) and where that cost came from."""

    tokens: TokenCount
    cost: float | None
    source: CostSource | None


class Ticket:
    """The accounting of one request: what goes upstream, what its answer tells, and what it is charged."""

    __slots__ = (
        "route",
        "body",
        "payload",
        "admission",
        "strip_usage_event",
        "keeps_text",
        "sole_model",
        "_client_body",
        "_client_payload",
        "_changes",
        "_kept_events",
        "_kept_bytes",
        "_unkept_bytes",
        "_unreported_body",
        "_anthropic_usage",
        "charge",
    )

    def __init__(self, route: str, body: bytes, payload: dict[str, Any]) -> None:
        self.route = route  # the upstream endpoint: chat/completions, completions, embeddings, responses
        self.body, self.payload = body, payload  # what goes upstream: the client's, and anygate's changes
        self.admission: Admission | None = None
        self.strip_usage_event = False  # anygate asked for stream usage the client did not ask for
        self.keeps_text = False  # the export records this request's completion: keep what it generates
        # The client's body names ``model`` once, spelt plainly (``refuse_duplicate_members``), and so does
        # what goes upstream: members anygate adds never name it, and the body encoded again (a member
        # replaced) names it as often, since no quote or backslash of it was an escape
        # (``spells_names_plainly``). ``replace_model`` need not search it.
        self.sole_model = False
        self._client_body, self._client_payload = body, payload
        self._changes: dict[str, Any] = {}
        self._kept_events: list[bytes] = []
        self._kept_bytes = 0
        self._unkept_bytes = 0  # events past KEPT_STREAM_BYTES: counted at the kept ones' tokens per byte
        self._unreported_body: bytes | None = None
        self._anthropic_usage: dict[str, Any] = {}
        self.charge: Charge | None = None  # priced before the answer was sent (a whole answer's header)

    def __repr__(self) -> str:
        return f"Ticket({self.route}, changes={sorted(self._changes)}, admitted={self.admission is not None})"

    def change(self, changes: dict[str, Any]) -> None:
        """Add top-level members to what goes upstream (the client's other bytes stay as they were)."""
        if changes:
            self._changes.update(changes)
            self.body = add_members(self._client_body, self._client_payload, self._changes)
            self.payload = {**self._client_payload, **self._changes}

    def retry_body(self, status: int, model: str | None) -> bytes | None:
        """When an upstream answered ``status`` to the ``stream_options`` anygate added: the request without
        them (``model`` rewritten when given), to send once more. None: nothing to take back."""
        if not self.strip_usage_event or status not in REFUSING_STATUSES:
            return None
        changes = {name: value for name, value in self._changes.items() if name != "stream_options"}
        body = add_members(self._client_body, self._client_payload, changes) if changes else self._client_body
        payload = {**self._client_payload, **changes}
        if model is None or model == payload.get("model"):
            return body
        return replace_model(body, payload, model, sole=self.sole_model)

    def tap(self, exchange: Exchange, events: list[bytes]) -> list[bytes]:
        """Take usage from a stream's events; return the events for the client.

        Only events whose ``usage`` is an object are parsed. When anygate asked for usage and the client
        did not, what that added is removed: the usage-only event, and ``"usage":null`` in every chunk
        (``stream_usage.strip_null_usage``), so the client gets the bytes it would have got without it.
        Until usage arrives, events are kept for an estimate.
        """
        strip = self.strip_usage_event
        forwarded = [] if strip else events
        for event in events:
            named = USAGE_NAME in event  # most events never name usage: nothing more to look for in them
            usage, usage_only = chunk_usage(event) if named else (None, False)
            if usage is not None:
                exchange.usage = usage
                if strip and usage_only:
                    continue
            elif exchange.usage is None or self.keeps_text:
                self._keep(event)
            if strip:
                forwarded.append(strip_null_usage(event) if named else event)
        return forwarded

    def tap_anthropic(self, exchange: Exchange, events: list[bytes]) -> list[bytes]:
        """``tap`` for an Anthropic Messages stream passed through as it is: its usage comes in parts
        (``message_start``, then ``message_delta``, which may repeat or grow them, or send null for what it
        does not repeat), merged into one usage in
        the chat form (``usage.chat_usage_of_anthropic``). The events are the client's unchanged."""
        for event in events:
            usage = anthropic_event_usage(event)
            if usage is not None:
                self._anthropic_usage.update((name, value) for name, value in usage.items() if value is not None)
                exchange.usage = chat_usage_of_anthropic(self._anthropic_usage)
            elif exchange.usage is None:
                self._keep(event)
        return events

    def keep_body(self, body: bytes) -> None:
        """A whole answer that reported no usage: what it is charged is estimated from it."""
        self._unreported_body = body

    def _keep(self, event: bytes) -> None:
        if self._kept_bytes < KEPT_STREAM_BYTES:
            self._kept_events.append(event)
            self._kept_bytes += len(event)
        else:
            self._unkept_bytes += len(event)

    def with_unkept(self, tokens: int) -> int:
        """``tokens`` counted in the kept events, with the events past the cap at the same tokens per byte:
        a stream longer than what is kept is still charged whole."""
        if not self._unkept_bytes or not self._kept_bytes:
            return tokens
        return tokens + -(-tokens * self._unkept_bytes // self._kept_bytes)

    def generated_text(self) -> str:
        """What the upstream generated, as far as it was kept (for an estimate)."""
        if self._unreported_body is not None:
            return completion_text(self._unreported_body)
        return stream_text(self._kept_events)

    @property
    def client_payload(self) -> dict[str, Any]:
        return self._client_payload


def estimates_prompt(scopes: Sequence[Scope]) -> bool:
    """Whether reserving for these scopes counts the prompt's tokens (a token or USD budget, a tpm limit)."""
    return any(s.counts_tokens or s.counts_usd for s in scopes)


# Responses members that make the upstream read input it stored: nothing here can see (or reserve) it.
STORED_INPUT_MEMBERS = ("previous_response_id", "conversation", "prompt")


def refuse_stored_input(route: str, payload: dict[str, Any], scopes: Sequence[Scope]) -> None:
    """400 for a Responses request reading stored input under a hard token or USD budget: its reservation
    would be its few visible tokens and its charge the whole stored conversation (concurrent ones all
    admitted at once)."""
    if route != "responses":
        return
    member = next((name for name in STORED_INPUT_MEMBERS if payload.get(name) is not None), None)
    if member is None:
        return
    hard = next((s for s in scopes if s.hard_tokens or s.hard_usd), None)
    if hard is not None:
        raise InvalidRequest(
            f"'{member}' makes the upstream read input it stored, which anygate cannot see or reserve, and "
            f"{hard.described} has a hard budget: send the whole conversation in 'input'",
            param=member,
            code="stored_input_under_budget",
        )


def holds_output(scopes: Sequence[Scope], ask: Ask) -> bool:
    """Whether a hard budget holds what the request generates (its tokens, or its USD when anygate pays):
    then the upstream is told the limit, whatever the client sent."""
    return any(s.hard_tokens or (s.hard_usd and ask.counts_usd) for s in scopes)


def generation(row: UsageRow, exchange: Exchange, ticket: Ticket | None) -> Generation:
    """What the export records of a settled request; its text only when its ticket kept it."""
    text = ticket if ticket is not None and ticket.keeps_text else None  # read when the record is made
    return Generation(row, exchange.principal.label, exchange.requested_model, exchange.stream, exchange.error, text)


ByokCheck = Callable[[Principal, str], bool]
# Told, at settle, what a caller's budget has left: (caller, ``key:<id>`` or ``user:<id>``, unit, left).
BudgetObserver = Callable[[Principal, str, str, float], None]


def never_byok(principal: Principal, provider_id: str) -> bool:
    return False


class Accounting:
    """``is_byok(principal, provider_id)``: whether the caller pays that provider with its own key."""

    def __init__(
        self,
        enforcer: Enforcer,
        ledger: Ledger,
        prices: PriceBook,
        budget_source: BudgetSource,
        is_byok: ByokCheck = never_byok,
        refuse_unpriced: bool = True,
        stream_usage: StreamUsagePolicy | None = None,
        tokenizer: Tokenizer | None = None,
        export: Exporter | None = None,
        budget_observer: BudgetObserver | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.alerts = alerts  # budget alerts: settling notes the scopes, owned background work checks them
        self.tokenizer = tokenizer or Tokenizer()  # its vocabularies load at start-up (lifecycle)
        self.export = export  # beside the ledger: each settled request's record, to the telemetry sinks
        self.enforcer = enforcer
        self.ledger = ledger
        self.prices = prices
        self.budget_source = budget_source
        self.is_byok = is_byok
        self.refuse_unpriced = refuse_unpriced
        self.stream_usage = stream_usage or StreamUsagePolicy(lambda provider_id: None)
        self.budget_observer = budget_observer  # the budget gauges, from what the reservation knew

    # ------------------------------------------------------------------------------ before

    async def reserve(
        self,
        exchange: Exchange,
        body: bytes,
        payload: dict[str, Any],
        targets: Sequence[ModelRef] = (),
        endpoint: str | None = None,
        billed_tool: str | None = None,
    ) -> Ticket:
        """Reserve and prepare the request; its ticket holds the body to send upstream.

        ``targets``: every deployment that may serve it, in order (fallbacks included): a USD budget
        reserves at the dearest price among them. ``endpoint`` is the upstream endpoint
        (``chat/completions``...) when the route does not say it. ``billed_tool``: the member that asks the
        upstream for a tool it bills by the call (``wire.billed_tools``), refused under a hard USD budget.
        """
        route = endpoint or exchange.route
        ticket = Ticket(route, body, payload)
        changes: dict[str, Any] = {}
        scopes = self.budget_source(exchange.principal)
        if scopes:
            wanted = requested_output(route, payload)
            if not self.tokenizer.is_ready_for(exchange.requested_model) and estimates_prompt(scopes):
                await self.tokenizer.ready(exchange.requested_model)  # only in a process's first seconds
            refuse_stored_input(route, payload, scopes)
            ask = self.ask(route, exchange, payload, scopes, wanted, targets, billed_tool)
            try:
                ticket.admission = await self.enforcer.admit(scopes, ask)
            except counters_errors() as exc:
                log.exception("budget counters unavailable")
                raise ServiceUnavailable("Budget counters are unavailable", code="limiter_unavailable") from exc
            model = exchange.requested_model or (targets[0].model if targets else "")
            enforce = holds_output(scopes, ask)
            changes.update(limit_changes(route, payload, wanted, ticket.admission.max_tokens, enforce, model))
        if self.asks_stream_usage(exchange, route, payload, targets[0] if targets else None):
            changes["stream_options"] = with_stream_usage(payload)["stream_options"]
            ticket.strip_usage_event = True
        ticket.change(changes)
        if self.export is not None:
            ticket.keeps_text = self.export.wants_text(exchange.principal)
        return ticket

    async def count_request(self, principal: Principal) -> None:
        """A request of ``principal``'s that reaches no upstream but changes what it may do (making,
        changing or revoking keys): it counts against the requests-per-minute limit of the key, its
        ancestors, its user and its team, as a model request does, so a limited key cannot mint keys
        without limit. Raises RateLimited past a limit."""
        scopes = self.budget_source(principal)
        if not scopes:
            return
        try:
            await self.enforcer.count_request(scopes)
        except counters_errors() as exc:
            log.exception("budget counters unavailable")
            raise ServiceUnavailable("Budget counters are unavailable", code="limiter_unavailable") from exc

    def asks_stream_usage(
        self, exchange: Exchange, route: str, payload: dict[str, Any], target: ModelRef | None
    ) -> bool:
        if not exchange.stream or route not in STREAM_USAGE_ROUTES or wants_stream_usage(payload):
            return False
        return self.stream_usage.asks(target.provider_id if target is not None else None)

    def answered_after_retry(self, ticket: Ticket, provider_id: str, status: int) -> None:
        """After ``retry_body`` was sent: an upstream that answers now refused the field; it is not asked
        again (this process remembers it per provider)."""
        if status < 400:
            ticket.strip_usage_event = False  # nothing anygate added is in this stream
            self.stream_usage.refused(provider_id)
            log.info("provider refused stream_options; not asked again", extra={"fields": {"provider": provider_id}})

    def ask(
        self,
        route: str,
        exchange: Exchange,
        payload: dict[str, Any],
        scopes: Sequence[Scope],
        wanted: OutputRequest,
        targets: Sequence[ModelRef],
        billed_tool: str | None = None,
    ) -> Ask:
        counts_tokens = any(s.counts_tokens for s in scopes)
        prompt = self.prompt_tokens(exchange, payload) if counts_tokens else 0
        output = wanted.reserved if route in OUTPUT_LIMIT_FIELDS else 0
        outputs = wanted.outputs
        usd_budgets = [s for s in scopes if s.counts_usd]
        if not targets or not usd_budgets:
            return Ask(prompt, output, outputs=outputs)
        paid = [t for t in targets if not self.is_byok(exchange.principal, t.provider_id)]
        if not paid:
            return Ask(prompt, output, counts_usd=False, outputs=outputs)  # the caller's own key pays: tokens only
        if billed_tool is not None:
            self.refuse_billed_tool(billed_tool, usd_budgets)
        if not counts_tokens:
            prompt = self.prompt_tokens(exchange, payload)
        price = self.dearest_price(route, paid, usd_budgets, TokenCount(prompt, output))
        if price is None:
            return Ask(prompt, output, outputs=outputs)
        return Ask(prompt, output, price.cost(TokenCount(prompt, output)), price.output, outputs=outputs)

    def prompt_tokens(self, exchange: Exchange, payload: dict[str, Any]) -> int:
        """The prompt's estimate, from the counts remembered for this caller (``counting_owner``)."""
        owner = counting_owner(exchange.principal)
        return estimate_prompt(self.tokenizer, payload, exchange.requested_model, owner)

    def dearest_price(
        self, route: str, targets: Sequence[ModelRef], usd_budgets: Sequence[Scope], count: TokenCount
    ) -> Price | None:
        """The price of the dearest model that may serve the request (None: none is known). A model with
        no known price is refused under a hard USD budget, fallbacks included: whichever serves is paid."""
        prices: list[Price] = []
        for provider_id, model in dict.fromkeys((t.provider_id, t.model) for t in targets):
            price = self.prices.price(provider_id, model) if model else None
            if price is None:
                self.refuse_unpriced_model(route, provider_id, model, usd_budgets)
            else:
                prices.append(price)
        if len(prices) == 1:  # most requests have one deployment: nothing to compare
            return prices[0]
        return max(prices, key=lambda p: p.cost(count), default=None)

    def refuse_unpriced_model(self, route: str, provider_id: str, model: str, usd_budgets: Sequence[Scope]) -> None:
        """A hard USD budget cannot hold a request whose cost is unknown: refuse it, unless allowed."""
        hard = next((s for s in usd_budgets if s.hard_usd), None)
        if hard is None or not self.refuse_unpriced or route not in PRICED_ROUTES:
            return
        if not model:
            raise PriceUnknown(
                f"This request names no model, and {hard.described} has a hard USD budget: name a priced model",
                param="model",
            )
        raise PriceUnknown(
            f"Model '{model}' of provider '{provider_id}' has no known price, and "
            f"{hard.described} has a hard USD budget: ask an admin to configure its price",
            param="model",
        )

    def refuse_billed_tool(self, member: str, usd_budgets: Sequence[Scope]) -> None:
        """A tool the upstream bills by the call costs what no price here knows: a hard USD budget cannot
        hold it (unless unpriced requests are let through)."""
        hard = next((s for s in usd_budgets if s.hard_usd), None)
        if hard is None or not self.refuse_unpriced:
            return
        raise PriceUnknown(
            f"'{member}' asks the upstream for a tool it bills by the call, which anygate cannot price, and "
            f"{hard.described} has a hard USD budget: send the request without it",
            param=member,
        )

    # ------------------------------------------------------------------------------ after

    async def count(self, exchange: Exchange, ticket: Ticket | None) -> TokenCount:
        """The upstream's usage; an estimate when it reported none; zero when nothing was generated."""
        reported = count_of(exchange.usage)
        if reported is not None:
            return reported
        # Nothing reached the client: nothing to charge. Once it has, what was generated is paid for, whether
        # the stream ended well, the client left (499) or the upstream broke off (502, 504).
        if ticket is None or exchange.first_byte_at is None:
            return TokenCount(0, 0)
        if not self.tokenizer.is_ready_for(exchange.model):
            await self.tokenizer.ready(exchange.model)
        owner = counting_owner(exchange.principal)
        count = estimate(self.tokenizer, ticket.client_payload, ticket.generated_text(), exchange.model, owner)
        return replace(count, output=ticket.with_unkept(count.output))

    async def settle(self, exchange: Exchange, ticket: Ticket | None) -> None:
        """Record the request in the ledger and settle its reservations (``ticket``: None when it was
        refused before reserving). A failing backend is logged, never the client's problem."""
        try:
            await self._settle(exchange, ticket, time.perf_counter())
        except counters_errors(OSError):
            log.exception("accounting failed for a request", extra={"fields": {"request_id": exchange.request_id}})

    def price(self, exchange: Exchange, count: TokenCount) -> tuple[float | None, CostSource | None]:
        """The cost of ``count`` and its source: the upstream's own figure when it reported one, else the
        price by token class; nothing generated costs nothing; (None, None) when the price is unknown."""
        reported = upstream_cost(exchange.usage)
        if reported is not None:
            return reported, "upstream"
        if count.total == 0:
            return 0.0, None
        if exchange.provider_id is None or exchange.model is None:
            return None, None
        return self.prices.charge(exchange.provider_id, exchange.model, count)

    def answer_cost(self, exchange: Exchange, ticket: Ticket) -> bytes | None:
        """The ``x-anygate-cost`` of a whole answer about to be sent (USD as a decimal string), priced now
        and kept for settling; None when its price is unknown, or when the upstream reported no usage
        (counting the tokens would delay the answer: settling estimates them once it is sent)."""
        count = count_of(exchange.usage)
        if count is None:
            return None
        cost, source = self.price(exchange, count)
        ticket.charge = Charge(count, cost, source)
        return None if cost is None else usd_text(cost).encode()

    async def charge(self, exchange: Exchange, ticket: Ticket | None) -> Charge:
        if ticket is not None and ticket.charge is not None:
            return ticket.charge
        count = await self.count(exchange, ticket)
        return Charge(count, *self.price(exchange, count))

    async def _settle(self, exchange: Exchange, ticket: Ticket | None, finished: float) -> None:
        charge = await self.charge(exchange, ticket)
        count, cost = charge.tokens, charge.cost
        exchange.cost_usd = cost
        # The ledger first: the record that survives holds the request whatever happens to the counters.
        row = self.row(exchange, ticket, charge, finished)
        self.ledger.record(row)
        if self.export is not None:
            self.export.offer(generation(row, exchange, ticket))
        if ticket is not None and ticket.admission is not None:
            # The caller's own provider key pays for a BYOK request: it counts tokens, not the USD budget.
            usd = 0.0 if exchange.byok else cost
            settled = await self.enforcer.settle(ticket.admission, count.total, usd)
            if not settled:
                self.ledger.write_soon()  # its row in the database before the counters can be rebuilt
            if self.budget_observer is not None and ticket.admission.headroom:
                charged = {"tokens": float(count.total), "usd": usd or 0.0}
                for scope, unit, left in ticket.admission.headroom.budgets_after(charged):
                    self.budget_observer(exchange.principal, scope, unit, left)
            if self.alerts is not None and self.alerts.active:
                self.alerts.watch(self.budget_source(exchange.principal))

    async def retry_unsettled(self) -> int:
        """Apply the settlements the limiter refused earlier, once the ledger's rows are written (so that
        a bucket rebuilt from the ledger never misses them); return how many were applied."""
        if not self.enforcer.unsettled:
            return 0
        await self.ledger.flush()
        if not self.ledger.is_writing:
            return 0
        applied = await self.enforcer.unsettled.retry(self.enforcer.limiter)
        if applied:
            log.info(
                "unsettled requests settled",
                extra={"fields": {"settled": applied, "waiting": len(self.enforcer.unsettled)}},
            )
        return applied

    async def retry_unsettled_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.retry_unsettled()

    @staticmethod
    def row(exchange: Exchange, ticket: Ticket | None, charge: Charge, finished: float) -> UsageRow:
        started = exchange.started
        count = charge.tokens
        route = exchange.route
        if route == "proxy" and exchange.endpoint:
            route = f"proxy:{exchange.endpoint}"  # the endpoint passed through: proxy:chat/completions
        return UsageRow(
            request_id=exchange.request_id,
            created_at=time.time(),
            key_id=exchange.principal.key_id,
            user_id=exchange.principal.user_id,
            route=route[:ROUTE_LENGTH],
            provider_id=exchange.provider_id,
            model=exchange.model,
            input_tokens=count.input,
            output_tokens=count.output,
            estimated=count.estimated,
            cost_usd=charge.cost,
            byok=exchange.byok,
            status=exchange.status,
            latency_ms=round((finished - started) * 1000, 3),
            ttft_ms=None if exchange.first_byte_at is None else round((exchange.first_byte_at - started) * 1000, 3),
            cached_input_tokens=count.cached_input,
            cache_write_tokens=count.cache_write,
            reasoning_tokens=count.reasoning,
            audio_tokens=count.audio_input + count.audio_output,
            image_tokens=count.image_input + count.image_output,
            cost_source=charge.source,
            error=None if exchange.error is None else exchange.error[:ERROR_LENGTH],
            team_id=exchange.principal.team_id,
        )

    async def close(self) -> None:
        await self.retry_unsettled()
        if self.enforcer.unsettled:
            log.error(
                "budget counters unavailable at shutdown: settlements not applied (the ledger has their usage)",
                extra={"fields": {"settlements": len(self.enforcer.unsettled)}},
            )
        if self.alerts is not None:
            await self.alerts.close()
        await self.ledger.close()  # the last batch; the engine is the store's, closed with it
        if self.export is not None:
            await self.export.close()
        await self.enforcer.limiter.close()
