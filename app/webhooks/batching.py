"""Group commit for webhook deliveries.

Each delivery costs a transaction: a few statements and a commit, most of it
fixed overhead in the driver, SQLAlchemy and Postgres. Deliveries that arrive
while a transaction is running wait for it and are then recorded together in
the next one, so under load one transaction carries many deliveries, and a
lone delivery still goes at once (nothing waits for a batch to fill up).

Every delivery is answered only after the transaction holding it commits, and
a batch never holds two deliveries of one message id or of one record, so each
gets the outcome it would have had alone (`service.record_deliveries`). If a
batch fails for any reason but an unavailable database, its deliveries are
recorded again one by one, so that one bad delivery cannot fail the others.
"""

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from app.core.db import Database, is_database_unavailable
from app.webhooks import service
from app.webhooks.service import Delivery, ReceivedEvent

log = structlog.get_logger(__name__)

# Deliveries per transaction at most: large enough to carry a burst, small
# enough that a transaction stays short (a few MB of bodies at worst).
MAX_BATCH = 100
# Transactions under way at once: while one waits for the database, the next
# batch is prepared and sent.
MAX_IN_FLIGHT = 2


@dataclass
class _Waiting:
    delivery: Delivery
    answer: "asyncio.Future[ReceivedEvent]" = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def resolve(self, received: ReceivedEvent) -> None:
        if not self.answer.done():
            self.answer.set_result(received)

    def fail(self, error: BaseException) -> None:
        if self.answer.done():
            return
        if isinstance(error, asyncio.CancelledError):
            self.answer.cancel()
        else:
            self.answer.set_exception(error)


class DeliveryRecorder:
    """Records the deliveries of one process in batches, with at most
    `max_in_flight` transactions under way at once."""

    def __init__(
        self,
        database: Database,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._database = database
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: deque[_Waiting] = deque()
        self._drains: set[asyncio.Task[None]] = set()

    async def record(self, delivery: Delivery) -> ReceivedEvent:
        """Record one delivery; returns once it is committed.

        Raises what the database raised when it is unavailable.
        """
        waiting = _Waiting(delivery)
        self._queue.append(waiting)
        if len(self._drains) < self._max_in_flight:
            drain = asyncio.create_task(self._drain_queue())
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        # Shielded: a caller that goes away leaves its delivery in the batch,
        # which is recorded all the same.
        return await asyncio.shield(waiting.answer)

    async def _drain_queue(self) -> None:
        batch: list[_Waiting] = []
        try:
            while self._queue:
                batch = self._next_batch()
                await self._record_batch(batch)
        except BaseException as error:
            # Not expected (failures are answered per delivery), but no caller
            # may be left waiting for an answer that never comes.
            for waiting in (*batch, *self._queue):
                waiting.fail(error)
            self._queue.clear()
            raise

    def _next_batch(self) -> list[_Waiting]:
        """The oldest waiting deliveries that do not touch the same message id
        or record; the others keep their place for the next batch."""
        batch: list[_Waiting] = []
        later: deque[_Waiting] = deque()
        message_ids: set[str] = set()
        records: set[tuple[str, str, str]] = set()
        while self._queue and len(batch) < self._max_batch:
            waiting = self._queue.popleft()
            delivery = waiting.delivery
            key = delivery.record_key
            if delivery.message_id in message_ids or key in records:
                later.append(waiting)
                continue
            message_ids.add(delivery.message_id)
            if key is not None:
                records.add(key)
            batch.append(waiting)
        later.extend(self._queue)
        self._queue = later
        return batch

    async def _record_batch(self, batch: Sequence[_Waiting]) -> None:
        try:
            async with self._database.transaction() as session:
                received = await service.record_deliveries(
                    session, [waiting.delivery for waiting in batch]
                )
        except Exception as error:
            if is_database_unavailable(error):
                for waiting in batch:
                    waiting.fail(error)
            elif len(batch) > 1:
                for waiting in batch:
                    await self._record_batch([waiting])
            else:
                await self._quarantine(batch[0], error)
            return
        for waiting, event in zip(batch, received, strict=True):
            waiting.resolve(event)

    async def _quarantine(self, waiting: _Waiting, error: Exception) -> None:
        """Keep a delivery whose processing failed, so that it is not lost."""
        delivery = waiting.delivery
        log.error(
            "webhook.processing_failed",
            message_id=delivery.message_id,
            exc_info=error,
        )
        try:
            async with self._database.transaction() as session:
                received = await service.quarantine_unprocessable(
                    session,
                    delivery=delivery.verified,
                    body=delivery.body,
                    reason=f"processing failed: {type(error).__name__}",
                )
        except Exception as failure:
            waiting.fail(failure)
            return
        waiting.resolve(received)
