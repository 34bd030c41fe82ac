"""pull from trackstar and complete truncated events

Revision ID: 9d57941426be
Revises: 90f1af873fb3
Create Date: 2026-12-03 19:12:41.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Column types as they were at this revision; later model changes do not alter it.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "9d57941426be"
down_revision: str | None = "90f1af873fb3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_states",
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("resource", sa.String(length=20), nullable=False),
        sa.Column("watermark", TIMESTAMP, nullable=True),
        sa.Column("last_success_at", TIMESTAMP, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", TIMESTAMP, nullable=True),
        sa.Column("records_pulled", sa.Integer(), nullable=False),
        sa.Column("requested_at", TIMESTAMP, nullable=True),
        sa.Column("requested_full", sa.Boolean(), nullable=False),
        sa.Column("requested_since", TIMESTAMP, nullable=True),
        sa.Column("run_started_at", TIMESTAMP, nullable=True),
        sa.Column("run_query", JSON, nullable=True),
        sa.Column("run_page_token", sa.Text(), nullable=True),
        sa.Column("run_pages", sa.Integer(), nullable=False),
        sa.Column("run_records", sa.Integer(), nullable=False),
        sa.Column("leased_by", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint(
            "connection_id", "resource", name=op.f("pk_sync_states")
        ),
    )
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("next_attempt_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_events") as batch_op:
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
    op.drop_table("sync_states")
