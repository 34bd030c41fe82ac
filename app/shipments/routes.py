from typing import Annotated

from fastapi import APIRouter, Header, Path, Query

from app.auth.dependencies import CurrentApiKey, require_admin, require_api_key
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.outbox.models import MessageStatus, OutboxMessage
from app.outbox.schemas import delivery_of
from app.shipments import service
from app.shipments.models import Shipment
from app.shipments.schemas import ShipmentCreate, ShipmentPage, ShipmentRead
from app.trackstar.schemas import MAX_ID_LENGTH

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["shipments"],
    dependencies=[require_api_key, STRICT_QUERY],
)

IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=255,
        description="Makes the call safe to repeat: the same key and body "
        "return the first result; the same key with another body is a 409.",
    ),
]
ShipmentId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _read(shipment: Shipment, message: OutboxMessage) -> ShipmentRead:
    return ShipmentRead(
        id=shipment.id,
        order_id=shipment.order_id,
        connection_id=shipment.connection_id,
        tracking_number=shipment.tracking_number,
        fields=shipment.fields,
        trackstar_shipment_id=shipment.trackstar_shipment_id,
        created_at=shipment.created_at,
        **delivery_of(message).model_dump(),
    )


@router.post(
    "/orders/{order_id}/shipments",
    status_code=202,
    responses={
        404: {"model": ErrorBody, "description": "No such order"},
        409: {
            "model": ErrorBody,
            "description": "Order cancelled, connection without a token, "
            "or Idempotency-Key reused with another body",
        },
    },
)
async def create_shipment(
    session: DbSession,
    caller: CurrentApiKey,
    order_id: Annotated[str, Path(max_length=MAX_ID_LENGTH)],
    request: ShipmentCreate,
    idempotency_key: IdempotencyKey = None,
) -> ShipmentRead:
    """Report a shipment; it is forwarded to Trackstar in the background."""
    shipment, message = await service.create_shipment(
        session,
        order_id=order_id,
        request=request,
        api_key_id=caller.id,
        idempotency_key=idempotency_key,
        scope=caller.scope,
    )
    return _read(shipment, message)


@router.get("/shipments")
async def list_shipments(
    session: DbSession,
    caller: CurrentApiKey,
    status: MessageStatus | None = None,
    order_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> ShipmentPage:
    """List reported shipments, newest first, with their delivery state."""
    rows, next_cursor = await service.list_shipments(
        session,
        status=status,
        order_id=order_id,
        limit=limit,
        cursor=cursor,
        scope=caller.scope,
    )
    return ShipmentPage(data=[_read(*row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/shipments/{shipment_id}",
    responses={404: {"model": ErrorBody, "description": "Not found"}},
)
async def get_shipment(
    session: DbSession, caller: CurrentApiKey, shipment_id: ShipmentId
) -> ShipmentRead:
    """Get one shipment with its delivery state and Trackstar's last answer."""
    return _read(*await service.get_shipment(session, shipment_id, scope=caller.scope))


@router.post(
    "/shipments/{shipment_id}/retry",
    status_code=202,
    responses={
        404: {"model": ErrorBody, "description": "Not found"},
        409: {
            "model": ErrorBody,
            "description": "Not failed, or a later shipment was already sent",
        },
    },
    dependencies=[require_admin],
)
async def retry_shipment(
    session: DbSession, caller: CurrentApiKey, shipment_id: ShipmentId
) -> ShipmentRead:
    """Put a failed shipment back in the delivery queue (admin keys only)."""
    retried = await service.retry_shipment(session, shipment_id, scope=caller.scope)
    return _read(*retried)
