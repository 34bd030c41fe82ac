"""Connections and their access tokens: add, list, remove, read for a call."""

from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections.models import Connection
from app.core.db import insert_for
from app.core.errors import Conflict, NotFound
from app.core.models import utcnow
from app.core.secrets import SecretBox
from app.orders.models import Order
from app.products.models import Product
from app.sync.models import SyncState
from app.warehouses.models import Warehouse


class ConnectionNotFound(NotFound):
    pass


class ConnectionNotConfigured(Conflict):
    """The connection has no access token, so nothing can be sent for it."""


@dataclass(frozen=True)
class ConnectionCredentials:
    """What a call to Trackstar needs; the token never appears in repr or logs."""

    connection_id: str
    access_token: SecretStr
    integration_name: str | None


async def add_connection(
    session: AsyncSession,
    box: SecretBox,
    *,
    connection_id: str,
    access_token: str,
    integration_name: str | None,
) -> Connection:
    """Add a connection, or replace its token; a new token lifts a suspension."""
    now = utcnow()
    values: dict[str, Any] = {
        "id": connection_id,
        "integration_name": integration_name,
        "access_token_encrypted": box.encrypt(access_token),
        "created_at": now,
        "updated_at": now,
        "suspended_at": None,
        "suspended_reason": None,
        "extra": {},
    }
    statement = insert_for(session, Connection).values(values)
    updates = {
        "access_token_encrypted": statement.excluded.access_token_encrypted,
        "updated_at": statement.excluded.updated_at,
        "suspended_at": None,
        "suspended_reason": None,
    }
    if integration_name is not None:
        updates["integration_name"] = statement.excluded.integration_name
    await session.execute(
        statement.on_conflict_do_update(index_elements=["id"], set_=updates)
    )
    connection = await session.get(Connection, connection_id, populate_existing=True)
    assert connection is not None
    return connection


async def list_connections(session: AsyncSession) -> list[Connection]:
    return list(await session.scalars(select(Connection).order_by(Connection.id)))


async def remove_connection(session: AsyncSession, *, connection_id: str) -> None:
    connection = await session.get(Connection, connection_id)
    if connection is None:
        raise ConnectionNotFound(f"No connection with id {connection_id!r}.")
    await session.delete(connection)


async def require_configured(session: AsyncSession, connection_id: str) -> Connection:
    """The connection, or `ConnectionNotConfigured` (409) if it has no token."""
    connection = await session.get(Connection, connection_id)
    if connection is None:
        raise ConnectionNotConfigured(
            f"Connection {connection_id!r} has no access token; add it with "
            "`python -m app connections add`."
        )
    return connection


async def credentials_for(
    session: AsyncSession, box: SecretBox, connection_id: str
) -> ConnectionCredentials | None:
    connection = await session.get(Connection, connection_id)
    if connection is None:
        return None
    token = box.decrypt(connection.access_token_encrypted)
    return ConnectionCredentials(
        connection_id=connection.id,
        access_token=SecretStr(token),
        integration_name=connection.integration_name,
    )


async def suspend_connection(
    session: AsyncSession, *, connection_id: str, reason: str
) -> None:
    connection = await session.get(Connection, connection_id)
    if connection is not None and connection.suspended_at is None:
        connection.suspended_at = utcnow()
        connection.suspended_reason = reason


async def reencrypt_tokens(session: AsyncSession, box: SecretBox) -> int:
    """Re-encrypt every token with the first SECRET_KEY; returns how many."""
    connections = await list_connections(session)
    for connection in connections:
        connection.access_token_encrypted = box.rotate(
            connection.access_token_encrypted
        )
    return len(connections)


class ConnectionOverview(NamedTuple):
    connection: Connection
    counts: dict[str, int]
    states: list[SyncState]


async def overview(
    session: AsyncSession, connection_id: str | None = None
) -> list[ConnectionOverview]:
    """Connections with their record counts and sync state per resource."""
    statement = select(Connection).order_by(Connection.id)
    if connection_id is not None:
        statement = statement.where(Connection.id == connection_id)
    connections = list((await session.scalars(statement)).all())
    counts: dict[str, dict[str, int]] = {c.id: {} for c in connections}
    for name, model in (
        ("orders", Order),
        ("products", Product),
        ("warehouses", Warehouse),
    ):
        rows = await session.execute(
            select(model.connection_id, func.count()).group_by(model.connection_id)
        )
        for owner, number in rows:
            if owner in counts:
                counts[owner][name] = number
    states = (await session.scalars(select(SyncState))).all()
    by_connection: dict[str, list[SyncState]] = {}
    for state in states:
        by_connection.setdefault(state.connection_id, []).append(state)
    return [
        ConnectionOverview(
            connection=c,
            counts={
                name: counts[c.id].get(name, 0)
                for name in ("orders", "products", "warehouses")
            },
            states=sorted(by_connection.get(c.id, []), key=lambda s: s.resource),
        )
        for c in connections
    ]
