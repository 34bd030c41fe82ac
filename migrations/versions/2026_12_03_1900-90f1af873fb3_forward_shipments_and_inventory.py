"""forward shipments and inventory adjustments

Revision ID: 90f1af873fb3
Revises: 1da73e735481
Create Date: 2026-12-03 19:00:37.686624
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Column types as they were at this revision; later model changes do not alter it.
TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "90f1af873fb3"
down_revision: str | None = "1da73e735481"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("integration_name", sa.String(length=100), nullable=True),
        sa.Column("access_token_encrypted", sa.Text(), nullable=False),
        sa.Column("available_actions", JSON, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("suspended_at", TIMESTAMP, nullable=True),
        sa.Column("suspended_reason", sa.Text(), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connections")),
    )
    op.create_table(
        "inventory_adjustments",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=False),
        sa.Column("warehouse_id", sa.String(length=255), nullable=False),
        sa.Column("adjustment_type", sa.String(length=20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory_adjustments")),
        sa.UniqueConstraint(
            "api_key_id",
            "idempotency_key",
            name=op.f("uq_inventory_adjustments_api_key_id_idempotency_key"),
        ),
    )
    op.create_index(
        "ix_inventory_adjustments_product",
        "inventory_adjustments",
        ["product_id", "connection_id"],
    )
    op.create_table(
        "outbox_messages",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("subject_id", BIGINT, nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("ordering_key", sa.String(length=600), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=False),
        sa.Column("leased_by", sa.String(length=100), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("outcome_unknown", sa.Boolean(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("queued_at", TIMESTAMP, nullable=False),
        sa.Column("first_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("last_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("delivered_at", TIMESTAMP, nullable=True),
        sa.Column("failed_at", TIMESTAMP, nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_kind", sa.String(length=40), nullable=True),
        sa.Column("last_origin", sa.String(length=40), nullable=True),
        sa.Column("last_request_id", sa.String(length=255), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("result", JSON, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint(
            "idempotency_key", name=op.f("uq_outbox_messages_idempotency_key")
        ),
        sa.UniqueConstraint(
            "kind", "subject_id", name=op.f("uq_outbox_messages_kind_subject_id")
        ),
    )
    op.create_index(
        "ix_outbox_messages_due", "outbox_messages", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_outbox_messages_ordering_key", "outbox_messages", ["ordering_key", "id"]
    )
    op.create_table(
        "shipments",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("tracking_number", sa.String(length=255), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("trackstar_shipment_id", sa.String(length=255), nullable=True),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint(
            "api_key_id",
            "idempotency_key",
            name=op.f("uq_shipments_api_key_id_idempotency_key"),
        ),
    )
    op.create_index("ix_shipments_order", "shipments", ["order_id", "connection_id"])
    op.create_table(
        "outbox_attempts",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("message_id", BIGINT, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(length=100), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["outbox_messages.id"],
            name=op.f("fk_outbox_attempts_message_id_outbox_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_attempts")),
    )
    op.create_index(
        op.f("ix_outbox_attempts_message_id"), "outbox_attempts", ["message_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_attempts_message_id"), "outbox_attempts")
    op.drop_table("outbox_attempts")
    op.drop_index("ix_shipments_order", "shipments")
    op.drop_table("shipments")
    op.drop_index("ix_outbox_messages_ordering_key", "outbox_messages")
    op.drop_index("ix_outbox_messages_due", "outbox_messages")
    op.drop_table("outbox_messages")
    op.drop_index("ix_inventory_adjustments_product", "inventory_adjustments")
    op.drop_table("inventory_adjustments")
    op.drop_table("connections")
