"""Store products from webhooks and pulls; read them for warehouse systems."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.models import utcnow
from app.core.pagination import fetch_change_page
from app.core.scope import ConnectionScope, restrict
from app.core.upsert import StoreResult, upsert_versioned
from app.products.models import Product
from app.trackstar.schemas import TrackstarProduct


class ProductNotFound(NotFound):
    pass


@dataclass(frozen=True)
class ProductFilters:
    scope: ConnectionScope = None
    sku: str | None = None
    connection_id: str | None = None
    variants_only: bool = False


def _product_row(
    connection_id: str, product: TrackstarProduct, record: dict[str, Any], now: datetime
) -> dict[str, Any]:
    is_variant = product.is_variant
    return {
        "connection_id": connection_id,
        "id": product.id,
        "name": product.name,
        "sku": product.sku,
        "parent_product_id": product.parent_product_id or product.id,
        "is_variant": is_variant,
        "is_kit": product.is_kit,
        "active": product.active,
        # A parent may carry price and stock, but only variants are authoritative.
        "price": product.price if is_variant else None,
        "unit_cost": product.unit_cost if is_variant else None,
        "inventory": product.inventory if is_variant else None,
        "inventory_by_warehouse_id": (
            product.inventory_by_warehouse_id if is_variant else {}
        ),
        "tags": product.tags,
        "categories": product.categories,
        "gtin": product.gtin,
        "image_url": product.image_url,
        "measurements": (
            product.measurements.model_dump()
            if product.measurements is not None
            else None
        ),
        "external_system_url": product.external_system_url,
        "additional_fields": product.additional_fields,
        "trackstar_tags": product.trackstar_tags,
        "created_date": product.created_date,
        "updated_date": product.updated_date,
        "trackstar_created_date": product.trackstar_created_date,
        "trackstar_updated_date": product.trackstar_updated_date,
        "record": record,
        "changed_at": now,
    }


async def store_products(
    session: AsyncSession,
    *,
    connection_id: str,
    products: Sequence[tuple[TrackstarProduct, dict[str, Any]]],
) -> StoreResult:
    """Upsert products; a product older than the stored one is skipped."""
    now = utcnow()
    rows = [_product_row(connection_id, item, record, now) for item, record in products]
    applied = await upsert_versioned(session, Product, rows)
    stale = {(connection_id, product.id) for product, _ in products} - applied
    return StoreResult(applied=applied, stale=stale)


async def list_products(
    session: AsyncSession,
    *,
    filters: ProductFilters,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[Product], str | None]:
    statement = restrict(select(Product), Product.connection_id, filters.scope)
    if filters.sku is not None:
        statement = statement.where(Product.sku == filters.sku)
    if filters.connection_id is not None:
        statement = statement.where(Product.connection_id == filters.connection_id)
    if filters.variants_only:
        statement = statement.where(Product.is_variant.is_(True))
    return await fetch_change_page(
        session, statement, Product, limit=limit, cursor=cursor
    )


async def get_product(
    session: AsyncSession, product_id: str, *, scope: ConnectionScope = None
) -> Product:
    statement = (
        restrict(select(Product), Product.connection_id, scope)
        .where(Product.id == product_id)
        .order_by(Product.connection_id)
        .limit(1)
    )
    product = await session.scalar(statement)
    if product is None:
        raise ProductNotFound(f"No product with id {product_id!r}.")
    return product
