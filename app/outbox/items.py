"""What shipments and inventory adjustments share: a row per item a warehouse
system reported, its outbox message, idempotent creation, reads and retries."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFound
from app.core.idempotency import check_replay
from app.core.models import Base
from app.core.scope import ConnectionScope, allows
from app.outbox import service as outbox
from app.outbox.models import MessageStatus, OutboxMessage

Item = TypeVar("Item", bound=Base)


@dataclass(frozen=True)
class Delivery:
    """The write an item becomes at Trackstar."""

    connection_id: str
    ordering_key: str
    method: str
    path: str
    body: dict[str, Any]


class ForwardedItems(Generic[Item]):
    """One kind of forwarded item. The model has `id`, `connection_id`,
    `api_key_id`, `idempotency_key` and `request_fingerprint` columns, with
    `(api_key_id, idempotency_key)` unique."""

    def __init__(
        self,
        model: type[Item],
        *,
        kind: str,
        key_prefix: str,
        not_found: type[NotFound],
        noun: str,
    ) -> None:
        self.model = model
        self.kind = kind
        self.key_prefix = key_prefix
        self.not_found = not_found
        self.noun = noun

    async def find_replay(
        self,
        session: AsyncSession,
        *,
        api_key_id: int | None,
        idempotency_key: str,
        fingerprint: str,
    ) -> tuple[Item, OutboxMessage] | None:
        """The item created earlier with this key, if the request is the same;
        `IdempotencyKeyReused` (409) if it is not."""
        model: Any = self.model
        item: Any = await session.scalar(
            select(self.model).where(
                model.api_key_id == api_key_id,
                model.idempotency_key == idempotency_key,
            )
        )
        if item is None:
            return None
        check_replay(item.request_fingerprint, fingerprint)
        return item, await self._message(session, item)

    async def add(
        self, session: AsyncSession, item: Item, delivery: Delivery
    ) -> tuple[Item, OutboxMessage]:
        """Store the item and its message in the caller's transaction.

        If a concurrent request with the same Idempotency-Key won the race, its
        item is returned instead.
        """
        record: Any = item
        try:
            async with session.begin_nested():
                session.add(item)
                await session.flush()
        except IntegrityError:
            if record.idempotency_key is None:
                raise
            replay = await self.find_replay(
                session,
                api_key_id=record.api_key_id,
                idempotency_key=record.idempotency_key,
                fingerprint=record.request_fingerprint,
            )
            if replay is None:
                raise
            return replay
        message = await outbox.enqueue(
            session,
            kind=self.kind,
            subject_id=record.id,
            connection_id=delivery.connection_id,
            ordering_key=delivery.ordering_key,
            method=delivery.method,
            path=delivery.path,
            body=delivery.body,
            # Fixed now, random so that it stays unique if ids restart.
            idempotency_key=f"{self.key_prefix}:{record.id}:{secrets.token_hex(8)}",
        )
        return item, message

    async def get(
        self, session: AsyncSession, item_id: int, *, scope: ConnectionScope = None
    ) -> tuple[Item, OutboxMessage]:
        item: Any = await session.get(self.model, item_id)
        if item is None or not allows(scope, item.connection_id):
            raise self.not_found(f"No {self.noun} with id {item_id}.")
        return item, await self._message(session, item)

    async def page(
        self,
        session: AsyncSession,
        *,
        conditions: Sequence[ColumnElement[bool]],
        status: MessageStatus | None,
        limit: int,
        cursor: str | None,
        scope: ConnectionScope = None,
    ) -> tuple[list[tuple[Item, OutboxMessage]], str | None]:
        model: Any = self.model
        where = list(conditions)
        if scope is not None:
            where.append(model.connection_id.in_(sorted(scope)))
        return await outbox.page_with_messages(
            session,
            self.model,
            kind=self.kind,
            conditions=where,
            status=status,
            limit=limit,
            cursor=cursor,
        )

    async def retry(
        self, session: AsyncSession, item_id: int, *, scope: ConnectionScope = None
    ) -> tuple[Item, OutboxMessage]:
        item, message = await self.get(session, item_id, scope=scope)
        await outbox.retry_failed(session, message)
        return item, message

    async def _message(self, session: AsyncSession, item: Any) -> OutboxMessage:
        return await outbox.message_for(session, kind=self.kind, subject_id=item.id)
