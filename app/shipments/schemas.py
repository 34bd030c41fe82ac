from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.core.schemas import FreeJSON, WriteRequest
from app.outbox.schemas import DeliveryRead, RequiredText

# Empty strings are accepted and left out of what is sent, like nulls.
Text = Annotated[str, StringConstraints(max_length=1000)]


class ShipmentCreate(WriteRequest):
    """A shipment as the warehouse sent it. Fields Trackstar's integrations
    need beyond these (`shop_id`, `shipping_cost`, `carrier_id`, …) are passed
    through as given; empty values are left out of what is sent."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "tracking_number": "1ZEXAMPLE0000000001",
                "tracking_url": "https://example.com/track/1ZEXAMPLE0000000001",
                "carrier_name": "UPS",
                "shipping_method_name": "Ground",
            }
        },
    )

    tracking_number: RequiredText
    tracking_url: Text | None = None
    carrier_name: Text | None = None
    shipping_method_name: Text | None = None
    requested_shipping_method: Text | None = None
    shipped_date: datetime | None = None
    warehouse_id: Annotated[str, StringConstraints(max_length=255)] | None = None
    line_items: list[dict[str, Any]] | None = Field(
        default=None, description="NuOrder (`product_sku`) and Walmart (`sku`)."
    )
    shipping_groups: list[dict[str, Any]] | None = Field(
        default=None, description="Shopify: `shipping_group_id` and line items."
    )


class ShipmentRead(DeliveryRead):
    id: int
    order_id: str
    connection_id: str
    tracking_number: str
    fields: dict[str, FreeJSON] = Field(description="The shipment as it was posted.")
    trackstar_shipment_id: str | None
    created_at: datetime


class ShipmentPage(BaseModel):
    data: list[ShipmentRead]
    next_cursor: str | None
