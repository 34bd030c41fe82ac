from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKeyConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.models import Base, JSONType, Money, UTCDateTime


class Order(Base):
    """Trackstar's latest copy of a cart order, keyed by connection and order id.

    The typed columns serve queries; `record` keeps the whole record as
    received, unknown fields included.
    """

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_changed_at", "changed_at", "connection_id", "id"),
        Index("ix_orders_id", "id"),
        Index("ix_orders_status", "status"),
    )

    connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    order_number: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(40))
    raw_status: Mapped[str | None] = mapped_column(Text)
    requested_shipping_method: Mapped[str | None] = mapped_column(Text)
    shipping_method_id: Mapped[str | None] = mapped_column(Text)
    shipping_method_name: Mapped[str | None] = mapped_column(Text)
    carrier_id: Mapped[str | None] = mapped_column(Text)
    carrier_name: Mapped[str | None] = mapped_column(Text)
    invoice_currency_code: Mapped[str] = mapped_column(String(16))
    total_price: Mapped[Decimal | None] = mapped_column(Money)
    total_tax: Mapped[Decimal | None] = mapped_column(Money)
    total_discount: Mapped[Decimal | None] = mapped_column(Money)
    total_shipping: Mapped[Decimal | None] = mapped_column(Money)
    ship_to_address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    bill_to_address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    earliest_ship_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    latest_ship_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipping_groups: Mapped[list[Any]] = mapped_column(JSONType)
    shipments: Mapped[list[Any]] = mapped_column(JSONType)
    external_system_url: Mapped[str | None] = mapped_column(Text)
    additional_fields: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trackstar_tags: Mapped[list[Any]] = mapped_column(JSONType)
    created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime)
    trackstar_created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trackstar_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # When this service last changed the row: the order of the change feed.
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    lines: Mapped[list["OrderLine"]] = relationship(
        lazy="raise",
        order_by="OrderLine.position",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class OrderLine(Base):
    """One order line. Product fields are nullable: gift wrap has no product.

    `unit_price`, `discount` and `tax` are per unit, in the order's currency.
    """

    __tablename__ = "order_lines"
    __table_args__ = (
        ForeignKeyConstraint(
            ["connection_id", "order_id"],
            ["orders.connection_id", "orders.id"],
            ondelete="CASCADE",
        ),
        Index("ix_order_lines_product_sku", "product_sku"),
        Index("ix_order_lines_product_id", "product_id"),
    )

    connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    line_item_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str | None] = mapped_column(String(255))
    product_sku: Mapped[str | None] = mapped_column(String(255))
    parent_product_id: Mapped[str | None] = mapped_column(String(255))
    parent_product_sku: Mapped[str | None] = mapped_column(String(255))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal | None] = mapped_column(Money)
    discount: Mapped[Decimal | None] = mapped_column(Money)
    tax: Mapped[Decimal | None] = mapped_column(Money)
