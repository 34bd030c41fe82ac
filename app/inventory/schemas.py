from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.core.schemas import FreeJSON, WriteRequest
from app.outbox.schemas import DeliveryRead, RequiredText
from app.trackstar.schemas import INT32_MAX


class AdjustmentType(StrEnum):
    INCREASE = "increase"
    DECREASE = "decrease"
    EXACT = "exact"


class InventoryAdjustmentCreate(WriteRequest):
    """A change of stock for one variant at one cart warehouse. Fields some
    integrations need beyond these (`shop_id`, …) are passed through as given."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "example": {
                "quantity": 3,
                "adjustment_type": "decrease",
                "warehouse_id": "wh_4c8e2a6f0b1d4f97",
                "reason": "damaged",
            }
        },
    )

    # Strict: `true` or "3" is refused, not converted.
    quantity: int = Field(strict=True, ge=0, le=INT32_MAX)
    adjustment_type: AdjustmentType = Field(
        description="`increase` or `decrease` by quantity, or `exact`: stock "
        "becomes quantity (0 is a real stock-out)."
    )
    warehouse_id: RequiredText
    reason: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = (
        None
    )


class InventoryAdjustmentRead(DeliveryRead):
    id: int
    product_id: str
    connection_id: str
    warehouse_id: str
    adjustment_type: AdjustmentType
    quantity: int
    reason: str | None
    fields: dict[str, FreeJSON] = Field(description="The adjustment as it was posted.")
    created_at: datetime


class InventoryAdjustmentPage(BaseModel):
    data: list[InventoryAdjustmentRead]
    next_cursor: str | None
