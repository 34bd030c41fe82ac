"""Record verified deliveries and apply them, exactly once per Svix message id.

One transaction inserts the event (unique on the message id) and applies it,
so a delivery is either fully stored and applied or not at all, and a second
copy, even one arriving at the same instant, waits for the first and is
recorded as a duplicate that changes nothing.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from app.connections.models import Connection
from app.core.db import dialect_insert
from app.core.errors import NotFound
from app.core.models import utcnow
from app.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.core.text import find_unstorable_text, json_may_hold_unstorable_text
from app.sync.resources import ResourceSpec
from app.sync.service import request_pull
from app.trackstar.schemas import TrackstarRecord, TrackstarWebhookEnvelope
from app.webhooks.handlers import (
    HANDLERS,
    HISTORICAL_RESOURCES,
    HISTORICAL_SYNC_COMPLETED,
)
from app.webhooks.models import EventStatus, WebhookEvent
from app.webhooks.verification import VerifiedDelivery

MAX_REASON_ERRORS = 3


class WebhookEventNotFound(NotFound):
    pass


@dataclass(frozen=True)
class ParsedDelivery:
    """A verified body, classified before anything is written."""

    envelope: TrackstarWebhookEnvelope | None = None
    record: TrackstarRecord | None = None
    handler: ResourceSpec | None = None
    quarantine_reason: str | None = None
    # Oversized event: `data` holds only the id; the record is fetched later.
    truncated: bool = False


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: int
    status: EventStatus
    event_type: str | None
    connection_id: str | None
    record_id: str | None
    reason: str | None = None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _describe(error: ValidationError, prefix: str) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False)[
        :MAX_REASON_ERRORS
    ]:
        location = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


def parse_delivery(body: bytes) -> ParsedDelivery:
    """Classify a verified body: a known event with a valid record, an event
    type to ignore, or something to quarantine with the reason why."""
    try:
        payload = json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except RecursionError:
        return ParsedDelivery(quarantine_reason="body is nested too deeply")
    except ValueError as error:
        return ParsedDelivery(quarantine_reason=f"body is not JSON: {error}"[:300])
    if not isinstance(payload, dict):
        return ParsedDelivery(quarantine_reason="body is not a JSON object")
    if json_may_hold_unstorable_text(body):
        unstorable = find_unstorable_text(payload)
        if unstorable is not None:
            return ParsedDelivery(quarantine_reason=unstorable)
    try:
        envelope = TrackstarWebhookEnvelope.model_validate(payload)
    except ValidationError as error:
        return ParsedDelivery(quarantine_reason=_describe(error, ""))
    handler = HANDLERS.get(envelope.event_type)
    if handler is None:
        return ParsedDelivery(envelope=envelope)
    if envelope.data_truncated:
        if not envelope.data_url and not isinstance(envelope.data.get("id"), str):
            reason = "truncated event carries neither data_url nor data.id"
            return ParsedDelivery(envelope=envelope, quarantine_reason=reason)
        return ParsedDelivery(envelope=envelope, handler=handler, truncated=True)
    try:
        record = handler.model.model_validate(envelope.data)
    except ValidationError as error:
        reason = _describe(error, "data")
        return ParsedDelivery(envelope=envelope, quarantine_reason=reason)
    return ParsedDelivery(envelope=envelope, record=record, handler=handler)


async def record_delivery(
    session: AsyncSession, *, delivery: VerifiedDelivery, body: bytes
) -> ReceivedEvent:
    """Store a verified delivery and apply it; a repeated message id does nothing."""
    parsed = parse_delivery(body)
    envelope = parsed.envelope
    status, reason = _initial_status(parsed)
    record_id = _record_id(parsed)
    values: dict[str, Any] = {
        "message_id": delivery.message_id,
        "dedupe_key": delivery.message_id,
        "status": status,
        "reason": reason,
        "event_type": envelope.event_type if envelope else None,
        "connection_id": envelope.connection_id if envelope else None,
        "integration_name": envelope.integration_name if envelope else None,
        "record_id": record_id,
        "body": body,
        "signed_at": delivery.signed_at,
        "received_at": utcnow(),
        "attempts": 0,
        "next_attempt_at": utcnow() if status is EventStatus.PENDING else None,
    }
    statement = _insert_new_event(session.get_bind().dialect.name)
    event_id = await session.scalar(statement, values)
    if event_id is None:
        return await _record_duplicate(session, values)

    outcome = await _apply(session, parsed)
    if outcome is not None:
        status, reason = outcome
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event_id)
            .values(status=status, reason=reason)
        )
    return ReceivedEvent(
        event_id=event_id,
        status=status,
        event_type=envelope.event_type if envelope else None,
        connection_id=envelope.connection_id if envelope else None,
        record_id=record_id,
        reason=reason,
    )


@cache
def _insert_new_event(dialect: str) -> ReturningInsert[int]:
    """INSERT of an event unless its message id is already stored; built once
    per dialect, the values bound at execution."""
    return (
        dialect_insert(dialect, WebhookEvent)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(WebhookEvent.id)
    )


def _initial_status(parsed: ParsedDelivery) -> tuple[EventStatus, str | None]:
    if parsed.quarantine_reason is not None:
        return EventStatus.QUARANTINED, parsed.quarantine_reason
    if parsed.truncated:
        return EventStatus.PENDING, "data truncated; fetching the full record"
    if parsed.handler is not None:
        return EventStatus.PROCESSED, None
    if parsed.envelope and parsed.envelope.event_type == HISTORICAL_SYNC_COMPLETED:
        return EventStatus.PROCESSED, None
    return EventStatus.IGNORED, "event type is not handled"


async def _apply(
    session: AsyncSession, parsed: ParsedDelivery
) -> tuple[EventStatus, str] | None:
    """Apply the event; a changed status and reason, or None if it stands."""
    envelope = parsed.envelope
    if envelope is None:
        return None
    if parsed.handler is not None and parsed.record is not None:
        result = await parsed.handler.store(
            session, envelope.connection_id, [(parsed.record, envelope.data)]
        )
        if not result.applied:
            return EventStatus.STALE, "a newer version is stored"
        return None
    if envelope.event_type == HISTORICAL_SYNC_COMPLETED:
        return await _request_seed_pull(session, envelope)
    return None


async def _request_seed_pull(
    session: AsyncSession, envelope: TrackstarWebhookEnvelope
) -> tuple[EventStatus, str]:
    """Initial syncs send no record events: pull the resource once instead."""
    resource = HISTORICAL_RESOURCES.get(str(envelope.data.get("resource", "")).lower())
    if resource is None:
        return EventStatus.IGNORED, "historical sync of a resource not stored here"
    if await session.get(Connection, envelope.connection_id) is None:
        return EventStatus.IGNORED, "connection has no access token here"
    await request_pull(
        session, connection_id=envelope.connection_id, resources=[resource]
    )
    return EventStatus.PROCESSED, f"full pull of {resource.value} requested"


def _record_id(parsed: ParsedDelivery) -> str | None:
    if parsed.record is not None:
        return parsed.record.id
    if parsed.envelope is not None:
        candidate = parsed.envelope.data.get("id")
        if isinstance(candidate, str) and len(candidate) <= 255:
            return candidate
    return None


async def _record_duplicate(
    session: AsyncSession, values: dict[str, Any]
) -> ReceivedEvent:
    original_id = await session.scalar(
        select(WebhookEvent.id).where(WebhookEvent.dedupe_key == values["dedupe_key"])
    )
    duplicate = WebhookEvent(
        **{
            **values,
            "dedupe_key": None,
            "duplicate_of_id": original_id,
            "status": EventStatus.DUPLICATE,
            "reason": f"message already received as event {original_id}",
            "body": None,
        }
    )
    session.add(duplicate)
    await session.flush()
    return ReceivedEvent(
        event_id=duplicate.id,
        status=EventStatus.DUPLICATE,
        event_type=values["event_type"],
        connection_id=values["connection_id"],
        record_id=values["record_id"],
        reason=duplicate.reason,
    )


async def quarantine_unprocessable(
    session: AsyncSession, *, delivery: VerifiedDelivery, body: bytes, reason: str
) -> ReceivedEvent:
    """Keep a delivery whose processing failed unexpectedly, so it is not lost."""
    values: dict[str, Any] = {
        "message_id": delivery.message_id,
        "dedupe_key": delivery.message_id,
        "status": EventStatus.QUARANTINED,
        "reason": reason,
        "body": body,
        "signed_at": delivery.signed_at,
        "received_at": utcnow(),
    }
    statement = _insert_new_event(session.get_bind().dialect.name)
    event_id = await session.scalar(statement, values)
    if event_id is None:
        return await _record_duplicate(
            session,
            {**values, "event_type": None, "connection_id": None, "record_id": None},
        )
    return ReceivedEvent(
        event_id=event_id,
        status=EventStatus.QUARANTINED,
        event_type=None,
        connection_id=None,
        record_id=None,
        reason=reason,
    )


async def list_events(
    session: AsyncSession,
    *,
    status: EventStatus | None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[WebhookEvent], str | None]:
    """Events newest first."""
    statement = select(WebhookEvent)
    if status is not None:
        statement = statement.where(WebhookEvent.status == status)
    if cursor is not None:
        (before,) = decode_cursor(cursor, length=1)
        if not isinstance(before, int):
            raise InvalidCursor("The cursor is not valid.")
        statement = statement.where(WebhookEvent.id < before)
    statement = statement.order_by(WebhookEvent.id.desc()).limit(limit + 1)
    events = list((await session.scalars(statement)).all())
    if len(events) <= limit:
        return events, None
    events = events[:limit]
    return events, encode_cursor(events[-1].id)


async def get_event(session: AsyncSession, event_id: int) -> WebhookEvent:
    event = await session.get(WebhookEvent, event_id)
    if event is None:
        raise WebhookEventNotFound(f"No webhook event with id {event_id}.")
    return event


async def purge_events(session: AsyncSession, *, older_than: datetime) -> int:
    """Forget events received before `older_than`; returns how many."""
    result = await session.execute(
        delete(WebhookEvent).where(WebhookEvent.received_at < older_than)
    )
    return int(getattr(result, "rowcount", 0) or 0)
