"""Alembic environment: async engine, database URL from the service's settings."""

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

# Every domain's models, so that autogenerate sees all tables.
import app.auth.models
import app.connections.models
import app.core.secrets
import app.inventory.models
import app.orders.models
import app.outbox.models
import app.products.models
import app.shipments.models
import app.sync.models
import app.warehouses.models
import app.webhooks.models  # noqa: F401
from app.core.migrations import MIGRATION_LOCK_KEY
from app.core.models import Base
from app.core.settings import load_settings, normalize_database_url

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return normalize_database_url(url)
    return load_settings().database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: concurrent starts queue here.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
