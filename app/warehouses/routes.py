from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.dependencies import CurrentApiKey, require_api_key
from app.core.db import DbSession
from app.core.errors import API_ERRORS
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.trackstar.schemas import MAX_ID_LENGTH
from app.warehouses import service
from app.warehouses.schemas import WarehousePage, WarehouseRead

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["warehouses"],
    dependencies=[require_api_key, STRICT_QUERY],
)

# Ids are compared with stored text, which never holds NUL (Postgres text cannot).


@router.get("/warehouses")
async def list_warehouses(
    session: DbSession,
    caller: CurrentApiKey,
    connection_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> WarehousePage:
    """List the carts' stock locations; their ids key product inventory."""
    warehouses, next_cursor = await service.list_warehouses(
        session,
        connection_id=connection_id,
        limit=limit,
        cursor=cursor,
        scope=caller.scope,
    )
    data = [WarehouseRead.model_validate(item) for item in warehouses]
    return WarehousePage(data=data, next_cursor=next_cursor)
