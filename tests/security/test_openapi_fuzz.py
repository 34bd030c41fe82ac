"""Schemathesis against the service's own OpenAPI schema, with an admin key:
no request it can generate, valid or not, gets a 5xx, and every response
matches what the schema documents."""

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.auth import service as auth_service
from app.core import migrations
from app.core.db import Database, create_engine
from app.core.secrets import SecretBox
from app.main import create_app
from app.orders.service import store_orders
from app.products.service import store_products
from app.trackstar.schemas import TrackstarOrder, TrackstarProduct
from tests.conftest import (
    ACCESS_TOKEN,
    CONNECTION_ID,
    TEST_API_KEY,
    TEST_SECRET_KEY,
    create_postgres_database,
    drop_postgres_database,
    make_settings,
    server_database_url,
)
from tests.fixtures import builders
from tests.fixtures.fake_trackstar import FakeTrackstar

EXAMPLES_PER_OPERATION = 30


async def _seed(url: str) -> str:
    """An admin key, a connection, an order and a variant to find."""
    database = Database(create_engine(make_settings(url)))
    order = builders.order("ord_fuzz")
    product = builders.product("prod_fuzz")
    try:
        async with database.transaction() as session:
            issued = await auth_service.create_api_key(
                session, name="fuzz", is_admin=True
            )
            from app.connections.service import add_connection

            await add_connection(
                session,
                SecretBox([TEST_SECRET_KEY]),
                connection_id=CONNECTION_ID,
                access_token=ACCESS_TOKEN,
                integration_name="sandbox",
            )
            await store_orders(
                session,
                connection_id=CONNECTION_ID,
                orders=[(TrackstarOrder.model_validate(order), order)],
            )
            await store_products(
                session,
                connection_id=CONNECTION_ID,
                products=[(TrackstarProduct.model_validate(product), product)],
            )
    finally:
        await database.dispose()
    return issued.key


# Schemathesis needs the schema at collection time (its fixture-based loader
# does not work with this pytest), so the app is built here. It connects to
# its database lazily: the fixture below creates that database before any
# request is made.
DATABASE_NAME = f"tsf_test_fuzz_{uuid.uuid4().hex[:12]}"
DATABASE_URL = server_database_url(DATABASE_NAME)
FAKE = FakeTrackstar(api_key=TEST_API_KEY, tokens={ACCESS_TOKEN: CONNECTION_ID})
APP = create_app(make_settings(DATABASE_URL), trackstar_transport=FAKE.transport())

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def admin_headers() -> Iterator[dict[str, str]]:
    create_postgres_database(DATABASE_NAME)
    migrations.upgrade(DATABASE_URL)
    key = asyncio.run(_seed(DATABASE_URL))
    try:
        yield {"Authorization": f"Bearer {key}"}
    finally:
        # Schemathesis keeps each app's lifespan open; close it before the drop.
        schemathesis_asgi.shutdown_lifespans()
        drop_postgres_database(DATABASE_URL)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_never_fails_and_answers_as_documented(
    case: Any, admin_headers: dict[str, str]
) -> None:
    # A case whose headers schemathesis made invalid on purpose (no or a
    # malformed Authorization) goes out as generated and must be refused;
    # writing the admin key over it would turn it into a valid request that
    # the negative-data check then reports as "invalid data accepted".
    headers = (
        None if case.meta.is_negative_at(ParameterLocation.HEADER) else admin_headers
    )
    # Every check but "schema-valid data is accepted": a cursor is opaque, so a
    # string the API never issued is schema-valid yet refused (400) by design.
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])
