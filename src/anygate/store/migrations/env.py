"""Alembic environment: migrations run on the connection anygate hands over (``anygate db upgrade``)."""

from __future__ import annotations

from alembic import context

from anygate.store.ledger_tables import metadata as accounting_metadata
from anygate.store.tables import metadata as store_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through anygate: `anygate db upgrade`")
context.configure(
    connection=connection,
    target_metadata=[store_metadata, accounting_metadata],
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
