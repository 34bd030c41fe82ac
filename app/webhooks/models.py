from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, BigIntPK, UTCDateTime, utcnow

MESSAGE_ID_MAX_LENGTH = 255


class EventStatus(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    STALE = "stale"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    # Oversized: stored, the full record is being fetched through the API.
    PENDING = "pending"


class WebhookEvent(Base):
    """One verified delivery from Trackstar, kept with its exact body.

    The first delivery of a Svix message id carries that id in `dedupe_key`,
    which is unique, so a retried or replayed copy cannot be inserted as new
    work; it is recorded as a `duplicate` row (no body) pointing at the first.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_status_id", "status", "id"),
        Index("ix_webhook_events_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_MAX_LENGTH))
    dedupe_key: Mapped[str | None] = mapped_column(
        String(MESSAGE_ID_MAX_LENGTH), unique=True
    )
    duplicate_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="SET NULL")
    )
    status: Mapped[EventStatus] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(String(100))
    connection_id: Mapped[str | None] = mapped_column(String(255))
    integration_name: Mapped[str | None] = mapped_column(String(100))
    record_id: Mapped[str | None] = mapped_column(String(255))
    # The exact bytes that were signed; NUL characters and invalid text survive.
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Completing a pending (truncated) event: tries so far and the next one.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
