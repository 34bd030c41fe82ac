"""Completing oversized events: Trackstar sends only the record's id and a
`data_url`; the full record is fetched and applied here, in the background.
Until that succeeds the event stays `pending` and is tried again."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import credentials_for
from app.core.db import Database
from app.core.models import utcnow
from app.core.secrets import SecretBox
from app.trackstar.client import TrackstarClient
from app.trackstar.errors import TrackstarError
from app.trackstar.schemas import TrackstarRecord, TrackstarWebhookEnvelope
from app.webhooks.handlers import HANDLERS
from app.webhooks.models import EventStatus, WebhookEvent

log = structlog.get_logger(__name__)

BATCH_SIZE = 20
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)


@dataclass(frozen=True)
class _Pending:
    id: int
    attempts: int
    envelope: TrackstarWebhookEnvelope


class CannotComplete(Exception):
    pass


async def complete_pending_events(
    database: Database, client: TrackstarClient, box: SecretBox
) -> int:
    """Try every due pending event once; returns how many were completed."""
    async with database.transaction() as session:
        due = (
            await session.scalars(
                select(WebhookEvent)
                .where(
                    WebhookEvent.status == EventStatus.PENDING,
                    WebhookEvent.next_attempt_at <= utcnow(),
                )
                .order_by(WebhookEvent.id)
                .limit(BATCH_SIZE)
            )
        ).all()
        pending = [
            _Pending(
                event.id,
                event.attempts,
                TrackstarWebhookEnvelope.model_validate_json(event.body or b"{}"),
            )
            for event in due
        ]
    completed = 0
    for event in pending:
        try:
            record, raw = await _fetch_record(database, client, box, event.envelope)
        except (TrackstarError, CannotComplete, ValidationError, ValueError) as error:
            await _retry_later(database, event, f"{type(error).__name__}: {error}")
            continue
        async with database.transaction() as session:
            await _apply(session, event, record, raw)
        completed += 1
    return completed


async def _fetch_record(
    database: Database,
    client: TrackstarClient,
    box: SecretBox,
    envelope: TrackstarWebhookEnvelope,
) -> tuple[TrackstarRecord, dict[str, Any]]:
    spec = HANDLERS[envelope.event_type]
    async with database.transaction() as session:
        credentials = await credentials_for(session, box, envelope.connection_id)
    if credentials is None:
        raise CannotComplete("the connection has no access token here")
    raw: Any = None
    if envelope.data_url:
        try:
            event = await client.get_truncated_event(credentials, envelope.data_url)
            raw = event.get("data")
        except TrackstarError as error:
            log.warning("webhooks.data_url_failed", error=error.message)
    if not isinstance(raw, dict):
        # The download link is gone or broken: read the record itself.
        record_id = envelope.data.get("id")
        if not isinstance(record_id, str):
            raise CannotComplete("no data_url answer and no record id")
        raw = (await client.get(credentials, spec.item_path(record_id))).get("data")
    if not isinstance(raw, dict):
        raise CannotComplete("Trackstar answered without the record")
    return spec.model.model_validate(raw), raw


async def _apply(
    session: AsyncSession,
    event: _Pending,
    record: TrackstarRecord,
    raw: dict[str, Any],
) -> None:
    spec = HANDLERS[event.envelope.event_type]
    result = await spec.store(session, event.envelope.connection_id, [(record, raw)])
    status, reason = EventStatus.PROCESSED, "completed from the API"
    if not result.applied:
        status, reason = EventStatus.STALE, "a newer version is stored"
    # Only a still-pending event: another worker may have completed it.
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event.id, WebhookEvent.status == EventStatus.PENDING)
        .values(status=status, reason=reason, record_id=record.id, next_attempt_at=None)
    )
    log.info("webhooks.truncated_event_completed", event_id=event.id, outcome=status)


async def _retry_later(database: Database, event: _Pending, error: str) -> None:
    attempts = event.attempts + 1
    delay = min(RETRY_BASE * 2 ** min(attempts - 1, 10), RETRY_MAX)
    async with database.transaction() as session:
        await session.execute(
            update(WebhookEvent)
            .where(WebhookEvent.id == event.id)
            .values(
                attempts=attempts,
                next_attempt_at=utcnow() + delay,
                reason=f"data truncated; last try failed: {error}"[:1000],
            )
        )
    log.warning(
        "webhooks.truncated_event_retry",
        event_id=event.id,
        attempts=attempts,
        error=error,
    )
