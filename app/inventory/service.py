"""Inventory adjustments reported by warehouse systems, forwarded in order."""

from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import require_configured
from app.core.errors import NotFound, Unprocessable
from app.core.idempotency import fingerprint
from app.core.scope import ConnectionScope, restrict
from app.inventory.models import InventoryAdjustment
from app.inventory.schemas import AdjustmentType, InventoryAdjustmentCreate
from app.outbox.items import Delivery, ForwardedItems
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


ADJUSTMENTS = ForwardedItems(
    InventoryAdjustment,
    kind=KIND,
    key_prefix="inventory-adjustment",
    not_found=InventoryAdjustmentNotFound,
    noun="inventory adjustment",
)


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
        replay = await ADJUSTMENTS.find_replay(
            session,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=request_fingerprint,
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
    delivery = Delivery(
        connection_id=product.connection_id,
        ordering_key=f"product:{product.connection_id}:{product.id}",
        method="PUT",
        path=f"/cart/products/{quote(product.id, safe='')}/adjust-inventory",
        body=fields,
    )
    return await ADJUSTMENTS.add(session, adjustment, delivery)


async def get_adjustment(
    session: AsyncSession, adjustment_id: int, *, scope: ConnectionScope = None
) -> tuple[InventoryAdjustment, OutboxMessage]:
    return await ADJUSTMENTS.get(session, adjustment_id, scope=scope)


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
    return await ADJUSTMENTS.page(
        session,
        conditions=conditions,
        status=status,
        limit=limit,
        cursor=cursor,
        scope=scope,
    )


async def retry_adjustment(
    session: AsyncSession, adjustment_id: int, *, scope: ConnectionScope = None
) -> tuple[InventoryAdjustment, OutboxMessage]:
    return await ADJUSTMENTS.retry(session, adjustment_id, scope=scope)
