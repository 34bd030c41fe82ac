"""Shipments reported by warehouse systems, each forwarded to Trackstar once."""

import secrets
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import require_configured
from app.core.errors import Conflict, NotFound
from app.core.idempotency import check_replay, fingerprint
from app.core.scope import ConnectionScope, allows, restrict
from app.orders.models import Order
from app.orders.service import OrderNotFound
from app.outbox import service as outbox
from app.outbox.models import MessageStatus, OutboxMessage
from app.shipments.models import Shipment
from app.shipments.schemas import ShipmentCreate
from app.trackstar.schemas import TrackstarOrderStatus

KIND = "shipment"


class ShipmentNotFound(NotFound):
    pass


class OrderCancelled(Conflict):
    pass


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
        replay = await _replay(
            session, api_key_id, idempotency_key, request_fingerprint
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
    try:
        async with session.begin_nested():
            session.add(shipment)
            await session.flush()
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the race.
        assert idempotency_key is not None
        replay = await _replay(
            session, api_key_id, idempotency_key, request_fingerprint
        )
        assert replay is not None
        return replay
    message = await outbox.enqueue(
        session,
        kind=KIND,
        subject_id=shipment.id,
        connection_id=order.connection_id,
        ordering_key=f"order:{order.connection_id}:{order.id}",
        method="POST",
        path=f"/cart/orders/{quote(order.id, safe='')}/shipments",
        body=fields,
        idempotency_key=f"shipment:{shipment.id}:{secrets.token_hex(8)}",
    )
    return shipment, message


async def _replay(
    session: AsyncSession,
    api_key_id: int | None,
    idempotency_key: str,
    request_fingerprint: str,
) -> tuple[Shipment, OutboxMessage] | None:
    shipment = await session.scalar(
        select(Shipment).where(
            Shipment.api_key_id == api_key_id,
            Shipment.idempotency_key == idempotency_key,
        )
    )
    if shipment is None:
        return None
    check_replay(shipment.request_fingerprint, request_fingerprint)
    return shipment, await outbox.message_for(
        session, kind=KIND, subject_id=shipment.id
    )


async def get_shipment(
    session: AsyncSession, shipment_id: int, *, scope: ConnectionScope = None
) -> tuple[Shipment, OutboxMessage]:
    shipment = await session.get(Shipment, shipment_id)
    if shipment is None or not allows(scope, shipment.connection_id):
        raise ShipmentNotFound(f"No shipment with id {shipment_id}.")
    return shipment, await outbox.message_for(
        session, kind=KIND, subject_id=shipment.id
    )


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
    if scope is not None:
        conditions.append(Shipment.connection_id.in_(sorted(scope)))
    return await outbox.page_with_messages(
        session,
        Shipment,
        kind=KIND,
        conditions=conditions,
        status=status,
        limit=limit,
        cursor=cursor,
    )


async def retry_shipment(
    session: AsyncSession, shipment_id: int, *, scope: ConnectionScope = None
) -> tuple[Shipment, OutboxMessage]:
    shipment, message = await get_shipment(session, shipment_id, scope=scope)
    await outbox.retry_failed(session, message)
    return shipment, message
