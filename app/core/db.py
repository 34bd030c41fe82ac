"""Engine, sessions and the transaction scope.

`Database.transaction()` and the request dependency built on it are the only
places that commit or roll back: services add, flush and execute, never commit.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, cast

import simplejson
from fastapi import Depends, Request
from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import (
    DBAPIError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import (
    TimeoutError as PoolTimeoutError,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.models import Base
from app.core.settings import Settings

# SQLSTATE classes that mean "try again later", not "this request is wrong":
# connection exceptions, serialisation failures and deadlocks, resource
# exhaustion, and an administrator shutting the server down.
TRANSIENT_SQLSTATE_PREFIXES = ("08", "40001", "40P01", "53", "57P")
SQLITE_BUSY_TIMEOUT_MS = 5000
# Connections opened beyond the pool for a burst, closed again after use.
POOL_OVERFLOW = 10


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every JSON column value: `simplejson.dumps` with options
# builds a new one per call, and a pulled order has seven JSON columns.
_JSON_ENCODER = simplejson.JSONEncoder(
    use_decimal=True, ensure_ascii=False, default=_json_default
)


def dumps_json(value: Any) -> str:
    """JSON for database columns; decimals stay exact numbers, never floats,
    and date-times become ISO 8601 text."""
    return _JSON_ENCODER.encode(value)


def loads_json(text: str) -> Any:
    return simplejson.loads(text, use_decimal=True)


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        return _create_sqlite_engine(settings.database_url)
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=settings.database_pool_timeout.total_seconds(),
        # No ping before each checkout: it is a round trip per transaction.
        # A connection that the server dropped fails its first statement
        # instead; SQLAlchemy then discards every pooled connection opened
        # before it, and that one request answers 503 (a webhook is retried).
        pool_pre_ping=False,
        connect_args={
            "statement_cache_size": settings.database_statement_cache_size,
            "timeout": 5,
            "server_settings": {
                # asyncpg prepares every statement, and Postgres switches a
                # prepared statement to a generic plan after five runs. Planned
                # while a table was still empty, that plan scans the whole
                # table, and it stays cached as the table grows until the next
                # ANALYZE: a pull's DELETE of order lines went from
                # milliseconds to seconds per page. Planning each execution
                # costs far less than that.
                "plan_cache_mode": "force_custom_plan",
            },
        },
        json_serializer=dumps_json,
        json_deserializer=loads_json,
    )


def _create_sqlite_engine(url: str) -> AsyncEngine:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        json_serializer=dumps_json,
        json_deserializer=loads_json,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
        # Transactions are begun explicitly below instead of by the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers wait for each
        # other (busy_timeout) instead of failing when a read upgrades to a write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit when the block ends, roll back if it raises."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


async def _request_session(request: Request) -> AsyncIterator[AsyncSession]:
    database: Database = request.app.state.database
    async with database.transaction() as session:
        yield session


# scope="function": the transaction ends (commits) before the response is sent,
# so a 2xx always means the work is durable.
DbSession = Annotated[AsyncSession, Depends(_request_session, scope="function")]


def insert_for(
    session: AsyncSession, entity: type[Base]
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT for the session's dialect.

    It targets the table, not the ORM class: executed with a list of rows it is
    a Core executemany, which SQLAlchemy batches into multi-row statements from
    one cached compilation, without the ORM's per-row bookkeeping.
    """
    return dialect_insert(session.get_bind().dialect.name, entity)


def dialect_insert(
    dialect: str, entity: type[Base]
) -> postgresql.Insert | sqlite.Insert:
    """`insert_for` by dialect name, for statements built once and cached."""
    table = cast(Table, entity.__table__)
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    for attribute in ("sqlstate", "pgcode"):
        value = getattr(orig, attribute, None)
        if isinstance(value, str):
            return value
    return None


def is_database_unavailable(exc: BaseException) -> bool:
    """True for failures that mean the database cannot serve us right now."""
    if isinstance(exc, PoolTimeoutError | OSError | asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = _sqlstate(exc)
        if sqlstate is not None:
            return sqlstate.startswith(TRANSIENT_SQLSTATE_PREFIXES)
        return isinstance(exc, OperationalError | InterfaceError)
    return False
