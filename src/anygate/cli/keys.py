"""``anygate keys ...`` and ``anygate users ...``: keys and users in the store, from the terminal.

Create and update build the body ``POST``/``PATCH /v1/keys`` and ``/v1/users`` take and check it with the
same request models and rules (``management.schemas``, ``management.key_checks``): what the API refuses is
refused here with the same message, and what it warns about is printed on stderr.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from anygate.cli.common import ConfigOption, err_console_print, fail, load, with_store
from anygate.cli.spend_options import (
    BudgetMode,
    BudgetPeriod,
    BudgetTokens,
    BudgetUsd,
    Concurrency,
    NoBudget,
    NoLimits,
    Rpm,
    SpendOptions,
    Tpm,
    budgets_text,
    spend_changes,
)
from anygate.settings import Settings
from anygate.store.records import KeyRecord, UserRecord
from anygate.store.store import Store

keys_app = typer.Typer(help="Keys issued by anygate.", no_args_is_help=True)
users_app = typer.Typer(help="Users that own keys.", no_args_is_help=True)

ModelsOption = Annotated[
    list[str] | None, typer.Option("--model", help="Allowed model pattern, as provider/model (repeatable).")
]
ProvidersOption = Annotated[list[str] | None, typer.Option("--provider", help="Allowed provider pattern (repeatable).")]
ExpiresOption = Annotated[
    str | None,
    typer.Option("--expires", help="Expiry, ISO 8601: 2027-01-01 or 2027-01-01T12:00:00Z (UTC without a zone)."),
]


# Added to a pattern warning when this command knows no provider at all: the README's quick start gives the
# gateway its provider in its own environment, which a command in another terminal does not share.
NO_PROVIDER_SEEN = (
    "this command knows no provider (none in the environment, a .env in this folder, --config or the store):"
    " one given only to the running gateway's environment is not seen here, and the key works with it all the same"
)


def cli_view(record: object) -> dict[str, Any] | None:
    """A key or user record for the audit log: its fields, never a hash."""
    if record is None:
        return None
    fields = {k: v for k, v in vars(record).items() if k not in ("key_hash", "previous_hash")}
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in fields.items()}


def compact_table(*columns: str) -> Table:
    """A table that fits 80 columns: the first (an id, to copy) whole, the others folding in their column."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for index, name in enumerate(columns):
        table.add_column(name, no_wrap=index == 0, overflow="fold")
    return table


def print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        err_console_print(f"warning: {warning}")


def noting_unseen_providers(warnings: list[str], served: Mapping[str, object]) -> list[str]:
    """``warnings``, and when a pattern matched nothing because no provider is known here at all, why."""
    if not served and any(w.startswith(("models:", "providers:")) for w in warnings):
        return [*warnings, NO_PROVIDER_SEEN]
    return warnings


async def served_by_configuration(settings: Settings, store: Store) -> dict[str, frozenset[str] | None]:
    """The providers known from here (the configuration's and the store's), their lists unknown: what the
    running gateway has discovered is not read, so only provider ids are judged."""
    known: dict[str, frozenset[str] | None] = {p.id: None for p in settings.providers if p.enabled}
    known.update({p.id: None for p in await store.providers.list()})
    return known


@keys_app.command("create")
def keys_create(
    alias: Annotated[str, typer.Option("--alias", help="A name for the key (warned about when its owner has it).")],
    user: Annotated[str | None, typer.Option("--user", help="The user that owns it (a user id).")] = None,
    model: ModelsOption = None,
    provider: ProvidersOption = None,
    expires: ExpiresOption = None,
    admin: Annotated[bool, typer.Option("--admin", help="An admin key.")] = False,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    budget_period: BudgetPeriod = None,
    budget_mode: BudgetMode = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    config: ConfigOption = None,
) -> None:
    """Issue a key and print it (shown this once)."""
    from anygate.management.key_checks import check_key_fields
    from anygate.management.schemas import KeyCreate, with_budget_list
    from anygate.management.validation import validate

    spend = SpendOptions(budget_tokens, budget_usd, budget_period, budget_mode, rpm, tpm, concurrency)
    spec = {
        "alias": alias,
        "user_id": user,
        "models": model or None,
        "providers": provider or None,
        "expires_at": expires,
        "role": "admin" if admin else "user",
        "budget": spend.budget(),
        "limits": spend.limits(),
    }
    settings = load(config)

    async def create(store: Store) -> tuple[str, str, list[str]]:
        body = validate(KeyCreate, spec)  # a bad field is reported like the API's 400
        fields = with_budget_list(body, body.model_dump())
        served = await served_by_configuration(settings, store)
        warnings = await check_key_fields(store.keys, fields, served)
        record, secret = await store.keys.create_key(fields, created_by="cli")
        await store.audit.record("cli", "key.create", "key", record.id, None, cli_view(record))
        return record.id, secret, noting_unseen_providers(warnings, served)

    key_id, secret, warnings = with_store(settings, create)
    print_warnings(warnings)
    err_console_print(f"created key {key_id} (the key below is shown this once)")
    Console().print(secret, highlight=False, soft_wrap=True)


@keys_app.command("update")
def keys_update(
    key_id: str,
    alias: Annotated[str | None, typer.Option("--alias", help="A new name.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Move it to this user.")] = None,
    no_user: Annotated[bool, typer.Option("--no-user", help="Owned by no user.")] = False,
    model: ModelsOption = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="Allow every model.")] = False,
    provider: ProvidersOption = None,
    all_providers: Annotated[bool, typer.Option("--all-providers", help="Allow every provider.")] = False,
    expires: ExpiresOption = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expires.")] = False,
    role: Annotated[str | None, typer.Option("--role", help="admin | user")] = None,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    budget_period: BudgetPeriod = None,
    budget_mode: BudgetMode = None,
    no_budget: NoBudget = False,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    no_limits: NoLimits = False,
    config: ConfigOption = None,
) -> None:
    """Change a key; what is not given stays. A budget or limit option changes that one amount and keeps the
    others; a list given (--model, --provider) replaces the list."""
    from anygate.management.key_checks import check_key_fields
    from anygate.management.schemas import KeyUpdate, with_budget_list
    from anygate.management.validation import validate

    given: dict[str, Any] = {"alias": alias, "role": role, "models": model or None, "providers": provider or None}
    given |= {"user_id": user, "expires_at": expires}
    changes = {name: value for name, value in given.items() if value is not None}
    cleared = {"user_id": no_user, "models": all_models, "providers": all_providers, "expires_at": no_expiry}
    changes |= {name: None for name, clear in cleared.items() if clear}
    spend = SpendOptions(budget_tokens, budget_usd, budget_period, budget_mode, rpm, tpm, concurrency)
    if not changes and spend == SpendOptions() and not no_budget and not no_limits:
        fail("nothing to change: give what to change (anygate keys update --help)")
    settings = load(config)

    async def update(store: Store) -> tuple[KeyRecord, list[str]]:
        record = await store.keys.get_key(key_id)
        if record is None:
            raise LookupError(f"no key '{key_id}'")
        fields = validate(KeyUpdate, changes | spend_changes(spend, record, no_budget, no_limits))
        patch = with_budget_list(fields, fields.model_dump(exclude_unset=True))
        current = {"id": record.id, "alias": record.alias, "user_id": record.user_id}
        served = await served_by_configuration(settings, store)
        warnings = await check_key_fields(store.keys, patch, served, current)
        updated = await store.keys.update_key(key_id, patch)
        await store.audit.record("cli", "key.update", "key", key_id, None, cli_view(updated))
        assert updated is not None
        return updated, noting_unseen_providers(warnings, served)

    record, warnings = with_store(settings, update)
    print_warnings(warnings)
    Console().print(f"updated key {record.id} ({record.alias})", highlight=False, markup=False)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """Every key (never the secret); a key made by another key is revoked or expired with it."""
    from anygate.store.budget_lists import stored_budgets
    from anygate.store.families import lineages
    from anygate.store.tables import utcnow

    async def listing(store: Store) -> list[Any]:
        return await store.keys.list_keys()

    records = with_store(load(config), listing)
    chains = lineages({record.id: record for record in records})
    table = compact_table("id", "alias", "prefix", "user", "role", "created by", "status", "expires")
    budgets = compact_table("key", "alias", "budgets")
    for record in records:
        expires = record.expires_at.isoformat() if record.expires_at else ""
        table.add_row(
            record.id,
            record.alias,
            record.key_prefix,
            record.user_id or "",
            record.role,
            record.created_by or "",
            chains[record.id].status(utcnow()),
            expires,
        )
        if stored_budgets(record.budget):
            budgets.add_row(record.id, record.alias, budgets_text(record.budget))
    Console().print(table, highlight=False)
    # The budgets apart: a ninth column would fold every cell of an 80-column terminal.
    if budgets.row_count:
        Console().print(budgets, highlight=False)


@keys_app.command("revoke")
def keys_revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke a key and every key made from it: they stop working everywhere within seconds."""

    async def revoke(store: Store) -> Any:
        revoked = await store.keys.revoke_key(key_id)
        await store.audit.record("cli", "key.revoke", "key", key_id, None, cli_view(revoked))
        return revoked

    if with_store(load(config), revoke) is None:
        err_console_print(f"no key '{key_id}'")
        raise typer.Exit(1)
    Console().print(f"revoked key {key_id}")


@users_app.command("create")
def users_create(
    name: str,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    budget_period: BudgetPeriod = None,
    budget_mode: BudgetMode = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    config: ConfigOption = None,
) -> None:
    """Add a user and print its id (then give it keys with `anygate keys create --user <id>`). Its budget
    and limits count every one of its keys together."""
    from anygate.management.schemas import UserCreate, with_budget_list
    from anygate.management.validation import validate

    spend = SpendOptions(budget_tokens, budget_usd, budget_period, budget_mode, rpm, tpm, concurrency)
    spec = {"name": name, "budget": spend.budget(), "limits": spend.limits()}

    async def create(store: Store) -> str:
        body = validate(UserCreate, spec)
        user = await store.keys.create_user(with_budget_list(body, body.model_dump()))
        await store.audit.record("cli", "user.create", "user", user.id, None, cli_view(user))
        return user.id

    Console().print(with_store(load(config), create))


@users_app.command("update")
def users_update(
    user_id: str,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    budget_tokens: BudgetTokens = None,
    budget_usd: BudgetUsd = None,
    budget_period: BudgetPeriod = None,
    budget_mode: BudgetMode = None,
    no_budget: NoBudget = False,
    rpm: Rpm = None,
    tpm: Tpm = None,
    concurrency: Concurrency = None,
    no_limits: NoLimits = False,
    config: ConfigOption = None,
) -> None:
    """Change a user; what is not given stays (a budget or limit option changes that one amount)."""
    from anygate.management.schemas import UserUpdate, with_budget_list
    from anygate.management.validation import validate

    spend = SpendOptions(budget_tokens, budget_usd, budget_period, budget_mode, rpm, tpm, concurrency)
    if name is None and spend == SpendOptions() and not no_budget and not no_limits:
        fail("nothing to change: give what to change (anygate users update --help)")

    async def update(store: Store) -> UserRecord:
        user = await store.keys.get_user(user_id)
        if user is None:
            raise LookupError(f"no user '{user_id}'")
        changes = ({"name": name} if name is not None else {}) | spend_changes(spend, user, no_budget, no_limits)
        body = validate(UserUpdate, changes)
        fields = with_budget_list(body, body.model_dump(exclude_unset=True))
        updated = await store.keys.update_user(user_id, fields)
        await store.audit.record("cli", "user.update", "user", user_id, cli_view(user), cli_view(updated))
        assert updated is not None
        return updated

    user = with_store(load(config), update)
    Console().print(f"updated user {user.id} ({user.name})", highlight=False, markup=False)


@users_app.command("list")
def users_list(config: ConfigOption = None) -> None:
    async def listing(store: Store) -> list[Any]:
        return await store.keys.list_users()

    table = compact_table("id", "name", "created", "budgets")
    for user in with_store(load(config), listing):
        table.add_row(user.id, user.name, user.created_at.isoformat(), budgets_text(user.budget))
    Console().print(table, highlight=False)


@users_app.command("remove")
def users_remove(user_id: str, config: ConfigOption = None) -> None:
    """Delete a user and every key it owns."""

    async def remove(store: Store) -> bool:
        deleted = await store.keys.delete_user(user_id)
        if deleted:
            await store.audit.record("cli", "user.delete", "user", user_id, None, None)
        return deleted

    if not with_store(load(config), remove):
        err_console_print(f"no user '{user_id}'")
        raise typer.Exit(1)
    Console().print(f"removed user {user_id}")
