"""Delivery of shipment messages: what Trackstar's answer changes here."""

import json
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import ConnectionCredentials
from app.orders.service import store_orders
from app.outbox.service import ClaimedMessage
from app.shipments.models import Shipment
from app.trackstar.client import TrackstarClient
from app.trackstar.schemas import TrackstarOrder

log = structlog.get_logger(__name__)


def _order_path(message: ClaimedMessage) -> str:
    return message.path.removesuffix("/shipments")


def _shipment_id(order: Any, tracking_number: str) -> str | None:
    if not isinstance(order, dict):
        return None
    for shipment in order.get("shipments") or []:
        if (
            isinstance(shipment, dict)
            and shipment.get("tracking_number") == tracking_number
        ):
            found = shipment.get("shipment_id")
            return str(found) if found is not None else ""
    return None


class ShipmentDelivery:
    """A shipment is recognisable at Trackstar by its tracking number, so after
    an attempt whose outcome is unknown the order is read back before sending
    again: Trackstar frees an Idempotency-Key whose first use errored, and a
    second send could create the shipment twice."""

    async def find_applied(
        self,
        client: TrackstarClient,
        credentials: ConnectionCredentials,
        message: ClaimedMessage,
    ) -> Any | None:
        tracking_number = json.loads(message.body)["tracking_number"]
        order = (await client.get(credentials, _order_path(message))).get("data")
        if _shipment_id(order, tracking_number) is None:
            return None
        return order

    async def on_delivered(
        self, session: AsyncSession, message: ClaimedMessage, data: Any
    ) -> dict[str, Any]:
        shipment = await session.get(Shipment, message.subject_id)
        assert shipment is not None
        shipment.trackstar_shipment_id = _shipment_id(data, shipment.tracking_number)
        order_updated = False
        try:
            order = TrackstarOrder.model_validate(data)
        except ValidationError:
            log.warning(
                "shipments.unreadable_order_in_response",
                shipment_id=shipment.id,
                order_id=shipment.order_id,
            )
        else:
            stored = await store_orders(
                session,
                connection_id=shipment.connection_id,
                orders=[(order, data)],
            )
            order_updated = bool(stored.applied)
        return {
            "trackstar_shipment_id": shipment.trackstar_shipment_id,
            "order_updated": order_updated,
        }
