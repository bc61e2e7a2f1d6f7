"""Console sign-in through OpenID Connect: who signed in as which user, and the sign-ins that came back.

Revision ID: 0006_signin
Revises: 0005_token_classes_request_log
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_signin"
down_revision = "0005_token_classes_request_log"
branch_labels = None
depends_on = None
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "signin_identities",
        sa.Column("issuer", sa.String(255), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_signin_identities_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("issuer", "subject", name="pk_signin_identities"),
    )
    op.create_index("ix_signin_identities_user_id", "signin_identities", ["user_id"])
    op.create_table(
        "signin_flows",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name="pk_signin_flows"),
        sa.UniqueConstraint("code_hash", name="uq_signin_flows_code_hash"),
    )


def downgrade() -> None:
    op.drop_table("signin_flows")
    op.drop_index("ix_signin_identities_user_id", table_name="signin_identities")
    op.drop_table("signin_identities")
