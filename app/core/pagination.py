"""Opaque keyset cursors: the sort key of the last row, base64-encoded JSON."""

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import BadRequest
from app.core.timestamps import parse_timestamp

MAX_CURSOR_LENGTH = 2048
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class InvalidCursor(BadRequest):
    pass


def encode_cursor(*parts: str | int) -> str:
    raw = json.dumps(list(parts), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, length: int) -> list[Any]:
    """The cursor's parts; `InvalidCursor` (400) for anything this API did not issue."""
    if len(token) > MAX_CURSOR_LENGTH:
        raise InvalidCursor("The cursor is not valid.")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidCursor("The cursor is not valid.") from None
    if not isinstance(parts, list) or len(parts) != length:
        raise InvalidCursor("The cursor is not valid.")
    if not all(_is_cursor_part(part) for part in parts):
        raise InvalidCursor("The cursor is not valid.")
    return parts


def _is_cursor_part(part: Any) -> bool:
    """A value this API could have put in a cursor and a database can compare:
    no booleans, 64-bit integers, and text without NUL or lone surrogates."""
    if isinstance(part, bool):
        return False
    if isinstance(part, int):
        return INT64_MIN <= part <= INT64_MAX
    if isinstance(part, str):
        return "\x00" not in part and _encodable(part)
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ChangeFeedRecord(Protocol):
    changed_at: datetime
    connection_id: str
    id: str


R = TypeVar("R", bound=ChangeFeedRecord)


async def fetch_change_page(
    session: AsyncSession,
    statement: Select[R],
    entity: type[R],
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[R], str | None]:
    """One page of records in the order this service last changed them.

    Keyed on (changed_at, connection_id, id): a record changed while a client
    pages moves to the end and is seen again, never skipped.
    """
    columns: list[Any] = [entity.changed_at, entity.connection_id, entity.id]
    if cursor is not None:
        changed_at, connection_id, record_id = decode_cursor(cursor, length=3)
        try:
            after = (parse_timestamp(changed_at), str(connection_id), str(record_id))
        except ValueError:
            raise InvalidCursor("The cursor is not valid.") from None
        statement = statement.where(tuple_(*columns) > tuple_(*after))
    statement = statement.order_by(*columns).limit(limit + 1)
    records = list((await session.scalars(statement)).all())
    if len(records) <= limit:
        return records, None
    records = records[:limit]
    last = records[-1]
    return records, encode_cursor(
        last.changed_at.isoformat(), last.connection_id, last.id
    )
