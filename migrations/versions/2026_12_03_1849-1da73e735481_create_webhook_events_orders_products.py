"""create webhook events, orders, products, warehouses and api keys

Revision ID: 1da73e735481
Revises:
Create Date: 2026-12-03 18:49:34.893350
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Column types as they were at this revision; later model changes do not alter it.
TIMESTAMP = sa.DateTime(timezone=True)
MONEY = sa.Numeric().with_variant(sa.String(64), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "1da73e735481"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "orders",
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("order_number", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("raw_status", sa.Text(), nullable=True),
        sa.Column("requested_shipping_method", sa.Text(), nullable=True),
        sa.Column("shipping_method_id", sa.Text(), nullable=True),
        sa.Column("shipping_method_name", sa.Text(), nullable=True),
        sa.Column("carrier_id", sa.Text(), nullable=True),
        sa.Column("carrier_name", sa.Text(), nullable=True),
        sa.Column("invoice_currency_code", sa.String(length=16), nullable=False),
        sa.Column("total_price", MONEY, nullable=True),
        sa.Column("total_tax", MONEY, nullable=True),
        sa.Column("total_discount", MONEY, nullable=True),
        sa.Column("total_shipping", MONEY, nullable=True),
        sa.Column("ship_to_address", JSON, nullable=True),
        sa.Column("bill_to_address", JSON, nullable=True),
        sa.Column("earliest_ship_date", TIMESTAMP, nullable=True),
        sa.Column("latest_ship_date", TIMESTAMP, nullable=True),
        sa.Column("shipping_groups", JSON, nullable=False),
        sa.Column("shipments", JSON, nullable=False),
        sa.Column("external_system_url", sa.Text(), nullable=True),
        sa.Column("additional_fields", JSON, nullable=False),
        sa.Column("trackstar_tags", JSON, nullable=False),
        sa.Column("created_date", TIMESTAMP, nullable=True),
        sa.Column("updated_date", TIMESTAMP, nullable=False),
        sa.Column("trackstar_created_date", TIMESTAMP, nullable=True),
        sa.Column("trackstar_updated_date", TIMESTAMP, nullable=True),
        sa.Column("record", JSON, nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "id", name=op.f("pk_orders")),
    )
    op.create_index(
        "ix_orders_changed_at", "orders", ["changed_at", "connection_id", "id"]
    )
    op.create_index("ix_orders_id", "orders", ["id"])
    op.create_index("ix_orders_status", "orders", ["status"])
    op.create_table(
        "products",
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("sku", sa.String(length=255), nullable=True),
        sa.Column("parent_product_id", sa.String(length=255), nullable=False),
        sa.Column("is_variant", sa.Boolean(), nullable=False),
        sa.Column("is_kit", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("price", MONEY, nullable=True),
        sa.Column("unit_cost", MONEY, nullable=True),
        sa.Column("inventory", sa.Integer(), nullable=True),
        sa.Column("inventory_by_warehouse_id", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("categories", JSON, nullable=False),
        sa.Column("gtin", sa.Text(), nullable=True),
        sa.Column("image_url", sa.Text(), nullable=True),
        sa.Column("measurements", JSON, nullable=True),
        sa.Column("external_system_url", sa.Text(), nullable=True),
        sa.Column("additional_fields", JSON, nullable=False),
        sa.Column("trackstar_tags", JSON, nullable=False),
        sa.Column("created_date", TIMESTAMP, nullable=True),
        sa.Column("updated_date", TIMESTAMP, nullable=False),
        sa.Column("trackstar_created_date", TIMESTAMP, nullable=True),
        sa.Column("trackstar_updated_date", TIMESTAMP, nullable=True),
        sa.Column("record", JSON, nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "id", name=op.f("pk_products")),
    )
    op.create_index("ix_products_id", "products", ["id"])
    op.create_index("ix_products_parent_product_id", "products", ["parent_product_id"])
    op.create_index("ix_products_sku", "products", ["sku"])
    op.create_table(
        "generated_secrets",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_generated_secrets")),
    )
    op.create_table(
        "warehouses",
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("address", JSON, nullable=True),
        sa.Column("created_date", TIMESTAMP, nullable=True),
        sa.Column("updated_date", TIMESTAMP, nullable=False),
        sa.Column("trackstar_created_date", TIMESTAMP, nullable=True),
        sa.Column("trackstar_updated_date", TIMESTAMP, nullable=True),
        sa.Column("record", JSON, nullable=False),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "id", name=op.f("pk_warehouses")),
    )
    op.create_index("ix_warehouses_id", "warehouses", ["id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("duplicate_of_id", BIGINT, nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=True),
        sa.Column("connection_id", sa.String(length=255), nullable=True),
        sa.Column("integration_name", sa.String(length=100), nullable=True),
        sa.Column("record_id", sa.String(length=255), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("signed_at", TIMESTAMP, nullable=False),
        sa.Column("received_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["duplicate_of_id"],
            ["webhook_events.id"],
            name=op.f("fk_webhook_events_duplicate_of_id_webhook_events"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_webhook_events_dedupe_key")),
    )
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])
    op.create_index("ix_webhook_events_status_id", "webhook_events", ["status", "id"])
    op.create_table(
        "order_lines",
        sa.Column("connection_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.String(length=255), nullable=False),
        sa.Column("line_item_id", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=255), nullable=True),
        sa.Column("product_sku", sa.String(length=255), nullable=True),
        sa.Column("parent_product_id", sa.String(length=255), nullable=True),
        sa.Column("parent_product_sku", sa.String(length=255), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=True),
        sa.Column("discount", MONEY, nullable=True),
        sa.Column("tax", MONEY, nullable=True),
        sa.ForeignKeyConstraint(
            ["connection_id", "order_id"],
            ["orders.connection_id", "orders.id"],
            name=op.f("fk_order_lines_connection_id_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "connection_id", "order_id", "line_item_id", name=op.f("pk_order_lines")
        ),
    )
    op.create_index("ix_order_lines_product_id", "order_lines", ["product_id"])
    op.create_index("ix_order_lines_product_sku", "order_lines", ["product_sku"])


def downgrade() -> None:
    op.drop_index("ix_order_lines_product_sku", "order_lines")
    op.drop_index("ix_order_lines_product_id", "order_lines")
    op.drop_table("order_lines")
    op.drop_index("ix_webhook_events_status_id", "webhook_events")
    op.drop_index("ix_webhook_events_received_at", "webhook_events")
    op.drop_table("webhook_events")
    op.drop_index("ix_warehouses_id", "warehouses")
    op.drop_table("warehouses")
    op.drop_table("generated_secrets")
    op.drop_index("ix_products_sku", "products")
    op.drop_index("ix_products_parent_product_id", "products")
    op.drop_index("ix_products_id", "products")
    op.drop_table("products")
    op.drop_index("ix_orders_status", "orders")
    op.drop_index("ix_orders_id", "orders")
    op.drop_index("ix_orders_changed_at", "orders")
    op.drop_table("orders")
    op.drop_table("api_keys")
