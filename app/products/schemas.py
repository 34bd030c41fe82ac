from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

from app.core.schemas import FreeJSON, ReadModel


def _plain_decimal(value: Decimal) -> str:
    # str() would give exponent notation ("1E+2", "1E-7"), and SQLite and
    # Postgres store such amounts differently; always answer "100", "0.0000001".
    return format(value, "f")


# An amount as an exact decimal string, never in exponent notation.
Money = Annotated[
    Decimal, PlainSerializer(_plain_decimal, return_type=str, when_used="json")
]


class ProductRead(ReadModel):
    id: str
    connection_id: str
    name: str | None
    sku: str | None
    parent_product_id: str
    is_variant: bool = Field(description="Only variants carry price and inventory.")
    is_kit: bool
    active: bool
    price: Money | None
    unit_cost: Money | None
    inventory: int | None = Field(description="Null when the cart reported none.")
    inventory_by_warehouse_id: dict[str, int]
    tags: list[str]
    categories: list[str]
    gtin: str | None
    image_url: str | None
    measurements: dict[str, FreeJSON] | None
    external_system_url: str | None
    additional_fields: dict[str, FreeJSON]
    trackstar_tags: list[FreeJSON]
    created_date: datetime | None
    updated_date: datetime
    trackstar_created_date: datetime | None
    trackstar_updated_date: datetime | None
    changed_at: datetime


class ProductPage(BaseModel):
    data: list[ProductRead]
    next_cursor: str | None
