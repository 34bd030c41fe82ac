from datetime import datetime

from pydantic import BaseModel

from app.core.schemas import ReadModel


class WarehouseRead(ReadModel):
    id: str
    connection_id: str
    name: str | None
    code: str | None
    address: dict[str, str | None] | None
    created_date: datetime | None
    updated_date: datetime
    trackstar_created_date: datetime | None
    trackstar_updated_date: datetime | None
    changed_at: datetime


class WarehousePage(BaseModel):
    data: list[WarehouseRead]
    next_cursor: str | None
