"""The usage ledger keeps each request's token classes, where its price came from, and its error code.

Revision ID: 0005_token_classes_request_log
Revises: 0004_quota_polls

Rows written before this revision have zero in every token class (their tokens were all priced as plain
input and output) and no price source or error code.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_token_classes_request_log"
down_revision = "0004_quota_polls"
branch_labels = None
depends_on = None

TOKEN_CLASSES = ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "audio_tokens", "image_tokens")


def upgrade() -> None:
    # A ledger that accounting's own ``create_all`` made (an older deployment) may have them already.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("usage_ledger")}
    wanted: list[sa.Column[Any]] = [
        *(sa.Column(name, sa.Integer(), nullable=False, server_default=sa.text("0")) for name in TOKEN_CLASSES),
        sa.Column("cost_source", sa.String(16), nullable=True),
        sa.Column("error", sa.String(64), nullable=True),
    ]
    for column in wanted:
        if column.name not in present:
            op.add_column("usage_ledger", column)  # SQLite adds a column in place, with its default


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as table:
        for name in ("error", "cost_source", *reversed(TOKEN_CLASSES)):
            table.drop_column(name)
