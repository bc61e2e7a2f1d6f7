"""An app factory for gateway processes started by tests: keys with budgets. ``python -m
tests.accounting.budget_app`` serves it as ``anygate serve`` does (workers, drain and exit code included).

Settings come from the environment as for ``anygate serve``; ``ANYGATE_TEST_KEYS`` adds keys, a JSON
object ``{"<secret>": {"id": ..., "budget": {...}, "limits": {...}}}`` (the store's job once merged), and
``ANYGATE_TEST_LEDGER_INTERVAL`` sets the ledger's batch interval.
"""

from __future__ import annotations

import json
import os

from anygate.accounting.budgets import StaticBudgets, budget_spec, limit_spec
from anygate.app import Gateway
from anygate.auth import Principal, hash_key
from anygate.server import run_server
from anygate.settings import load_settings


class KeyedGateway(Gateway):
    async def startup(self) -> None:
        await super().startup()
        for secret, entry in json.loads(os.environ.get("ANYGATE_TEST_KEYS", "{}")).items():
            self.state.keyring.add(hash_key(secret), Principal(key_id=entry["id"], is_admin=False, label=entry["id"]))


def app() -> Gateway:
    settings = load_settings()
    interval = os.environ.get("ANYGATE_TEST_LEDGER_INTERVAL")
    if interval:
        settings = settings.model_copy(update={"ledger_interval": float(interval)})
    keys = json.loads(os.environ.get("ANYGATE_TEST_KEYS", "{}"))
    gateway = KeyedGateway(settings)
    budgets = {e["id"]: spec for e in keys.values() if (spec := budget_spec(e.get("budget"))) is not None}
    limits = {e["id"]: spec for e in keys.values() if (spec := limit_spec(e.get("limits"))) is not None}
    gateway.budget_source = StaticBudgets(budgets, limits)
    return gateway


def main() -> None:
    """Serve ``app`` with the host, port, workers and drain grace of ``ANYGATE_*`` in the environment."""
    run_server(load_settings(), app_factory="tests.accounting.budget_app:app")


if __name__ == "__main__":
    main()
