"""Store cart warehouses from webhooks and pulls; list them."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.models import utcnow
from app.core.pagination import fetch_change_page
from app.core.scope import ConnectionScope, restrict
from app.core.upsert import StoreResult, upsert_versioned
from app.trackstar.schemas import TrackstarWarehouse
from app.warehouses.models import Warehouse


def _warehouse_row(
    connection_id: str,
    warehouse: TrackstarWarehouse,
    record: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "id": warehouse.id,
        "name": warehouse.name,
        "code": warehouse.code,
        "address": (
            warehouse.address.model_dump() if warehouse.address is not None else None
        ),
        "created_date": warehouse.created_date,
        "updated_date": warehouse.updated_date,
        "trackstar_created_date": warehouse.trackstar_created_date,
        "trackstar_updated_date": warehouse.trackstar_updated_date,
        "record": record,
        "changed_at": now,
    }


async def store_warehouses(
    session: AsyncSession,
    *,
    connection_id: str,
    warehouses: Sequence[tuple[TrackstarWarehouse, dict[str, Any]]],
) -> StoreResult:
    """Upsert warehouses; a warehouse older than the stored one is skipped."""
    now = utcnow()
    rows = [
        _warehouse_row(connection_id, item, record, now) for item, record in warehouses
    ]
    applied = await upsert_versioned(session, Warehouse, rows)
    stale = {(connection_id, item.id) for item, _ in warehouses} - applied
    return StoreResult(applied=applied, stale=stale)


async def list_warehouses(
    session: AsyncSession,
    *,
    connection_id: str | None,
    limit: int,
    cursor: str | None = None,
    scope: ConnectionScope = None,
) -> tuple[list[Warehouse], str | None]:
    statement = restrict(select(Warehouse), Warehouse.connection_id, scope)
    if connection_id is not None:
        statement = statement.where(Warehouse.connection_id == connection_id)
    return await fetch_change_page(
        session, statement, Warehouse, limit=limit, cursor=cursor
    )
