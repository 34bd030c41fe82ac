"""What each Trackstar event type does: validate its record, then store it.

Every resource event is an upsert of the full record, so "updated" before
"created" simply creates, and an older snapshot is skipped as stale. Our own
writes to Trackstar come back as these same events and land as upserts too.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.upsert import StoreResult
from app.orders.service import store_orders
from app.products.service import store_products
from app.trackstar.schemas import (
    TrackstarOrder,
    TrackstarProduct,
    TrackstarRecord,
    TrackstarWarehouse,
)
from app.warehouses.service import store_warehouses

Store = Callable[
    [AsyncSession, str, Sequence[tuple[Any, dict[str, Any]]]], Awaitable[StoreResult]
]


async def _store_orders(
    session: AsyncSession, connection_id: str, items: Sequence[Any]
) -> StoreResult:
    return await store_orders(session, connection_id=connection_id, orders=items)


async def _store_products(
    session: AsyncSession, connection_id: str, items: Sequence[Any]
) -> StoreResult:
    return await store_products(session, connection_id=connection_id, products=items)


async def _store_warehouses(
    session: AsyncSession, connection_id: str, items: Sequence[Any]
) -> StoreResult:
    return await store_warehouses(
        session, connection_id=connection_id, warehouses=items
    )


@dataclass(frozen=True)
class ResourceHandler:
    model: type[TrackstarRecord]
    store: Store


ORDER = ResourceHandler(model=TrackstarOrder, store=_store_orders)
PRODUCT = ResourceHandler(model=TrackstarProduct, store=_store_products)
WAREHOUSE = ResourceHandler(model=TrackstarWarehouse, store=_store_warehouses)

HANDLERS: dict[str, ResourceHandler] = {
    "cart-order.created": ORDER,
    "cart-order.updated": ORDER,
    "cart-order.cart-shipment.created": ORDER,
    # The same event under the name one fulfilment guide uses.
    "cart-order.shipment.created": ORDER,
    "cart-product.created": PRODUCT,
    "cart-product.updated": PRODUCT,
    "cart-warehouse.created": WAREHOUSE,
    "cart-warehouse.updated": WAREHOUSE,
}
