"""Trackstar's records as the service reads them, from webhooks and the API.

Validation is tolerant where Trackstar's documentation has changed (nullable
ids, renamed fields, new fields) and strict where a wrong value would be
stored as truth (enums, numbers, timestamps). Unknown fields are allowed; the
raw record is kept beside the typed columns.
"""

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from app.core.timestamps import UTCTimestamp

T = TypeVar("T")

# Ids and SKUs are indexed; Postgres cannot index arbitrarily long keys.
MAX_ID_LENGTH = 255
# Larger amounts are not prices; they are corrupt or hostile input.
MAX_MONEY = Decimal(10) ** 15
MIN_MONEY_EXPONENT = -12
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

TrackstarId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)]
Sku = Annotated[str, StringConstraints(max_length=MAX_ID_LENGTH)]
Quantity = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]


def _none_as_empty_list(value: Any) -> Any:
    return [] if value is None else value


def _none_as_empty_dict(value: Any) -> Any:
    return {} if value is None else value


def _check_money(value: Decimal) -> Decimal:
    if not value.is_finite():
        raise ValueError("amount must be a finite number")
    if abs(value) >= MAX_MONEY:
        raise ValueError("amount is out of range")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < MIN_MONEY_EXPONENT:
        raise ValueError("amount has too many decimal places")
    return value


MoneyAmount = Annotated[Decimal, AfterValidator(_check_money)]
List = Annotated[list[T], BeforeValidator(_none_as_empty_list)]
Object = Annotated[dict[str, Any], BeforeValidator(_none_as_empty_dict)]


class TrackstarModel(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class TrackstarOrderStatus(StrEnum):
    OPEN = "open"
    CONFIRMED = "confirmed"
    PROCESSING = "processing"
    PARTIALLY_FULFILLED = "partially_fulfilled"
    FULFILLED = "fulfilled"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"
    BACKORDERED = "backordered"
    OTHER = "other"


class TrackstarFulfillmentStatus(StrEnum):
    """Status of a shipping group or a shipment."""

    OPEN = "open"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    EXCEPTION = "exception"
    ON_HOLD = "on_hold"
    OTHER = "other"


class TrackstarAddressLines(TrackstarModel):
    """The lines of a postal address; Trackstar sends every key, values or null."""

    address1: str | None = None
    address2: str | None = None
    address3: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None


class TrackstarBillToAddress(TrackstarAddressLines):
    full_name: str | None = None


class TrackstarShipToAddress(TrackstarBillToAddress):
    company: str | None = None
    phone_number: str | None = None
    email_address: str | None = None


class TrackstarLineItem(TrackstarModel):
    line_item_id: TrackstarId
    product_id: TrackstarId | None = None
    product_sku: Sku | None = None
    parent_product_id: TrackstarId | None = None
    parent_product_sku: Sku | None = None
    quantity: Quantity
    unit_price: MoneyAmount | None = None
    discount: MoneyAmount | None = None
    tax: MoneyAmount | None = None


class TrackstarShippingGroup(TrackstarModel):
    shipping_group_id: TrackstarId
    status: TrackstarFulfillmentStatus | None = None
    raw_status: str | None = None
    warehouse_id: str | None = None
    created_date: UTCTimestamp | None = None
    updated_date: UTCTimestamp | None = None
    line_items: List[Object] = []


def _rename_legacy_shipment_fields(data: Any) -> Any:
    # Older documentation named these `carrier` and `shipping_method`.
    if isinstance(data, dict):
        data = dict(data)
        if data.get("carrier_name") is None and "carrier" in data:
            data["carrier_name"] = data["carrier"]
        if data.get("shipping_method_name") is None and "shipping_method" in data:
            data["shipping_method_name"] = data["shipping_method"]
    return data


class TrackstarShipment(TrackstarModel):
    shipment_id: TrackstarId
    status: TrackstarFulfillmentStatus | None = None
    raw_status: str | None = None
    warehouse_id: str | None = None
    carrier_id: str | None = None
    carrier_name: str | None = None
    shipping_method_id: str | None = None
    shipping_method_name: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    line_items: List[Object] = []
    shipping_groups: List[str] = []
    created_date: UTCTimestamp | None = None
    updated_date: UTCTimestamp | None = None

    _legacy_names = model_validator(mode="before")(_rename_legacy_shipment_fields)


class TrackstarRecord(TrackstarModel):
    """Fields every cart record shares, including the version used for ordering."""

    id: TrackstarId
    created_date: UTCTimestamp | None = None
    updated_date: UTCTimestamp
    trackstar_created_date: UTCTimestamp | None = None
    trackstar_updated_date: UTCTimestamp | None = None


class TrackstarOrder(TrackstarRecord):
    order_number: str | None = None
    status: TrackstarOrderStatus
    raw_status: str | None = None
    requested_shipping_method: str | None = None
    shipping_method_id: str | None = None
    shipping_method_name: str | None = None
    carrier_id: str | None = None
    carrier_name: str | None = None
    invoice_currency_code: Annotated[
        str, StringConstraints(min_length=1, max_length=16)
    ] = "USD"
    total_price: MoneyAmount | None = None
    total_tax: MoneyAmount | None = None
    total_discount: MoneyAmount | None = None
    total_shipping: MoneyAmount | None = None
    ship_to_address: TrackstarShipToAddress | None = None
    bill_to_address: TrackstarBillToAddress | None = None
    earliest_ship_date: UTCTimestamp | None = None
    latest_ship_date: UTCTimestamp | None = None
    line_items: List[TrackstarLineItem] = []
    shipping_groups: List[TrackstarShippingGroup] = []
    shipments: List[TrackstarShipment] = []
    external_system_url: str | None = None
    additional_fields: Object = {}
    trackstar_tags: List[Any] = []

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        # Older documentation used `shipping_method` for the method's name.
        if isinstance(data, dict) and data.get("shipping_method_name") is None:
            if "shipping_method" in data:
                data = {**data, "shipping_method_name": data["shipping_method"]}
        if isinstance(data, dict) and data.get("invoice_currency_code") is None:
            data = {**data, "invoice_currency_code": "USD"}
        return data


class TrackstarMeasurements(TrackstarModel):
    length: MoneyAmount | None = None
    width: MoneyAmount | None = None
    height: MoneyAmount | None = None
    unit: str | None = None
    weight: MoneyAmount | None = None
    weight_unit: str | None = None


class TrackstarProduct(TrackstarRecord):
    name: str | None = None
    sku: Sku | None = None
    parent_product_id: TrackstarId | None = None
    is_kit: bool = False
    active: bool = True
    price: MoneyAmount | None = None
    unit_cost: MoneyAmount | None = None
    inventory: Quantity | None = None
    inventory_by_warehouse_id: Annotated[
        dict[TrackstarId, Quantity], BeforeValidator(_none_as_empty_dict)
    ] = {}
    tags: List[str] = []
    categories: List[str] = []
    gtin: str | None = None
    image_url: str | None = None
    measurements: TrackstarMeasurements | None = None
    external_system_url: str | None = None
    additional_fields: Object = {}
    trackstar_tags: List[Any] = []

    @property
    def is_variant(self) -> bool:
        """A parent names itself as its parent; a product naming none is one too."""
        return self.parent_product_id not in (None, self.id)


class TrackstarWarehouse(TrackstarRecord):
    name: str | None = None
    code: str | None = None
    address: TrackstarAddressLines | None = None


class TrackstarWebhookEnvelope(TrackstarModel):
    """The body of every Trackstar webhook; its identity is the `svix-id` header."""

    connection_id: TrackstarId
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    integration_name: Annotated[str, StringConstraints(max_length=100)] | None = None
    integration_type: str | None = None
    data: dict[str, Any]
    # Old values of changed fields only, as dotted paths: diagnostics, not state.
    previous_attributes: dict[str, Any] | None = None
    data_truncated: bool = False
    data_url: str | None = None
