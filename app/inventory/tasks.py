"""Delivery of inventory adjustments: what Trackstar's answer changes here."""

from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import ConnectionCredentials
from app.outbox.service import ClaimedMessage
from app.products.service import store_products
from app.trackstar.client import TrackstarClient
from app.trackstar.schemas import TrackstarProduct

log = structlog.get_logger(__name__)


class InventoryAdjustmentDelivery:
    async def find_applied(
        self,
        client: TrackstarClient,  # noqa: ARG002 (part of the handler protocol)
        credentials: ConnectionCredentials,  # noqa: ARG002
        message: ClaimedMessage,  # noqa: ARG002
    ) -> Any | None:
        # NOTE: a delta cannot be recognised by reading the product back (sales
        # move stock too), so a retry after an unknown outcome relies on the
        # Idempotency-Key alone. Trackstar replays a key's success for 24 h,
        # which covers every retry (OUTBOX_MAX_AGE defaults to 24 h); it frees a
        # key whose first use errored, so a 5xx that the cart nevertheless
        # applied could be applied twice. Documented in README's forwarding part.
        return None

    async def on_delivered(
        self, session: AsyncSession, message: ClaimedMessage, data: Any
    ) -> dict[str, Any]:
        try:
            product = TrackstarProduct.model_validate(data)
        except ValidationError:
            log.warning(
                "inventory.unreadable_product_in_response",
                message_id=message.id,
                connection_id=message.connection_id,
            )
            return {"product_updated": False}
        stored = await store_products(
            session, connection_id=message.connection_id, products=[(product, data)]
        )
        return {"product_updated": bool(stored.applied), "inventory": product.inventory}
