"""Reconciliation in the worker, pulls requested by events and the API, and
oversized webhook events completed through the API."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from app.connections.models import Connection
from app.core.db import Database
from app.core.timestamps import format_timestamp
from app.orders.models import Order
from app.sync.models import SyncState
from app.sync.puller import Puller
from app.sync.reconcile import reconcile_once
from app.webhooks.models import WebhookEvent
from app.webhooks.tasks import complete_pending_events
from tests.conftest import CONNECTION_ID, make_settings
from tests.fixtures import builders
from tests.fixtures.fake_trackstar import respond
from tests.fixtures.forwarding import connect
from tests.signing import signed_headers

pytestmark = pytest.mark.asyncio

RECENT = format_timestamp(datetime.now(UTC) - timedelta(hours=2))
DATA_URL = "https://production.trackstarhq.com/webhooks/events/evt_1/data"
DOWNLOAD_URL = "https://downloads.example.com/evt_1.json?signature=abc"


@pytest.fixture
def settings(database_url: str):
    return make_settings(database_url, sync_page_size=10)


@pytest_asyncio.fixture
async def connected(app) -> None:
    await connect(app)


@pytest.fixture
def puller(app, settings) -> Puller:
    return Puller(
        database=app.state.database,
        client=app.state.trackstar,
        box=app.state.secret_box,
        settings=settings,
    )


def an_order(order_id: str = "ord_big", **overrides: Any) -> dict[str, Any]:
    return builders.order(
        order_id, updated_date=RECENT, trackstar_updated_date=RECENT, **overrides
    )


async def post_event(
    client, event_type: str, data: dict[str, Any], **extra
) -> dict[str, Any]:
    envelope = builders.envelope(event_type, data) | extra
    envelope["connection_id"] = CONNECTION_ID
    body = builders.to_json(envelope)
    response = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


async def event(database: Database, event_id: int) -> WebhookEvent:
    async with database.transaction() as session:
        found = await session.get(WebhookEvent, event_id)
    assert found is not None
    return found


async def states(database: Database) -> dict[str, SyncState]:
    async with database.transaction() as session:
        rows = (await session.scalars(select(SyncState))).all()
    return {row.resource: row for row in rows}


@pytest.mark.usefixtures("connected")
async def test_truncated_event_is_stored_pending_then_completed_from_data_url(
    app, client, fake, database
):
    full = an_order(status="confirmed")
    answer = await post_event(
        client,
        "cart-order.updated",
        {"id": "ord_big"},
        data_truncated=True,
        data_url=DATA_URL,
    )
    assert answer["status"] == "pending"
    fake.script(
        "GET",
        "/webhooks/events/evt_1/data",
        respond(200, {"download_url": DOWNLOAD_URL}),
    )
    full_event = builders.envelope("cart-order.updated", full)
    fake.script(
        "GET", "/evt_1.json", respond(200, json.loads(builders.to_json(full_event)))
    )

    completed = await complete_pending_events(
        database, app.state.trackstar, app.state.secret_box
    )

    assert completed == 1
    done = await event(database, answer["event_id"])
    assert done.status == "processed"
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, "ord_big"))
    assert order is not None
    assert order.status == "confirmed"
    download = next(r for r in fake.requests if r.path == "/evt_1.json")
    assert "x-trackstar-api-key" not in download.headers
    assert "x-trackstar-access-token" not in download.headers
    pointer = next(r for r in fake.requests if r.path.endswith("/data"))
    assert "x-trackstar-api-key" in pointer.headers


@pytest.mark.usefixtures("connected")
async def test_truncated_event_falls_back_to_reading_the_record(
    app, client, fake, database
):
    fake.add_order(CONNECTION_ID, an_order(status="processing"))
    answer = await post_event(
        client,
        "cart-order.updated",
        {"id": "ord_big"},
        data_truncated=True,
        data_url=DATA_URL,
    )
    fake.script(
        "GET", "/webhooks/events/evt_1/data", respond(404, {"error": "Expired"})
    )

    await complete_pending_events(database, app.state.trackstar, app.state.secret_box)

    assert (await event(database, answer["event_id"])).status == "processed"
    reads = [r.path for r in fake.requests if r.method == "GET"]
    assert reads == ["/webhooks/events/evt_1/data", "/cart/orders/ord_big"]


@pytest.mark.usefixtures("connected")
async def test_truncated_event_stays_pending_and_is_retried_later(
    app, client, fake, database
):
    answer = await post_event(
        client, "cart-order.updated", {"id": "ord_missing"}, data_truncated=True
    )

    completed = await complete_pending_events(
        database, app.state.trackstar, app.state.secret_box
    )

    assert completed == 0
    waiting = await event(database, answer["event_id"])
    assert waiting.status == "pending"
    assert waiting.attempts == 1
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at > datetime.now(UTC)
    assert "last try failed" in (waiting.reason or "")
    again = await complete_pending_events(
        database, app.state.trackstar, app.state.secret_box
    )
    assert again == 0
    assert len([r for r in fake.requests if r.method == "GET"]) == 1


async def test_truncated_event_with_nothing_to_fetch_by_is_quarantined(client):
    answer = await post_event(
        client, "cart-order.updated", {"note": "no id"}, data_truncated=True
    )

    assert answer["status"] == "quarantined"


@pytest.mark.usefixtures("connected")
async def test_historical_sync_completed_requests_a_full_pull(client, database):
    answer = await post_event(
        client,
        "connection.historical-sync-completed",
        {"resource": "orders", "oldest_data_date": RECENT, "newest_data_date": RECENT},
    )

    assert answer["status"] == "processed"
    requested = await states(database)
    assert requested["orders"].requested_at is not None
    assert requested["orders"].requested_full is True
    assert "products" not in requested


async def test_historical_sync_for_an_unknown_connection_is_ignored(client, database):
    answer = await post_event(
        client, "connection.historical-sync-completed", {"resource": "orders"}
    )

    assert answer["status"] == "ignored"
    assert await states(database) == {}


@pytest.mark.usefixtures("connected")
async def test_reconciliation_pulls_every_resource_of_a_new_connection(
    fake, puller, settings, database
):
    fake.add_order(CONNECTION_ID, an_order("ord_1"))
    fake.add_product(CONNECTION_ID, builders.product("prod_1", updated_date=RECENT))
    fake.add_warehouse(CONNECTION_ID, builders.warehouse("wh_1", updated_date=RECENT))

    due = await reconcile_once(database, puller, settings, asyncio.Event())

    assert due == 3
    pulled = await states(database)
    assert all(state.last_success_at is not None for state in pulled.values())
    assert {state.records_pulled for state in pulled.values()} == {1}
    assert await reconcile_once(database, puller, settings, asyncio.Event()) == 0


@pytest.mark.usefixtures("connected")
async def test_reconciliation_pulls_again_after_the_interval_since_the_watermark(
    fake, puller, settings, database
):
    await reconcile_once(database, puller, settings, asyncio.Event())
    async with database.transaction() as session:
        for state in (await session.scalars(select(SyncState))).all():
            state.last_success_at = datetime.now(UTC) - settings.sync_interval
    before = len(fake.requests)

    assert await reconcile_once(database, puller, settings, asyncio.Event()) == 3

    incremental = fake.requests[before:]
    assert all("trackstar_updated_date[gte]" in r.query for r in incremental)


@pytest.mark.usefixtures("connected")
async def test_reconciliation_skips_a_suspended_connection(
    fake, puller, settings, database
):
    async with database.transaction() as session:
        connection = await session.get(Connection, CONNECTION_ID)
        assert connection is not None
        connection.suspended_at = datetime.now(UTC)

    await reconcile_once(database, puller, settings, asyncio.Event())

    assert fake.requests == []


@pytest.mark.usefixtures("connected")
async def test_connections_api_shows_counts_and_sync_state(
    client, api_headers, fake, puller, settings, database
):
    fake.add_order(CONNECTION_ID, an_order("ord_1"))
    await reconcile_once(database, puller, settings, asyncio.Event())

    response = await client.get("/api/v1/connections", headers=api_headers)

    assert response.status_code == 200
    (shown,) = response.json()["data"]
    assert shown["id"] == CONNECTION_ID
    assert shown["counts"] == {"orders": 1, "products": 0, "warehouses": 0}
    sync = {item["resource"]: item for item in shown["sync"]}
    assert set(sync) == {"orders", "products", "warehouses"}
    assert sync["orders"]["records_pulled"] == 1
    assert sync["orders"]["watermark"] is not None
    assert sync["orders"]["last_error"] is None
    assert sync["orders"]["running"] is False


@pytest.mark.usefixtures("connected")
async def test_sync_request_through_the_api_is_run_by_the_worker(
    client, api_headers, fake, puller, settings, database
):
    await reconcile_once(database, puller, settings, asyncio.Event())
    fake.add_order(CONNECTION_ID, an_order("ord_late"))

    response = await client.post(
        f"/api/v1/connections/{CONNECTION_ID}/sync",
        json={"resources": ["orders"]},
        headers=api_headers,
    )
    due = await reconcile_once(database, puller, settings, asyncio.Event())

    assert response.status_code == 202
    requested = {item["resource"]: item for item in response.json()["sync"]}
    assert requested["orders"]["requested_at"] is not None
    assert requested["products"]["requested_at"] is None
    assert due == 1
    async with database.transaction() as session:
        assert await session.get(Order, (CONNECTION_ID, "ord_late")) is not None
    assert (await states(database))["orders"].requested_at is None


async def test_sync_request_for_an_unknown_connection_is_404(client, api_headers):
    response = await client.post(
        "/api/v1/connections/conn_nope/sync", headers=api_headers
    )

    assert response.status_code == 404
    assert response.json()["error"] == "ConnectionNotFound"
