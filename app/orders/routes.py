from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth.dependencies import CurrentApiKey, require_api_key
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.core.timestamps import UTCTimestamp
from app.orders import service
from app.orders.schemas import OrderPage, OrderRead
from app.trackstar.schemas import MAX_ID_LENGTH, TrackstarOrderStatus

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["orders"],
    dependencies=[require_api_key, STRICT_QUERY],
)

# Ids are compared with stored text, which never holds NUL (Postgres text cannot).
OrderId = Annotated[str, Path(max_length=MAX_ID_LENGTH)]


@router.get("/orders")
async def list_orders(
    session: DbSession,
    caller: CurrentApiKey,
    status: TrackstarOrderStatus | None = None,
    connection_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    updated_since: Annotated[
        UTCTimestamp | None,
        Query(description="Only orders this service changed at or after this time."),
    ] = None,
    sku: Annotated[
        str | None,
        Query(
            max_length=MAX_ID_LENGTH,
            description="Orders with a line for it.",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> OrderPage:
    """List orders, oldest change first, with cursor pagination."""
    filters = service.OrderFilters(
        scope=caller.scope,
        status=status,
        connection_id=connection_id,
        updated_since=updated_since,
        sku=sku,
    )
    orders, next_cursor = await service.list_orders(
        session, filters=filters, limit=limit, cursor=cursor
    )
    data = [OrderRead.model_validate(order) for order in orders]
    return OrderPage(data=data, next_cursor=next_cursor)


@router.get(
    "/orders/{order_id}",
    responses={404: {"model": ErrorBody, "description": "No such order"}},
)
async def get_order(
    session: DbSession, caller: CurrentApiKey, order_id: OrderId
) -> OrderRead:
    """Get one order with its lines, shipping groups and shipments."""
    order = await service.get_order(session, order_id, scope=caller.scope)
    return OrderRead.model_validate(order)
