"""The durable queue: enqueue in the caller's transaction, claim due messages
with a lease, record each attempt's outcome.

Claiming (Postgres): `FOR UPDATE SKIP LOCKED` lets several workers claim at
once without waiting on each other, and a message is only claimable while no
older message with the same ordering key is pending or in flight. SQLite takes
the database write lock for the whole transaction, which serialises claims.
"""

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.connections.models import Connection
from app.connections.service import ConnectionCredentials, credentials_for
from app.core.errors import Conflict
from app.core.models import Base, utcnow
from app.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from app.core.secrets import SecretBox, UndecryptableSecret
from app.outbox.models import MessageStatus, OutboxAttempt, OutboxMessage
from app.trackstar.errors import TrackstarError

# Trackstar rejects a write holding any of these, at any depth, with a 422.
EMPTY_SPELLINGS = frozenset({"", "none", "null", "nil", "undefined"})
# Errors after which the message waits on Trackstar itself, not on the
# message: one success means the others may go at once.
WAITING_ON_TRACKSTAR = ("unreachable", "server_error")

Subject = TypeVar("Subject", bound=Base)


class RetryRefused(Conflict):
    pass


def without_empty_values(value: Any) -> Any:
    """The value with null and empty-looking entries removed, at every depth."""
    if isinstance(value, dict):
        cleaned = {key: without_empty_values(item) for key, item in value.items()}
        return {key: item for key, item in cleaned.items() if not is_empty(item)}
    if isinstance(value, list):
        cleaned_items = [without_empty_values(item) for item in value]
        return [item for item in cleaned_items if not is_empty(item)]
    return value


def is_empty(value: Any) -> bool:
    """What Trackstar takes for no value, and the service leaves out of writes."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in EMPTY_SPELLINGS
    return isinstance(value, dict | list) and not value


def encode_body(body: dict[str, Any]) -> str:
    """The exact text sent on every attempt."""
    return json.dumps(
        without_empty_values(body), ensure_ascii=False, separators=(",", ":")
    )


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    subject_id: int,
    connection_id: str,
    ordering_key: str,
    method: str,
    path: str,
    body: dict[str, Any],
    idempotency_key: str,
) -> OutboxMessage:
    """Add a message in the caller's transaction: it exists iff the change does."""
    now = utcnow()
    message = OutboxMessage(
        kind=kind,
        subject_id=subject_id,
        connection_id=connection_id,
        ordering_key=ordering_key,
        method=method,
        path=path,
        body=encode_body(body),
        idempotency_key=idempotency_key,
        status=MessageStatus.PENDING,
        attempts=0,
        next_attempt_at=now,
        outcome_unknown=False,
        created_at=now,
        queued_at=now,
    )
    session.add(message)
    await session.flush()
    return message


@dataclass(frozen=True)
class ClaimedMessage:
    id: int
    kind: str
    subject_id: int
    connection_id: str
    method: str
    path: str
    body: str
    idempotency_key: str
    attempts: int
    queued_at: datetime
    outcome_unknown: bool
    credentials: ConnectionCredentials | None


async def claim_due_messages(
    session: AsyncSession,
    box: SecretBox,
    *,
    worker_id: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    exclude_connections: Collection[str] = (),
) -> list[ClaimedMessage]:
    """Lease up to `limit` due messages, each the oldest open one of its key.

    A message whose worker died (lease expired while delivering) is due again.
    """
    earlier = aliased(OutboxMessage)
    older_open = exists().where(
        earlier.ordering_key == OutboxMessage.ordering_key,
        earlier.id < OutboxMessage.id,
        earlier.status.in_([MessageStatus.PENDING, MessageStatus.DELIVERING]),
    )
    suspended = exists().where(
        Connection.id == OutboxMessage.connection_id,
        Connection.suspended_at.is_not(None),
    )
    due = or_(
        and_(
            OutboxMessage.status == MessageStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
        ),
        and_(
            OutboxMessage.status == MessageStatus.DELIVERING,
            OutboxMessage.lease_expires_at <= now,
        ),
    )
    statement = (
        select(OutboxMessage)
        .where(due, ~older_open, ~suspended)
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if exclude_connections:
        statement = statement.where(
            OutboxMessage.connection_id.not_in(list(exclude_connections))
        )
    messages = list((await session.scalars(statement)).all())
    credentials: dict[str, ConnectionCredentials | None] = {}
    claimed = []
    for message in messages:
        message.status = MessageStatus.DELIVERING
        message.attempts += 1
        message.leased_by = worker_id
        message.lease_expires_at = now + lease
        message.last_attempt_at = now
        message.first_attempt_at = message.first_attempt_at or now
        if message.connection_id not in credentials:
            credentials[message.connection_id] = await _credentials(
                session, box, message.connection_id
            )
        claimed.append(
            ClaimedMessage(
                id=message.id,
                kind=message.kind,
                subject_id=message.subject_id,
                connection_id=message.connection_id,
                method=message.method,
                path=message.path,
                body=message.body,
                idempotency_key=message.idempotency_key,
                attempts=message.attempts,
                queued_at=message.queued_at,
                outcome_unknown=message.outcome_unknown,
                credentials=credentials[message.connection_id],
            )
        )
    return claimed


async def _credentials(
    session: AsyncSession, box: SecretBox, connection_id: str
) -> ConnectionCredentials | None:
    try:
        return await credentials_for(session, box, connection_id)
    except UndecryptableSecret:
        return None


def _leased(message: ClaimedMessage, worker_id: str) -> Any:
    # Fencing: a worker whose lease expired must not overwrite the outcome
    # recorded by the worker that took the message over.
    return and_(
        OutboxMessage.id == message.id,
        OutboxMessage.leased_by == worker_id,
        OutboxMessage.status == MessageStatus.DELIVERING,
    )


async def _finish(
    session: AsyncSession,
    message: ClaimedMessage,
    *,
    worker_id: str,
    started_at: datetime,
    outcome: str,
    values: dict[str, Any],
    error: TrackstarError | None = None,
) -> bool:
    now = utcnow()
    result = await session.execute(
        update(OutboxMessage)
        .where(_leased(message, worker_id))
        .values(leased_by=None, lease_expires_at=None, **values)
        # The recording session holds no copy of the message to keep in step.
        .execution_options(synchronize_session=False)
    )
    if not getattr(result, "rowcount", 0):
        return False
    session.add(
        OutboxAttempt(
            message_id=message.id,
            number=message.attempts,
            worker=worker_id,
            started_at=started_at,
            finished_at=now,
            outcome=outcome,
            status_code=error.status_code if error else values.get("last_status_code"),
            error=error.message if error else None,
            request_id=error.request_id if error else values.get("last_request_id"),
        )
    )
    return True


async def record_delivered(
    session: AsyncSession,
    message: ClaimedMessage,
    *,
    worker_id: str,
    started_at: datetime,
    request_id: str | None,
    result: dict[str, Any],
    verified: bool,
) -> bool:
    """Mark delivered; False if the lease was lost (another worker owns it)."""
    return await _finish(
        session,
        message,
        worker_id=worker_id,
        started_at=started_at,
        outcome="verified" if verified else "delivered",
        values={
            "status": MessageStatus.DELIVERED,
            "delivered_at": utcnow(),
            "outcome_unknown": False,
            "last_status_code": None if verified else 200,
            "last_request_id": request_id,
            "result": result,
        },
    )


async def record_failure(
    session: AsyncSession,
    message: ClaimedMessage,
    *,
    worker_id: str,
    started_at: datetime,
    error: TrackstarError,
    give_up: bool,
    next_attempt_at: datetime | None,
) -> bool:
    values: dict[str, Any] = {
        "last_status_code": error.status_code,
        "last_error": error.message,
        "last_error_kind": error.kind,
        "last_origin": error.origin,
        "last_request_id": error.request_id,
        "last_response": error.body,
        # Once unknown, it stays unknown until a read-back or a success says.
        "outcome_unknown": message.outcome_unknown or error.outcome_unknown,
    }
    if give_up:
        values |= {"status": MessageStatus.FAILED, "failed_at": utcnow()}
    else:
        values |= {"status": MessageStatus.PENDING, "next_attempt_at": next_attempt_at}
    return await _finish(
        session,
        message,
        worker_id=worker_id,
        started_at=started_at,
        outcome="failed" if give_up else "retry",
        values=values,
        error=error,
    )


async def record_deferred(
    session: AsyncSession,
    message: ClaimedMessage,
    *,
    worker_id: str,
    next_attempt_at: datetime,
) -> bool:
    """Hand a message back unsent (its token is throttled); not an attempt."""
    result = await session.execute(
        update(OutboxMessage)
        .where(_leased(message, worker_id))
        .values(
            status=MessageStatus.PENDING,
            attempts=OutboxMessage.attempts - 1,
            leased_by=None,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def release_waiting_messages(
    session: AsyncSession, *, now: datetime, connection_id: str
) -> int:
    """Make messages backing off from an outage due now: Trackstar answers again."""
    result = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.status == MessageStatus.PENDING,
            OutboxMessage.next_attempt_at > now,
            or_(
                OutboxMessage.last_error_kind == "unreachable",
                and_(
                    OutboxMessage.last_error_kind == "server_error",
                    OutboxMessage.connection_id == connection_id,
                ),
            ),
        )
        .values(next_attempt_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def message_for(
    session: AsyncSession, *, kind: str, subject_id: int
) -> OutboxMessage:
    message = await session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.kind == kind, OutboxMessage.subject_id == subject_id
        )
    )
    assert message is not None, f"{kind} {subject_id} has no outbox message"
    return message


async def retry_failed(session: AsyncSession, message: OutboxMessage) -> OutboxMessage:
    """Put a failed message back in the queue, keeping its body and key.

    Refused when a later message with the same ordering key has already gone
    out: sending this one now would apply the changes out of order.
    """
    if message.status != MessageStatus.FAILED:
        raise RetryRefused(
            f"Only failed items can be retried; this one is {message.status}."
        )
    later = aliased(OutboxMessage)
    overtaken = await session.scalar(
        select(later.id)
        .where(
            later.ordering_key == message.ordering_key,
            later.id > message.id,
            later.status.in_([MessageStatus.DELIVERED, MessageStatus.DELIVERING]),
        )
        .limit(1)
    )
    if overtaken is not None:
        raise RetryRefused(
            "A later item for the same order or product has already been sent; "
            "retrying this one would apply them out of order. Post a new one instead."
        )
    message.status = MessageStatus.PENDING
    message.next_attempt_at = utcnow()
    message.failed_at = None
    message.queued_at = utcnow()
    return message


async def page_with_messages(
    session: AsyncSession,
    entity: type[Subject],
    *,
    kind: str,
    conditions: Sequence[ColumnElement[bool]],
    status: MessageStatus | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[tuple[Subject, OutboxMessage]], str | None]:
    """Rows of a forwarded entity with their messages, newest first."""
    subject_id = entity.id  # type: ignore[attr-defined]
    statement = (
        select(entity, OutboxMessage)
        .join(
            OutboxMessage,
            and_(OutboxMessage.kind == kind, OutboxMessage.subject_id == subject_id),
        )
        .where(*conditions)
    )
    if status is not None:
        statement = statement.where(OutboxMessage.status == status)
    if cursor is not None:
        (before,) = decode_cursor(cursor, length=1)
        if not isinstance(before, int):
            raise InvalidCursor("The cursor is not valid.")
        statement = statement.where(subject_id < before)
    statement = statement.order_by(subject_id.desc()).limit(limit + 1)
    rows = [(row[0], row[1]) for row in (await session.execute(statement)).all()]
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1][1].subject_id)
