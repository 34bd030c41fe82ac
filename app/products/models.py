from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, JSONType, Money, UTCDateTime


class Product(Base):
    """A cart product: a parent (`parent_product_id == id`) or a variant.

    Only variants are authoritative for price, unit cost and inventory, so
    those columns stay empty on parents (the record keeps what was sent).
    No foreign key ties a variant to its parent: a variant may arrive first.
    """

    __tablename__ = "products"
    __table_args__ = (
        Index("ix_products_sku", "sku"),
        Index("ix_products_id", "id"),
        Index("ix_products_parent_product_id", "parent_product_id"),
    )

    connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    sku: Mapped[str | None] = mapped_column(String(255))
    parent_product_id: Mapped[str] = mapped_column(String(255))
    is_variant: Mapped[bool] = mapped_column(Boolean)
    is_kit: Mapped[bool] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean)
    price: Mapped[Decimal | None] = mapped_column(Money)
    unit_cost: Mapped[Decimal | None] = mapped_column(Money)
    # NULL means the cart reported no number, which is not the same as zero.
    inventory: Mapped[int | None] = mapped_column(Integer)
    inventory_by_warehouse_id: Mapped[dict[str, int]] = mapped_column(JSONType)
    tags: Mapped[list[str]] = mapped_column(JSONType)
    categories: Mapped[list[str]] = mapped_column(JSONType)
    gtin: Mapped[str | None] = mapped_column(Text)
    image_url: Mapped[str | None] = mapped_column(Text)
    measurements: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    external_system_url: Mapped[str | None] = mapped_column(Text)
    additional_fields: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trackstar_tags: Mapped[list[Any]] = mapped_column(JSONType)
    created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime)
    trackstar_created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trackstar_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
