"""The one timestamp parser: every date-time the service reads goes through it."""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

# Real timestamps are far shorter; this only stops pathological input early.
MAX_TIMESTAMP_LENGTH = 64


def parse_timestamp(value: Any) -> datetime:
    """Parse ISO 8601 into an aware UTC datetime.

    Accepts `Z`, numeric offsets, fractions of any length (truncated to
    microseconds), values without seconds, and values without a zone, which are
    taken to be UTC. Raises `ValueError` for anything else.
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and len(value) <= MAX_TIMESTAMP_LENGTH:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 date-time: {value!r}") from None
    else:
        raise ValueError("expected an ISO 8601 date-time string")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"date-time out of range: {value!r}") from None


def format_timestamp(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ`, the form Trackstar's date filters take."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


UTCTimestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]
