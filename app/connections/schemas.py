from datetime import datetime

from pydantic import BaseModel, Field

from app.core.timestamps import UTCTimestamp
from app.sync.resources import Resource


class ResourceSyncRead(BaseModel):
    resource: Resource
    watermark: datetime | None = Field(
        description="Start of the last complete pull; the next asks for changes "
        "since then (minus an overlap)."
    )
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    records_pulled: int
    requested_at: datetime | None = Field(description="A pull asked for, not yet done.")
    running: bool
    run_pages: int = Field(description="Pages stored by the pull in progress.")
    run_records: int


class RecordCounts(BaseModel):
    orders: int
    products: int
    warehouses: int


class ConnectionRead(BaseModel):
    id: str
    integration_name: str | None
    created_at: datetime
    suspended_at: datetime | None = Field(
        description="Set when Trackstar refused the token (401)."
    )
    suspended_reason: str | None
    counts: RecordCounts
    sync: list[ResourceSyncRead]


class ConnectionList(BaseModel):
    data: list[ConnectionRead]


class SyncRequest(BaseModel):
    resources: list[Resource] = Field(
        default_factory=lambda: list(Resource), min_length=1
    )
    since: UTCTimestamp | None = Field(
        default=None,
        description="Only records changed since then; without it a full pull.",
    )
