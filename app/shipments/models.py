from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class Shipment(Base):
    """A shipment a warehouse system reported, to be created at Trackstar.

    Its delivery state lives on its outbox message (kind `shipment`). Trackstar
    echoes the created shipment back in order webhooks; those only update the
    stored order and never create rows here.
    """

    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("api_key_id", "idempotency_key"),
        Index("ix_shipments_order", "order_id", "connection_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[str] = mapped_column(String(255))
    order_id: Mapped[str] = mapped_column(String(255))
    tracking_number: Mapped[str] = mapped_column(String(255))
    # The request as the warehouse system sent it, integration fields included.
    fields: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trackstar_shipment_id: Mapped[str | None] = mapped_column(String(255))
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
