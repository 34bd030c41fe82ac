"""The three kinds of cart record: how each is validated, stored and listed.

Webhook events and API pulls both go through these, so a record is stored the
same way whichever path brought it.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
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


class Resource(StrEnum):
    ORDERS = "orders"
    PRODUCTS = "products"
    WAREHOUSES = "warehouses"


@dataclass(frozen=True)
class ResourceSpec:
    resource: Resource
    model: type[TrackstarRecord]
    store: Store
    list_path: str

    def item_path(self, record_id: str) -> str:
        return f"{self.list_path}/{record_id}"


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


RESOURCES: dict[Resource, ResourceSpec] = {
    Resource.ORDERS: ResourceSpec(
        Resource.ORDERS, TrackstarOrder, _store_orders, "/cart/orders"
    ),
    Resource.PRODUCTS: ResourceSpec(
        Resource.PRODUCTS, TrackstarProduct, _store_products, "/cart/products"
    ),
    Resource.WAREHOUSES: ResourceSpec(
        Resource.WAREHOUSES, TrackstarWarehouse, _store_warehouses, "/cart/warehouses"
    ),
}
