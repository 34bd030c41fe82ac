from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth.dependencies import CurrentApiKey, require_admin, require_api_key
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.inventory import service
from app.inventory.models import InventoryAdjustment
from app.inventory.schemas import (
    AdjustmentType,
    InventoryAdjustmentCreate,
    InventoryAdjustmentPage,
    InventoryAdjustmentRead,
)
from app.outbox.models import MessageStatus, OutboxMessage
from app.outbox.schemas import delivery_of
from app.shipments.routes import IdempotencyKey
from app.trackstar.schemas import MAX_ID_LENGTH

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["inventory adjustments"],
    dependencies=[require_api_key, STRICT_QUERY],
)

AdjustmentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _read(
    adjustment: InventoryAdjustment, message: OutboxMessage
) -> InventoryAdjustmentRead:
    return InventoryAdjustmentRead(
        id=adjustment.id,
        product_id=adjustment.product_id,
        connection_id=adjustment.connection_id,
        warehouse_id=adjustment.warehouse_id,
        adjustment_type=AdjustmentType(adjustment.adjustment_type),
        quantity=adjustment.quantity,
        reason=adjustment.reason,
        fields=adjustment.fields,
        created_at=adjustment.created_at,
        **delivery_of(message).model_dump(),
    )


@router.post(
    "/products/{product_id}/inventory-adjustments",
    status_code=202,
    responses={
        404: {"model": ErrorBody, "description": "No such product"},
        409: {
            "model": ErrorBody,
            "description": "Connection without a token, or Idempotency-Key "
            "reused with another body",
        },
        422: {
            "model": ErrorBody,
            "description": "A parent product, or a zero increase/decrease",
        },
    },
)
async def create_inventory_adjustment(
    session: DbSession,
    caller: CurrentApiKey,
    product_id: Annotated[str, Path(max_length=MAX_ID_LENGTH)],
    request: InventoryAdjustmentCreate,
    idempotency_key: IdempotencyKey = None,
) -> InventoryAdjustmentRead:
    """Report a stock change for a variant; forwarded to Trackstar in order."""
    adjustment, message = await service.create_adjustment(
        session,
        product_id=product_id,
        request=request,
        api_key_id=caller.id,
        idempotency_key=idempotency_key,
        scope=caller.scope,
    )
    return _read(adjustment, message)


@router.get("/inventory-adjustments")
async def list_inventory_adjustments(
    session: DbSession,
    caller: CurrentApiKey,
    status: MessageStatus | None = None,
    product_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> InventoryAdjustmentPage:
    """List reported adjustments, newest first, with their delivery state."""
    rows, next_cursor = await service.list_adjustments(
        session,
        status=status,
        product_id=product_id,
        limit=limit,
        cursor=cursor,
        scope=caller.scope,
    )
    data = [_read(*row) for row in rows]
    return InventoryAdjustmentPage(data=data, next_cursor=next_cursor)


@router.get(
    "/inventory-adjustments/{adjustment_id}",
    responses={404: {"model": ErrorBody, "description": "Not found"}},
)
async def get_inventory_adjustment(
    session: DbSession, caller: CurrentApiKey, adjustment_id: AdjustmentId
) -> InventoryAdjustmentRead:
    """Get one adjustment with its delivery state and Trackstar's last answer."""
    found = await service.get_adjustment(session, adjustment_id, scope=caller.scope)
    return _read(*found)


@router.post(
    "/inventory-adjustments/{adjustment_id}/retry",
    status_code=202,
    responses={
        404: {"model": ErrorBody, "description": "Not found"},
        409: {
            "model": ErrorBody,
            "description": "Not failed, or a later adjustment was already sent",
        },
    },
    dependencies=[require_admin],
)
async def retry_inventory_adjustment(
    session: DbSession, caller: CurrentApiKey, adjustment_id: AdjustmentId
) -> InventoryAdjustmentRead:
    """Put a failed adjustment back in the delivery queue (admin keys only)."""
    retried = await service.retry_adjustment(session, adjustment_id, scope=caller.scope)
    return _read(*retried)
