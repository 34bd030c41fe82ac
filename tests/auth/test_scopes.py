"""Scoped API keys: a key for one merchant sees and changes nothing of
another's; admin-only calls need an admin key."""

from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.models import ApiKey
from app.core.db import Database
from app.orders.service import store_orders
from app.products.service import store_products
from app.trackstar.schemas import TrackstarOrder, TrackstarProduct, TrackstarWarehouse
from app.warehouses.service import store_warehouses
from tests.conftest import CONNECTION_ID
from tests.fixtures import builders
from tests.fixtures.forwarding import connect

pytestmark = pytest.mark.asyncio

OURS = CONNECTION_ID
THEIRS = "conn_other_merchant"


async def key(
    database: Database,
    name: str,
    *,
    connections: list[str] | None = None,
    admin: bool = False,
) -> dict[str, str]:
    async with database.transaction() as session:
        issued = await auth_service.create_api_key(
            session, name=name, connection_ids=connections, is_admin=admin
        )
    return {"Authorization": f"Bearer {issued.key}"}


@pytest_asyncio.fixture
async def two_merchants(app, database) -> None:
    for connection_id, suffix in ((OURS, "a"), (THEIRS, "b")):
        order = builders.order(f"ord_{suffix}")
        product = builders.product(f"prod_{suffix}")
        warehouse = builders.warehouse(f"wh_{suffix}")
        async with database.transaction() as session:
            await store_orders(
                session,
                connection_id=connection_id,
                orders=[(TrackstarOrder.model_validate(order), order)],
            )
            await store_products(
                session,
                connection_id=connection_id,
                products=[(TrackstarProduct.model_validate(product), product)],
            )
            await store_warehouses(
                session,
                connection_id=connection_id,
                warehouses=[(TrackstarWarehouse.model_validate(warehouse), warehouse)],
            )
        await connect(app, connection_id)


@pytest_asyncio.fixture
async def ours(database) -> dict[str, str]:
    return await key(database, "our-wms", connections=[OURS])


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


@pytest.mark.usefixtures("two_merchants")
@pytest.mark.parametrize(
    "path", ["/api/v1/orders", "/api/v1/products", "/api/v1/warehouses"]
)
async def test_lists_leave_out_other_connections(client, ours, path):
    listed = ids(await client.get(path, headers=ours))

    assert listed
    assert all(item.endswith("_a") for item in listed)


@pytest.mark.usefixtures("two_merchants")
async def test_filtering_on_another_connection_finds_nothing(client, ours):
    response = await client.get(
        "/api/v1/orders", params={"connection_id": THEIRS}, headers=ours
    )

    assert ids(response) == []


@pytest.mark.usefixtures("two_merchants")
@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/api/v1/orders/ord_b", "OrderNotFound"),
        ("/api/v1/products/prod_b", "ProductNotFound"),
    ],
)
async def test_a_record_of_another_connection_is_404(client, ours, path, error):
    response = await client.get(path, headers=ours)

    assert response.status_code == 404
    assert response.json()["error"] == error


@pytest.mark.usefixtures("two_merchants")
async def test_writing_to_another_connections_records_is_404_and_stores_nothing(
    client, ours, database
):
    shipment = await client.post(
        "/api/v1/orders/ord_b/shipments",
        json={"tracking_number": "1Z"},
        headers=ours,
    )
    adjustment = await client.post(
        "/api/v1/products/prod_b/inventory-adjustments",
        json={"quantity": 1, "adjustment_type": "increase", "warehouse_id": "wh_1"},
        headers=ours,
    )

    assert (shipment.status_code, adjustment.status_code) == (404, 404)
    assert shipment.json()["error"] == "OrderNotFound"
    everyone = await key(database, "everyone")
    listed = await client.get("/api/v1/shipments", headers=everyone)
    assert ids(listed) == []


@pytest.mark.usefixtures("two_merchants")
async def test_shipments_of_another_connection_are_invisible(client, database, ours):
    theirs = await key(database, "their-wms", connections=[THEIRS])
    created = await client.post(
        "/api/v1/orders/ord_b/shipments", json={"tracking_number": "1Z"}, headers=theirs
    )
    assert created.status_code == 202
    shipment_id = created.json()["id"]

    shown = await client.get(f"/api/v1/shipments/{shipment_id}", headers=ours)
    listed = await client.get("/api/v1/shipments", headers=ours)
    theirs_listed = await client.get("/api/v1/shipments", headers=theirs)

    assert shown.status_code == 404
    assert ids(listed) == []
    assert ids(theirs_listed) == [shipment_id]


@pytest.mark.usefixtures("two_merchants")
async def test_a_key_for_several_connections_sees_both(client, database):
    both = await key(database, "3pl", connections=[OURS, THEIRS])

    listed = ids(await client.get("/api/v1/orders", headers=both))

    assert sorted(listed) == ["ord_a", "ord_b"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/connections"),
        ("POST", f"/api/v1/connections/{OURS}/sync"),
        ("GET", "/api/v1/webhook-events"),
        ("GET", "/api/v1/webhook-events/1"),
        ("POST", "/api/v1/shipments/1/retry"),
        ("POST", "/api/v1/inventory-adjustments/1/retry"),
    ],
)
async def test_admin_calls_answer_403_to_a_key_without_the_right(
    client, ours, method, path
):
    response = await client.request(method, path, headers=ours)

    assert response.status_code == 403
    assert response.json() == {
        "error": "AdminKeyRequired",
        "detail": "This call needs an admin API key.",
    }


async def test_admin_key_reaches_admin_calls(client, database):
    admin = await key(database, "ops", admin=True)

    response = await client.get("/api/v1/webhook-events", headers=admin)

    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Basic dXNlcjpwYXNz", "Bearer tsf_nope_nope", "Bearer x" * 50],
    ids=["missing", "empty", "no-key", "basic", "unknown", "garbage"],
)
async def test_no_or_unknown_key_is_401(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get("/api/v1/orders", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "InvalidApiKey"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_is_401(client, database):
    headers = await key(database, "leaving")
    async with database.transaction() as session:
        await auth_service.revoke_api_key(session, name="leaving")

    response = await client.get("/api/v1/orders", headers=headers)

    assert response.status_code == 401
    assert response.json()["detail"] == "The API key has been revoked."


async def test_key_is_stored_only_as_a_hash_and_its_use_is_recorded(client, database):
    headers = await key(database, "hashed")
    plain = headers["Authorization"].removeprefix("Bearer ")

    await client.get("/api/v1/orders", headers=headers)

    async with database.transaction() as session:
        stored = await session.scalar(select(ApiKey).where(ApiKey.name == "hashed"))
    assert stored is not None
    columns: dict[str, Any] = {
        c.name: getattr(stored, c.name) for c in ApiKey.__table__.columns
    }
    assert all(plain not in str(value) for value in columns.values())
    assert stored.last_used_at is not None


async def test_keys_carry_256_bits_of_randomness(database):
    async with database.transaction() as session:
        issued = [
            await auth_service.create_api_key(session, name=f"k{n}") for n in range(3)
        ]

    secrets = [item.key.split("_", 2)[2] for item in issued]
    assert len(set(secrets)) == 3
    assert all(len(secret) >= 43 for secret in secrets)
