import base64
from datetime import datetime

from pydantic import BaseModel, Field, computed_field

from app.core.schemas import ReadModel
from app.webhooks.models import EventStatus


class WebhookAck(BaseModel):
    """The answer to Trackstar: any 2xx means the event is stored durably."""

    status: EventStatus
    event_id: int


class WebhookEventRead(ReadModel):
    id: int
    message_id: str = Field(description="The Svix message id (`svix-id`).")
    status: EventStatus
    reason: str | None
    event_type: str | None
    connection_id: str | None
    integration_name: str | None
    record_id: str | None
    duplicate_of_id: int | None
    signed_at: datetime
    received_at: datetime


class WebhookEventDetail(WebhookEventRead):
    body: bytes | None = Field(exclude=True)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def body_base64(self) -> str | None:
        """The delivered bytes exactly as signed."""
        return None if self.body is None else base64.b64encode(self.body).decode()

    @computed_field  # type: ignore[prop-decorator]
    @property
    def body_text(self) -> str | None:
        """The body as text, with undecodable bytes replaced."""
        return None if self.body is None else self.body.decode("utf-8", "replace")


class WebhookEventPage(BaseModel):
    data: list[WebhookEventRead]
    next_cursor: str | None
