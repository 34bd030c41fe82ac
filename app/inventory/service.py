"""Inventory adjustments reported by warehouse systems, forwarded in order."""

import secrets
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import require_configured
from app.core.errors import NotFound, Unprocessable
from app.core.idempotency import check_replay, fingerprint
from app.core.scope import ConnectionScope, allows, restrict
from app.inventory.models import InventoryAdjustment
from app.inventory.schemas import AdjustmentType, InventoryAdjustmentCreate
from app.outbox import service as outbox
from app.outbox.models import MessageStatus, OutboxMessage
from app.products.models import Product
from app.products.service import ProductNotFound

KIND = "inventory_adjustment"


class InventoryAdjustmentNotFound(NotFound):
    pass


class ProductNotAdjustable(Unprocessable):
    pass


class ZeroAdjustment(Unprocessable):
    pass


async def create_adjustment(
    session: AsyncSession,
    *,
    product_id: str,
    request: InventoryAdjustmentCreate,
    api_key_id: int | None,
    idempotency_key: str | None,
    scope: ConnectionScope = None,
) -> tuple[InventoryAdjustment, OutboxMessage]:
    """Store the adjustment and its outbox message in the caller's transaction."""
    fields = request.model_dump(mode="json", exclude_none=True)
    request_fingerprint = fingerprint({"product_id": product_id, **fields})
    if idempotency_key is not None:
        replay = await _replay(
            session, api_key_id, idempotency_key, request_fingerprint
        )
        if replay is not None:
            return replay
    if request.quantity == 0 and request.adjustment_type is not AdjustmentType.EXACT:
        raise ZeroAdjustment(
            "An increase or decrease of 0 changes nothing; it is not sent."
        )

    # Locking the product makes its adjustments commit, and so queue, in order.
    product = await session.scalar(
        restrict(select(Product), Product.connection_id, scope)
        .where(Product.id == product_id)
        .order_by(Product.connection_id)
        .limit(1)
        .with_for_update()
    )
    if product is None:
        raise ProductNotFound(f"No product with id {product_id!r}.")
    if not product.is_variant:
        raise ProductNotAdjustable(
            f"Product {product_id!r} is a parent; only variants can be adjusted."
        )
    await require_configured(session, product.connection_id)

    adjustment = InventoryAdjustment(
        connection_id=product.connection_id,
        product_id=product.id,
        warehouse_id=request.warehouse_id,
        adjustment_type=request.adjustment_type.value,
        quantity=request.quantity,
        reason=request.reason,
        fields=fields,
        api_key_id=api_key_id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
    )
    try:
        async with session.begin_nested():
            session.add(adjustment)
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
        subject_id=adjustment.id,
        connection_id=product.connection_id,
        ordering_key=f"product:{product.connection_id}:{product.id}",
        method="PUT",
        path=f"/cart/products/{quote(product.id, safe='')}/adjust-inventory",
        body=fields,
        idempotency_key=f"inventory-adjustment:{adjustment.id}:{secrets.token_hex(8)}",
    )
    return adjustment, message


async def _replay(
    session: AsyncSession,
    api_key_id: int | None,
    idempotency_key: str,
    request_fingerprint: str,
) -> tuple[InventoryAdjustment, OutboxMessage] | None:
    adjustment = await session.scalar(
        select(InventoryAdjustment).where(
            InventoryAdjustment.api_key_id == api_key_id,
            InventoryAdjustment.idempotency_key == idempotency_key,
        )
    )
    if adjustment is None:
        return None
    check_replay(adjustment.request_fingerprint, request_fingerprint)
    message = await outbox.message_for(session, kind=KIND, subject_id=adjustment.id)
    return adjustment, message


async def get_adjustment(
    session: AsyncSession, adjustment_id: int, *, scope: ConnectionScope = None
) -> tuple[InventoryAdjustment, OutboxMessage]:
    adjustment = await session.get(InventoryAdjustment, adjustment_id)
    if adjustment is None or not allows(scope, adjustment.connection_id):
        raise InventoryAdjustmentNotFound(
            f"No inventory adjustment with id {adjustment_id}."
        )
    message = await outbox.message_for(session, kind=KIND, subject_id=adjustment.id)
    return adjustment, message


async def list_adjustments(
    session: AsyncSession,
    *,
    status: MessageStatus | None,
    product_id: str | None,
    limit: int,
    cursor: str | None,
    scope: ConnectionScope = None,
) -> tuple[list[tuple[InventoryAdjustment, OutboxMessage]], str | None]:
    conditions = (
        [] if product_id is None else [InventoryAdjustment.product_id == product_id]
    )
    if scope is not None:
        conditions.append(InventoryAdjustment.connection_id.in_(sorted(scope)))
    return await outbox.page_with_messages(
        session,
        InventoryAdjustment,
        kind=KIND,
        conditions=conditions,
        status=status,
        limit=limit,
        cursor=cursor,
    )


async def retry_adjustment(
    session: AsyncSession, adjustment_id: int, *, scope: ConnectionScope = None
) -> tuple[InventoryAdjustment, OutboxMessage]:
    adjustment, message = await get_adjustment(session, adjustment_id, scope=scope)
    await outbox.retry_failed(session, message)
    return adjustment, message
