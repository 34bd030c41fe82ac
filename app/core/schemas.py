"""Pieces shared by the API schemas of every domain."""

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, model_validator

from app.core.text import find_unstorable_text


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


class WriteRequest(BaseModel):
    """Base of request bodies that are stored: text the database cannot hold
    is refused with a 422 instead of failing in the database."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        problem = find_unstorable_text(data, path="body")
        if problem is not None:
            raise ValueError(problem)
        return data
