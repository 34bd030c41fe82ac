from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, JSONType, UTCDateTime


class Warehouse(Base):
    """A cart stock location; its id keys `inventory_by_warehouse_id`."""

    __tablename__ = "warehouses"
    __table_args__ = (Index("ix_warehouses_id", "id"),)

    connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    address: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime)
    trackstar_created_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trackstar_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime)
    record: Mapped[dict[str, Any]] = mapped_column(JSONType)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
