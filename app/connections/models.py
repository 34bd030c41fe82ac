from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, JSONType, UTCDateTime, utcnow


class Connection(Base):
    """A merchant's cart connected through Trackstar, with its access token.

    The token is stored encrypted (see `app.core.secrets.SecretBox`) and is
    needed for every call to Trackstar's `/cart/...` endpoints.
    """

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    integration_name: Mapped[str | None] = mapped_column(String(100))
    access_token_encrypted: Mapped[str] = mapped_column(Text)
    available_actions: Mapped[list[str] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when Trackstar answers 401: no more calls until the token is replaced.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    suspended_reason: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
