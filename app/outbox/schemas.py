"""Delivery state as the API shows it for shipments and inventory adjustments."""

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from app.outbox.models import MessageStatus, OutboxMessage
from app.outbox.service import is_empty


def _has_value(text: str) -> str:
    if is_empty(text):
        raise ValueError(
            "needs a real value: blank text and placeholders such as 'none' or "
            "'null' are left out of what is sent to Trackstar"
        )
    return text


# A required text field of a write: it must survive the removal of empty
# values from the body, or Trackstar would get a write without it.
RequiredText = Annotated[
    str, StringConstraints(min_length=1, max_length=255), AfterValidator(_has_value)
]


class TrackstarErrorRead(BaseModel):
    status_code: int | None = Field(description="Trackstar's HTTP status, if any.")
    message: str = Field(description="Trackstar's `error`, kept verbatim.")
    origin: str | None = Field(
        description="`integration` when the cart itself refused the write."
    )


class DeliveryRead(BaseModel):
    status: MessageStatus
    attempts: int
    next_attempt_at: datetime | None = Field(
        description="When the next try is due; null once delivered or failed."
    )
    last_error: TrackstarErrorRead | None
    trackstar_request_id: str | None
    delivered_at: datetime | None
    failed_at: datetime | None


def delivery_of(message: OutboxMessage) -> DeliveryRead:
    is_open = message.status in (MessageStatus.PENDING, MessageStatus.DELIVERING)
    last_error = None
    if message.last_error is not None and message.status != MessageStatus.DELIVERED:
        last_error = TrackstarErrorRead(
            status_code=message.last_status_code,
            message=message.last_error,
            origin=message.last_origin,
        )
    return DeliveryRead(
        status=message.status,
        attempts=message.attempts,
        next_attempt_at=message.next_attempt_at if is_open else None,
        last_error=last_error,
        trackstar_request_id=message.last_request_id,
        delivered_at=message.delivered_at,
        failed_at=message.failed_at,
    )
