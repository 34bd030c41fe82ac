"""Pieces shared by the API schemas of every domain."""

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer


def _numbers_for_json(value: Any) -> Any:
    # Stored JSON is read with exact decimals; free-form fields go back out as
    # JSON numbers, as the cart sent them.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _numbers_for_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_for_json(item) for item in value]
    return value


# Free-form JSON from the cart (additional fields, tags, raw shipments).
FreeJSON = Annotated[Any, PlainSerializer(_numbers_for_json, when_used="json")]


class ReadModel(BaseModel):
    """Base of every response schema: built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)
