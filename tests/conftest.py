"""Fixtures: a real Postgres and an SQLite file per test, the app on the ASGI
transport, API keys, and Svix-signed deliveries.

Every test that asks for `database_url` runs twice, on Postgres and on SQLite.
Postgres gets one database per run, migrated once with Alembic and emptied
after each test; SQLite gets a fresh copy of a migrated file per test. Tests
commit for real, so concurrent requests see each other as in production.
"""

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from app.auth import service as auth_service
from app.core import migrations
from app.core.db import Database
from app.core.models import Base
from app.core.settings import Settings, normalize_database_url
from app.main import create_app
from tests.fixtures.fake_trackstar import FakeTrackstar
from tests.signing import TEST_SECRET

DEFAULT_TEST_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_API_KEY = "tsk_test_organisation_key_0123456789"
TEST_SECRET_KEY = "test-secret-key-for-encrypting-access-tokens"
CONNECTION_ID = "conn_7f3a9c2e5b1d4e80"
ACCESS_TOKEN = "tok_connection_secret_5f2b9c1d7e3a4068"
BACKENDS = ("postgresql", "sqlite")


def _server_url() -> str:
    return normalize_database_url(
        os.environ.get("TEST_DATABASE_URL", DEFAULT_TEST_DATABASE_URL)
    )


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(_server_url()))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def terminate_connections(url: str) -> None:
    """Close every connection to database `url` from the server side, as a
    restart of the server would."""
    connection = await asyncpg.connect(_asyncpg_dsn(_server_url()))
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            url.rsplit("/", 1)[1],
        )
    finally:
        await connection.close()


def server_database_url(name: str) -> str:
    """The URL of database `name` on the test server."""
    return _with_database(_server_url(), name)


def create_postgres_database(name: str | None = None) -> str:
    """A new empty database on the test server; its URL."""
    name = name or f"tsf_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    return server_database_url(name)


def drop_postgres_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    migrations.upgrade(url)
    yield url
    drop_postgres_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrations.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


async def _empty_postgres(url: str) -> None:
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        yield url
        asyncio.run(_empty_postgres(url))
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "service.db"
        shutil.copy(template, path)
        yield f"sqlite+aiosqlite:///{path}"


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "trackstar_webhook_secret": TEST_SECRET,
        "secret_key": TEST_SECRET_KEY,
        "environment": "development",
        "log_format": "json",
        "log_level": "INFO",
        "trackstar_api_key": TEST_API_KEY,
        # Worker tests drive deliveries step by step; no loop in the app.
        "run_worker": False,
        **overrides,
    }
    # model_validate skips the environment and `.env`: tests see only these values.
    return Settings.model_validate(values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def fake() -> FakeTrackstar:
    """Trackstar at the HTTP boundary, knowing the test connection's token."""
    return FakeTrackstar(api_key=TEST_API_KEY, tokens={ACCESS_TOKEN: CONNECTION_ID})


@pytest_asyncio.fixture
async def app(settings: Settings, fake: FakeTrackstar) -> AsyncIterator[FastAPI]:
    application = create_app(settings, trackstar_transport=fake.transport())
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver"
    ) as http_client:
        yield http_client


@pytest.fixture
def database(app: FastAPI) -> Database:
    db: Database = app.state.database
    return db


@pytest_asyncio.fixture
async def api_headers(database: Database) -> dict[str, str]:
    async with database.transaction() as session:
        # Admin and unscoped, so that tests reach every endpoint; scoped keys
        # are tested in tests/auth.
        issued = await auth_service.create_api_key(
            session, name="test-wms", is_admin=True
        )
    return {"Authorization": f"Bearer {issued.key}"}
