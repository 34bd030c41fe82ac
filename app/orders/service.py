"""Store orders from webhooks and pulls; read them for warehouse systems."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, delete, exists, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from app.core.errors import NotFound
from app.core.models import utcnow
from app.core.pagination import fetch_change_page
from app.core.scope import ConnectionScope, restrict
from app.core.upsert import StoreResult, upsert_versioned
from app.orders.models import Order, OrderLine
from app.trackstar.schemas import TrackstarOrder, TrackstarOrderStatus


class OrderNotFound(NotFound):
    pass


@dataclass(frozen=True)
class OrderFilters:
    scope: ConnectionScope = None
    status: TrackstarOrderStatus | None = None
    connection_id: str | None = None
    updated_since: datetime | None = None
    sku: str | None = None


def _order_row(
    connection_id: str, order: TrackstarOrder, record: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "id": order.id,
        "order_number": order.order_number or order.id,
        "status": order.status.value,
        "raw_status": order.raw_status,
        "requested_shipping_method": order.requested_shipping_method,
        "shipping_method_id": order.shipping_method_id,
        "shipping_method_name": order.shipping_method_name,
        "carrier_id": order.carrier_id,
        "carrier_name": order.carrier_name,
        "invoice_currency_code": order.invoice_currency_code,
        "total_price": order.total_price,
        "total_tax": order.total_tax,
        "total_discount": order.total_discount,
        "total_shipping": order.total_shipping,
        "ship_to_address": _dump(order.ship_to_address),
        "bill_to_address": _dump(order.bill_to_address),
        "earliest_ship_date": order.earliest_ship_date,
        "latest_ship_date": order.latest_ship_date,
        "shipping_groups": [_dump(group) for group in order.shipping_groups],
        "shipments": [_dump(shipment) for shipment in order.shipments],
        "external_system_url": order.external_system_url,
        "additional_fields": order.additional_fields,
        "trackstar_tags": order.trackstar_tags,
        "created_date": order.created_date,
        "updated_date": order.updated_date,
        "trackstar_created_date": order.trackstar_created_date,
        "trackstar_updated_date": order.trackstar_updated_date,
        "record": record,
        "changed_at": now,
    }


def _dump(model: Any) -> Any:
    # Python mode keeps amounts as Decimal: stored as exact JSON numbers.
    return None if model is None else model.model_dump()


def _line_rows(connection_id: str, order: TrackstarOrder) -> list[dict[str, Any]]:
    # A line id repeated within one order keeps its last occurrence.
    lines = {line.line_item_id: line for line in order.line_items}
    positions = {line.line_item_id: i for i, line in enumerate(order.line_items)}
    return [
        {
            "connection_id": connection_id,
            "order_id": order.id,
            "line_item_id": line.line_item_id,
            "position": positions[line.line_item_id],
            "product_id": line.product_id,
            "product_sku": line.product_sku,
            "parent_product_id": line.parent_product_id,
            "parent_product_sku": line.parent_product_sku,
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "discount": line.discount,
            "tax": line.tax,
        }
        for line in lines.values()
    ]


async def store_orders(
    session: AsyncSession,
    *,
    connection_id: str,
    orders: Sequence[tuple[TrackstarOrder, dict[str, Any]]],
) -> StoreResult:
    """Upsert orders with their lines; an order older than the stored one is skipped."""
    now = utcnow()
    rows = [_order_row(connection_id, order, record, now) for order, record in orders]
    applied = await upsert_versioned(session, Order, rows)
    written = [order for order, _ in orders if (connection_id, order.id) in applied]
    if written:
        await _replace_lines(session, connection_id, written)
    stale = {(connection_id, order.id) for order, _ in orders} - applied
    return StoreResult(applied=applied, stale=stale)


_LINES = cast(Table, OrderLine.__table__)
# Built once: the ids are bound at execution (an expanding IN).
_DELETE_LINES = delete(_LINES).where(
    _LINES.c.connection_id == bindparam("connection_id"),
    _LINES.c.order_id.in_(bindparam("order_ids", expanding=True)),
)
_INSERT_LINES = insert(_LINES)


async def _replace_lines(
    session: AsyncSession, connection_id: str, orders: Sequence[TrackstarOrder]
) -> None:
    latest = {order.id: order for order in orders}
    await session.execute(
        _DELETE_LINES, {"connection_id": connection_id, "order_ids": sorted(latest)}
    )
    line_rows = [
        row for order in latest.values() for row in _line_rows(connection_id, order)
    ]
    if line_rows:
        # Core executemany on the table: batched, without ORM bookkeeping.
        await session.execute(_INSERT_LINES, line_rows)


def _filtered(filters: OrderFilters) -> Select[Order]:
    statement = restrict(select(Order), Order.connection_id, filters.scope)
    if filters.status is not None:
        statement = statement.where(Order.status == filters.status.value)
    if filters.connection_id is not None:
        statement = statement.where(Order.connection_id == filters.connection_id)
    if filters.updated_since is not None:
        statement = statement.where(Order.changed_at >= filters.updated_since)
    if filters.sku is not None:
        statement = statement.where(
            exists().where(
                OrderLine.connection_id == Order.connection_id,
                OrderLine.order_id == Order.id,
                OrderLine.product_sku == filters.sku,
            )
        )
    return statement


async def list_orders(
    session: AsyncSession,
    *,
    filters: OrderFilters,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[Order], str | None]:
    statement = _filtered(filters).options(selectinload(Order.lines))
    return await fetch_change_page(
        session, statement, Order, limit=limit, cursor=cursor
    )


async def get_order(
    session: AsyncSession, order_id: str, *, scope: ConnectionScope = None
) -> Order:
    statement = (
        restrict(select(Order), Order.connection_id, scope)
        .where(Order.id == order_id)
        .options(selectinload(Order.lines))
        .order_by(Order.connection_id)
        .limit(1)
    )
    order = await session.scalar(statement)
    if order is None:
        raise OrderNotFound(f"No order with id {order_id!r}.")
    return order
