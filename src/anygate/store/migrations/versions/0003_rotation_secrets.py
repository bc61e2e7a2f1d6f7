"""Key rotation keeps the key record (the previous secret's hash stays valid for an hour), and a provider's
headers and extra keys are encrypted like its key.

Revision ID: 0003_rotation_secrets
Revises: 0002_accounting

Rows written before this revision keep their headers and ``api_keys`` in ``providers.config`` until the
store opens with the secret key, which moves them into the encrypted ``providers.secrets`` (the migration
itself has no key to encrypt with).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_rotation_secrets"
down_revision = "0002_accounting"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("previous_hash", sa.String(64), nullable=True))
    op.add_column("api_keys", sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("providers", sa.Column("secrets", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("secrets")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("previous_valid_until")
        batch.drop_column("previous_hash")
