from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.models import Base, JSONType, UTCDateTime


class SyncState(Base):
    """What this service has pulled of one resource of one connection.

    `watermark` is the start of the last pull that reached its last page; the
    next incremental pull asks for records Trackstar changed since then (minus
    an overlap). A pull in progress keeps its query and next page token here,
    committed with each page, so a stopped pull resumes where it stopped.
    `leased_by`/`lease_expires_at` keep two workers off the same pull.
    """

    __tablename__ = "sync_states"

    connection_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(20), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    records_pulled: Mapped[int] = mapped_column(Integer, default=0)
    # A pull asked for (connection added, API call, historical sync done).
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_full: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The pull in progress, if any.
    run_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    run_query: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    run_page_token: Mapped[str | None] = mapped_column(Text)
    run_pages: Mapped[int] = mapped_column(Integer, default=0)
    run_records: Mapped[int] = mapped_column(Integer, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
