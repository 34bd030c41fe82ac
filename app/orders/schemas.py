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


class OrderLineRead(ReadModel):
    line_item_id: str
    product_id: str | None
    product_sku: str | None
    parent_product_id: str | None
    parent_product_sku: str | None
    quantity: int
    unit_price: Money | None = Field(description="Per unit, as a decimal string.")
    discount: Money | None = Field(description="Per unit.")
    tax: Money | None = Field(description="Per unit.")


class OrderRead(ReadModel):
    id: str
    connection_id: str
    order_number: str | None
    status: str
    raw_status: str | None
    requested_shipping_method: str | None
    shipping_method_id: str | None
    shipping_method_name: str | None
    carrier_id: str | None
    carrier_name: str | None
    invoice_currency_code: str = Field(description="Currency of every amount.")
    total_price: Money | None
    total_tax: Money | None
    total_discount: Money | None
    total_shipping: Money | None
    ship_to_address: dict[str, str | None] | None
    bill_to_address: dict[str, str | None] | None
    earliest_ship_date: datetime | None
    latest_ship_date: datetime | None
    line_items: list[OrderLineRead] = Field(validation_alias="lines")
    shipping_groups: list[FreeJSON]
    shipments: list[FreeJSON]
    external_system_url: str | None
    additional_fields: dict[str, FreeJSON]
    trackstar_tags: list[FreeJSON]
    created_date: datetime | None
    updated_date: datetime
    trackstar_created_date: datetime | None
    trackstar_updated_date: datetime | None
    changed_at: datetime = Field(
        description="When this service last changed the order; the page order."
    )


class OrderPage(BaseModel):
    data: list[OrderRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )
