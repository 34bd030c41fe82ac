"""Record verified deliveries and apply them, exactly once per Svix message id.

One transaction inserts the event (unique on the message id) and applies it,
so a delivery is either fully stored and applied or not at all, and a second
copy, even one arriving at the same instant, waits for the first and is
recorded as a duplicate that changes nothing. Under load one transaction
carries several unrelated deliveries (`record_deliveries`, fed by
`app.webhooks.batching`); each still gets the outcome it would have had alone.
"""

import json
from collections import defaultdict
from collections.abc import Sequence
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


@dataclass(frozen=True)
class Delivery:
    """A verified delivery, parsed, waiting to be recorded."""

    verified: VerifiedDelivery
    body: bytes
    parsed: ParsedDelivery

    @property
    def message_id(self) -> str:
        return self.verified.message_id

    @property
    def record_key(self) -> tuple[str, str, str] | None:
        """The stored record this delivery writes, if it writes one."""
        parsed = self.parsed
        if parsed.handler is None or parsed.record is None or parsed.envelope is None:
            return None
        return (
            parsed.handler.resource.value,
            parsed.envelope.connection_id,
            parsed.record.id,
        )


def prepare_delivery(delivery: VerifiedDelivery, body: bytes) -> Delivery:
    return Delivery(verified=delivery, body=body, parsed=parse_delivery(body))


async def record_delivery(
    session: AsyncSession, *, delivery: VerifiedDelivery, body: bytes
) -> ReceivedEvent:
    """Store a verified delivery and apply it; a repeated message id does nothing."""
    [received] = await record_deliveries(session, [prepare_delivery(delivery, body)])
    return received


async def record_deliveries(
    session: AsyncSession, deliveries: Sequence[Delivery]
) -> list[ReceivedEvent]:
    """Store and apply several deliveries in one transaction, with the outcome
    each would have had alone; results in the order given.

    The message ids must be distinct, and so must the records written (see
    `Delivery.record_key`): then no delivery depends on another, and recording
    them together is the same as recording them one after another.
    """
    rows = [_event_values(delivery) for delivery in deliveries]
    dialect = session.get_bind().dialect.name
    # Sorted by message id, so that concurrent batches (other processes) that
    # share ids lock them in the same order and cannot deadlock.
    new_rows = sorted(rows, key=lambda row: row["dedupe_key"])
    inserted = await session.execute(
        _insert_new_event(dialect), new_rows[0] if len(new_rows) == 1 else new_rows
    )
    event_ids = {key: event_id for event_id, key in inserted if key is not None}

    received: dict[int, ReceivedEvent] = {}
    repeated = [i for i, row in enumerate(rows) if row["dedupe_key"] not in event_ids]
    if repeated:
        recorded = await _record_duplicates(session, [rows[i] for i in repeated])
        received.update(zip(repeated, recorded, strict=True))

    new = [i for i in range(len(rows)) if i not in received]
    outcomes = {i: (rows[i]["status"], rows[i]["reason"]) for i in new}
    outcomes |= await _apply_all(session, deliveries, new)
    await _update_statuses(
        session,
        {
            event_ids[rows[i]["dedupe_key"]]: outcome
            for i, outcome in outcomes.items()
            if outcome != (rows[i]["status"], rows[i]["reason"])
        },
    )
    for i, (status, reason) in outcomes.items():
        row = rows[i]
        received[i] = ReceivedEvent(
            event_id=event_ids[row["dedupe_key"]],
            status=status,
            event_type=row["event_type"],
            connection_id=row["connection_id"],
            record_id=row["record_id"],
            reason=reason,
        )
    return [received[i] for i in range(len(rows))]


def _event_values(delivery: Delivery) -> dict[str, Any]:
    parsed = delivery.parsed
    envelope = parsed.envelope
    status, reason = _initial_status(parsed)
    now = utcnow()
    return {
        "message_id": delivery.message_id,
        "dedupe_key": delivery.message_id,
        "status": status,
        "reason": reason,
        "event_type": envelope.event_type if envelope else None,
        "connection_id": envelope.connection_id if envelope else None,
        "integration_name": envelope.integration_name if envelope else None,
        "record_id": _record_id(parsed),
        "body": delivery.body,
        "signed_at": delivery.verified.signed_at,
        "received_at": now,
        "attempts": 0,
        "next_attempt_at": now if status is EventStatus.PENDING else None,
    }


async def _apply_all(
    session: AsyncSession,
    deliveries: Sequence[Delivery],
    indexes: Sequence[int],
) -> dict[int, tuple[EventStatus, str | None]]:
    """Apply the deliveries at `indexes`; the outcomes that changed, by index.

    Records go in one store call per resource and connection; a record older
    than the stored one makes its event stale.
    """
    changed: dict[int, tuple[EventStatus, str | None]] = {}
    groups: dict[
        tuple[ResourceSpec, str], list[tuple[int, TrackstarRecord, dict[str, Any]]]
    ] = defaultdict(list)
    for i in indexes:
        parsed = deliveries[i].parsed
        envelope = parsed.envelope
        if parsed.handler and parsed.record and envelope:
            group = groups[(parsed.handler, envelope.connection_id)]
            group.append((i, parsed.record, envelope.data))
            continue
        outcome = await _apply_other(session, parsed)
        if outcome is not None:
            changed[i] = outcome
    # In one order of resource and connection in every batch: two batches
    # that share an order and a product lock them in the same order.
    for (handler, connection_id), members in sorted(
        groups.items(), key=lambda group: (group[0][0].resource, group[0][1])
    ):
        items = [(record, data) for _, record, data in members]
        result = await handler.store(session, connection_id, items)
        for i, record, _ in members:
            if (connection_id, record.id) in result.stale:
                changed[i] = (EventStatus.STALE, "a newer version is stored")
    return changed


async def _update_statuses(
    session: AsyncSession, outcomes: dict[int, tuple[EventStatus, str | None]]
) -> None:
    """Set each event's final status, one UPDATE per distinct outcome."""
    by_outcome: dict[tuple[EventStatus, str | None], list[int]] = defaultdict(list)
    for event_id, outcome in outcomes.items():
        by_outcome[outcome].append(event_id)
    for (status, reason), event_ids in by_outcome.items():
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id.in_(sorted(event_ids)))
            .values(status=status, reason=reason)
        )


@cache
def _insert_new_event(dialect: str) -> ReturningInsert[int, str | None]:
    """INSERT of events whose message id is not stored yet; it returns the id
    and message id of each row inserted. Built once per dialect, the values
    bound at execution."""
    return (
        dialect_insert(dialect, WebhookEvent)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(WebhookEvent.id, WebhookEvent.dedupe_key)
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


async def _apply_other(
    session: AsyncSession, parsed: ParsedDelivery
) -> tuple[EventStatus, str] | None:
    """Apply an event that writes no record; a changed status and reason, or
    None if it stands."""
    envelope = parsed.envelope
    if envelope is not None and envelope.event_type == HISTORICAL_SYNC_COMPLETED:
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


async def _record_duplicates(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[ReceivedEvent]:
    """Record repeated message ids as duplicates of the events first stored."""
    keys = sorted({row["dedupe_key"] for row in rows})
    stored = await session.execute(
        select(WebhookEvent.id, WebhookEvent.dedupe_key).where(
            WebhookEvent.dedupe_key.in_(keys)
        )
    )
    originals = {key: event_id for event_id, key in stored}
    duplicates = []
    for row in rows:
        original_id = originals.get(row["dedupe_key"])
        duplicates.append(
            {
                **row,
                "dedupe_key": None,
                "duplicate_of_id": original_id,
                "status": EventStatus.DUPLICATE,
                "reason": f"message already received as event {original_id}",
                "body": None,
            }
        )
    statement = dialect_insert(session.get_bind().dialect.name, WebhookEvent).returning(
        WebhookEvent.id, sort_by_parameter_order=True
    )
    inserted = await session.scalars(statement, duplicates)
    return [
        ReceivedEvent(
            event_id=event_id,
            status=EventStatus.DUPLICATE,
            event_type=row["event_type"],
            connection_id=row["connection_id"],
            record_id=row["record_id"],
            reason=row["reason"],
        )
        for event_id, row in zip(inserted.all(), duplicates, strict=True)
    ]


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
        [duplicate] = await _record_duplicates(
            session,
            [{**values, "event_type": None, "connection_id": None, "record_id": None}],
        )
        return duplicate
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
