"""Shipments reported by warehouse systems, each forwarded to Trackstar once."""

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import require_configured
from app.core.errors import Conflict, NotFound
from app.core.idempotency import fingerprint
from app.core.scope import ConnectionScope, restrict
from app.orders.models import Order
from app.orders.service import OrderNotFound
from app.outbox.items import Delivery, ForwardedItems
from app.outbox.models import MessageStatus, OutboxMessage
from app.shipments.models import Shipment
from app.shipments.schemas import ShipmentCreate
from app.trackstar.schemas import TrackstarOrderStatus

KIND = "shipment"


class ShipmentNotFound(NotFound):
    pass


class OrderCancelled(Conflict):
    pass


SHIPMENTS = ForwardedItems(
    Shipment,
    kind=KIND,
    key_prefix="shipment",
    not_found=ShipmentNotFound,
    noun="shipment",
)


async def create_shipment(
    session: AsyncSession,
    *,
    order_id: str,
    request: ShipmentCreate,
    api_key_id: int | None,
    idempotency_key: str | None,
    scope: ConnectionScope = None,
) -> tuple[Shipment, OutboxMessage]:
    """Store the shipment and its outbox message in the caller's transaction."""
    fields = request.model_dump(mode="json", exclude_none=True)
    request_fingerprint = fingerprint({"order_id": order_id, **fields})
    if idempotency_key is not None:
        replay = await SHIPMENTS.find_replay(
            session,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=request_fingerprint,
        )
        if replay is not None:
            return replay

    # Locking the order makes shipments for it commit, and so queue, in order.
    order = await session.scalar(
        restrict(select(Order), Order.connection_id, scope)
        .where(Order.id == order_id)
        .order_by(Order.connection_id)
        .limit(1)
        .with_for_update()
    )
    if order is None:
        raise OrderNotFound(f"No order with id {order_id!r}.")
    if order.status == TrackstarOrderStatus.CANCELLED:
        raise OrderCancelled(f"Order {order_id!r} is cancelled; it cannot ship.")
    await require_configured(session, order.connection_id)

    shipment = Shipment(
        connection_id=order.connection_id,
        order_id=order.id,
        tracking_number=request.tracking_number,
        fields=fields,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )
    delivery = Delivery(
        connection_id=order.connection_id,
        ordering_key=f"order:{order.connection_id}:{order.id}",
        method="POST",
        path=f"/cart/orders/{quote(order.id, safe='')}/shipments",
        body=fields,
    )
    return await SHIPMENTS.add(session, shipment, delivery)


async def get_shipment(
    session: AsyncSession, shipment_id: int, *, scope: ConnectionScope = None
) -> tuple[Shipment, OutboxMessage]:
    return await SHIPMENTS.get(session, shipment_id, scope=scope)


async def list_shipments(
    session: AsyncSession,
    *,
    status: MessageStatus | None,
    order_id: str | None,
    limit: int,
    cursor: str | None,
    scope: ConnectionScope = None,
) -> tuple[list[tuple[Shipment, OutboxMessage]], str | None]:
    conditions = [] if order_id is None else [Shipment.order_id == order_id]
    return await SHIPMENTS.page(
        session,
        conditions=conditions,
        status=status,
        limit=limit,
        cursor=cursor,
        scope=scope,
    )


async def retry_shipment(
    session: AsyncSession, shipment_id: int, *, scope: ConnectionScope = None
) -> tuple[Shipment, OutboxMessage]:
    return await SHIPMENTS.retry(session, shipment_id, scope=scope)
