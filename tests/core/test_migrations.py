"""Alembic from code: upgrade a fresh database, downgrade to nothing, upgrade
again, and several replicas upgrading one database at the same time.

`upgrade` and `downgrade` block and run their own event loop, so these tests
are synchronous.
"""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

import app.main  # noqa: F401  (every model the application uses is in the metadata)
from app.core import migrations
from app.core.models import Base
from app.core.settings import Settings
from tests.conftest import create_postgres_database, drop_postgres_database

Schema = dict[str, set[str]]


def expected_schema() -> Schema:
    return {
        table.name: {column.name for column in table.columns}
        for table in Base.metadata.sorted_tables
    }


def read_schema(url: str) -> tuple[Schema, str | None]:
    """Tables with their columns (Alembic's own table left out), and the revision."""

    async def read() -> tuple[Schema, str | None]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as connection:
                tables = await connection.run_sync(
                    lambda sync: {
                        name: {
                            column["name"] for column in inspect(sync).get_columns(name)
                        }
                        for name in inspect(sync).get_table_names()
                        if name != "alembic_version"
                    }
                )
                revision = await migrations.current_revision(connection)
        finally:
            await engine.dispose()
        return tables, revision

    return asyncio.run(read())


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        url = create_postgres_database()
        try:
            yield url
        finally:
            drop_postgres_database(url)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"


def test_metadata_knows_the_service_tables():
    # Guards the tests below against an accidentally empty metadata.
    assert {"orders", "order_lines", "products", "warehouses", "webhook_events"} <= set(
        expected_schema()
    )


def test_upgrade_creates_every_table_and_column_of_the_models(empty_database_url):
    assert read_schema(empty_database_url) == ({}, None)

    migrations.upgrade(empty_database_url)

    tables, revision = read_schema(empty_database_url)
    assert tables == expected_schema()
    assert revision == migrations.head_revision()


def test_upgrade_twice_is_a_no_op(empty_database_url):
    migrations.upgrade(empty_database_url)

    migrations.upgrade(empty_database_url)

    tables, revision = read_schema(empty_database_url)
    assert tables == expected_schema()
    assert revision == migrations.head_revision()


def test_downgrade_to_base_removes_every_table(empty_database_url):
    migrations.upgrade(empty_database_url)

    migrations.downgrade(empty_database_url, "base")

    assert read_schema(empty_database_url) == ({}, None)


def test_upgrade_after_downgrade_to_base_works(empty_database_url):
    migrations.upgrade(empty_database_url)
    migrations.downgrade(empty_database_url, "base")

    migrations.upgrade(empty_database_url)

    tables, revision = read_schema(empty_database_url)
    assert tables == expected_schema()
    assert revision == migrations.head_revision()


def _migrate_command_env(url: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in Settings.model_fields
    }
    env.update(DATABASE_URL=url, LOG_FORMAT="json", ENVIRONMENT="development")
    return env


async def _upgrade_together(
    url: str, cwd: Path, count: int
) -> tuple[list[tuple[int, str]], int]:
    """Start `count` `python -m app migrate` at once on `url`: their exit codes
    and output, and how many of them queued on the migration lock.

    The test holds the migration lock until every process queues on it, so they
    all begin to migrate at the same instant.
    """
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    holder = await asyncpg.connect(dsn)
    processes: list[subprocess.Popen[str]] = []
    try:
        key = migrations.MIGRATION_LOCK_KEY
        await holder.execute("SELECT pg_advisory_lock($1)", key)
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "app", "migrate"],
                env=_migrate_command_env(url),
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(count)
        ]
        deadline = time.monotonic() + 60
        queued = 0
        # Stops early if a process ends: one that does not wait for the lock.
        while queued < count and time.monotonic() < deadline:
            if any(process.poll() is not None for process in processes):
                break
            await asyncio.sleep(0.1)
            queued = await holder.fetchval(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d "
                "ON d.oid = l.database WHERE d.datname = current_database() "
                "AND l.locktype = 'advisory' AND NOT l.granted"
            )
        await holder.execute("SELECT pg_advisory_unlock($1)", key)
        results = []
        for process in processes:
            output, _ = process.communicate(timeout=120)
            results.append((process.returncode, output))
        return results, queued
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
        await holder.close()


def test_concurrent_upgrades_of_one_empty_postgres_database_all_succeed(tmp_path):
    url = create_postgres_database()
    try:
        results, queued = asyncio.run(_upgrade_together(url, tmp_path, count=3))

        for returncode, output in results:
            assert returncode == 0, output
            assert "database is at head" in output
        tables, revision = read_schema(url)
        assert tables == expected_schema()
        assert revision == migrations.head_revision()
        assert queued == 3, "the upgrades did not wait for the migration lock"
    finally:
        drop_postgres_database(url)
