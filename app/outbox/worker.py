"""Deliver outbox messages to Trackstar: claim, send, record, one message at a
time per ordering key, many keys at once.

Each message goes through three steps, and no database connection is held
while Trackstar is called:

1. claim (one short transaction, many messages): lease them to this worker;
2. send (no transaction): optionally read back first, then the write itself;
3. record (one short transaction per message): outcome, next attempt, and the
   domain's own update (the stored order or product from Trackstar's answer).
"""

import asyncio
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.service import ConnectionCredentials, suspend_connection
from app.core.db import Database
from app.core.models import utcnow
from app.core.secrets import SecretBox
from app.core.settings import Settings
from app.outbox import service
from app.outbox.retry import RetryPolicy, decide
from app.outbox.service import ClaimedMessage
from app.trackstar.client import TrackstarClient
from app.trackstar.errors import (
    TrackstarError,
    TrackstarFinal,
    TrackstarUnauthorized,
)
from app.trackstar.ratelimit import CallKind, ThrottledTooLong

log = structlog.get_logger(__name__)

# A message whose token has no free slot for this long goes back to the queue
# instead of holding a delivery slot that other connections could use.
MAX_THROTTLE_WAIT_S = 5.0


@dataclass(frozen=True)
class Delivered:
    data: Any
    request_id: str | None
    unused_fields: list[str]
    replayed: bool = False
    verified: bool = False


class DeliveryHandler(Protocol):
    """What a domain adds to the generic delivery of its messages."""

    async def find_applied(
        self,
        client: TrackstarClient,
        credentials: ConnectionCredentials,
        message: ClaimedMessage,
    ) -> Any | None:
        """After an attempt with an unknown outcome: Trackstar's record if the
        write is already there (it must not be sent again), else None."""
        ...

    async def on_delivered(
        self, session: AsyncSession, message: ClaimedMessage, data: Any
    ) -> dict[str, Any]:
        """Apply Trackstar's answer in the recording transaction; returns what to
        keep as the message's result."""
        ...


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxWorker:
    def __init__(
        self,
        *,
        database: Database,
        client: TrackstarClient,
        box: SecretBox,
        settings: Settings,
        handlers: Mapping[str, DeliveryHandler],
        worker_id: str | None = None,
    ) -> None:
        self.database = database
        self.client = client
        self.box = box
        self.handlers = handlers
        self.worker_id = worker_id or new_worker_id()
        self.lease = settings.outbox_lease
        self.batch_size = settings.outbox_batch_size
        self.concurrency = settings.outbox_concurrency
        self.poll_interval = settings.outbox_poll_interval.total_seconds()
        self.policy = RetryPolicy(
            base_delay=settings.outbox_retry_base_delay,
            max_delay=settings.outbox_retry_max_delay,
            max_age=settings.outbox_max_age,
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        # Messages may be backing off from an outage that ended while no
        # worker ran, so the first success looks for them.
        self._outage_suspected = True

    async def claim(
        self, *, limit: int | None = None, now: datetime | None = None
    ) -> list[ClaimedMessage]:
        """Lease due messages; `now` lets tests look into the future."""
        throttled = [
            connection_id
            for connection_id in self._known_connections()
            if self.client.limiter.delay(connection_id, CallKind.WRITE)
            > MAX_THROTTLE_WAIT_S
        ]
        async with self.database.transaction() as session:
            return await service.claim_due_messages(
                session,
                self.box,
                worker_id=self.worker_id,
                now=now or utcnow(),
                lease=self.lease,
                limit=limit or self.batch_size,
                exclude_connections=throttled,
            )

    def _known_connections(self) -> list[str]:
        return self.client.limiter.keys()

    async def deliver(self, message: ClaimedMessage) -> None:
        """Send one claimed message and record the outcome."""
        started_at = utcnow()
        bound = log.bind(
            message_id=message.id,
            kind=message.kind,
            connection_id=message.connection_id,
            attempt=message.attempts,
        )
        try:
            delivered = await self._send(message)
        except ThrottledTooLong as throttled:
            await self._defer(message, started_at + timedelta(seconds=throttled.wait))
            return
        except TrackstarError as error:
            await self._record_failure(message, error, started_at, bound)
            return
        try:
            await self._record_delivered(message, delivered, started_at, bound)
        except _LeaseLost:
            bound.warning("outbox.lease_lost")

    async def _send(self, message: ClaimedMessage) -> Delivered:
        credentials = message.credentials
        if credentials is None:
            raise TrackstarFinal(
                f"connection {message.connection_id} has no usable access token; "
                "add it with `python -m app connections add`"
            )
        handler = self.handlers[message.kind]
        if message.outcome_unknown:
            applied = await handler.find_applied(self.client, credentials, message)
            if applied is not None:
                return Delivered(
                    data=applied, request_id=None, unused_fields=[], verified=True
                )
        result = await self.client.write(
            credentials,
            method=message.method,
            path=message.path,
            body=message.body.encode(),
            idempotency_key=message.idempotency_key,
            max_wait=MAX_THROTTLE_WAIT_S,
        )
        return Delivered(
            data=result.data,
            request_id=result.request_id,
            unused_fields=result.unused_fields,
            replayed=result.replayed,
        )

    async def _record_delivered(
        self,
        message: ClaimedMessage,
        delivered: Delivered,
        started_at: datetime,
        bound: Any,
    ) -> None:
        handler = self.handlers[message.kind]
        async with self.database.transaction() as session:
            result = await handler.on_delivered(session, message, delivered.data)
            recorded = await service.record_delivered(
                session,
                message,
                worker_id=self.worker_id,
                started_at=started_at,
                request_id=delivered.request_id,
                result=result,
                verified=delivered.verified,
            )
            if not recorded:
                # Roll back the domain update too: the new owner records it.
                raise _LeaseLost
            released = 0
            if self._outage_suspected:
                released = await service.release_waiting_messages(
                    session, now=utcnow(), connection_id=message.connection_id
                )
                self._outage_suspected = False
        if delivered.unused_fields:
            bound.warning(
                "outbox.unused_fields",
                subject_id=message.subject_id,
                unused_fields=delivered.unused_fields,
            )
        bound.info(
            "outbox.delivered",
            request_id=delivered.request_id,
            replayed=delivered.replayed,
            verified_by_read=delivered.verified,
            released_waiting=released,
        )

    async def _record_failure(
        self,
        message: ClaimedMessage,
        error: TrackstarError,
        started_at: datetime,
        bound: Any,
    ) -> None:
        decision = decide(
            error,
            attempts=message.attempts,
            queued_at=message.queued_at,
            now=utcnow(),
            policy=self.policy,
        )
        async with self.database.transaction() as session:
            recorded = await service.record_failure(
                session,
                message,
                worker_id=self.worker_id,
                started_at=started_at,
                error=error,
                give_up=decision.give_up,
                next_attempt_at=decision.next_attempt_at,
            )
            if recorded and isinstance(error, TrackstarUnauthorized):
                await suspend_connection(
                    session,
                    connection_id=message.connection_id,
                    reason=f"Trackstar answered 401: {error.message}",
                )
        if error.kind in service.WAITING_ON_TRACKSTAR:
            self._outage_suspected = True
        fields = {
            "status_code": error.status_code,
            "error": error.message,
            "origin": error.origin,
            "request_id": error.request_id,
            "reason": decision.reason,
        }
        if not recorded:
            bound.warning("outbox.lease_lost", **fields)
        elif isinstance(error, TrackstarUnauthorized):
            bound.error("outbox.connection_suspended", **fields)
        elif decision.give_up:
            bound.error("outbox.failed", **fields)
        else:
            bound.warning(
                "outbox.attempt_failed",
                next_attempt_at=decision.next_attempt_at,
                **fields,
            )

    async def _defer(self, message: ClaimedMessage, until: datetime) -> None:
        async with self.database.transaction() as session:
            await service.record_deferred(
                session, message, worker_id=self.worker_id, next_attempt_at=until
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish what is in flight.

        The loop claims as soon as a slot frees up: a finished delivery may
        also have made the next message of its ordering key due. With every
        slot busy, or nothing due, it waits for a delivery to finish, or at
        most the poll interval (for messages enqueued by other processes).
        """
        log.info("outbox.worker_started", worker_id=self.worker_id)
        finished = asyncio.Event()
        try:
            while not stop.is_set():
                finished.clear()
                claimed = await self._claim_safely(
                    self.concurrency - len(self._in_flight)
                )
                for message in claimed:
                    task = asyncio.create_task(self._deliver_safely(message))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                    task.add_done_callback(lambda _: finished.set())
                if claimed and len(self._in_flight) < self.concurrency:
                    continue
                await _wait_any(stop, finished, self.poll_interval)
        finally:
            if self._in_flight:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            log.info("outbox.worker_stopped", worker_id=self.worker_id)

    async def _claim_safely(self, free: int) -> list[ClaimedMessage]:
        if free <= 0:
            return []
        try:
            return await self.claim(limit=min(free, self.batch_size))
        except Exception as error:
            log.error("outbox.claim_failed", exc_info=error)
            return []

    async def _deliver_safely(self, message: ClaimedMessage) -> None:
        try:
            await self.deliver(message)
        except Exception as error:
            # The lease expires and the message is retried with the same key.
            log.error("outbox.delivery_crashed", message_id=message.id, exc_info=error)


class _LeaseLost(Exception):
    pass


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    """Until either event is set, or `seconds` have passed."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(other.wait())]
    try:
        await asyncio.wait(
            waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
