"""The receiver through the whole application: verify, store, apply, answer."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.core.db import Database
from app.main import create_app
from app.orders.models import Order, OrderLine
from app.products.models import Product
from app.warehouses.models import Warehouse
from app.webhooks.models import WebhookEvent
from app.webhooks.service import purge_events
from tests.conftest import make_settings
from tests.signing import sample, sample_bytes, signed_headers

pytestmark = pytest.mark.asyncio

URL = "/webhooks/trackstar"
ORDER_ID = "ord_5b1e0c7a93d24f68"
CONNECTION_ID = "conn_7f3a9c2e5b1d4e80"


async def post(client: httpx.AsyncClient, body: bytes, **kwargs) -> httpx.Response:
    return await client.post(URL, content=body, headers=signed_headers(body, **kwargs))


async def count(database: Database, model, *conditions) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).select_from(model).where(*conditions)
        return int(await session.scalar(statement) or 0)


async def events(database: Database) -> list[WebhookEvent]:
    async with database.transaction() as session:
        result = await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))
        return list(result.all())


def with_data(name: str, **changes) -> bytes:
    envelope = sample(name)
    envelope["data"].update(changes)
    return json.dumps(envelope, ensure_ascii=False).encode()


async def test_order_created_sample_is_stored_with_lines_and_exact_money(
    client, database
):
    response = await post(client, sample_bytes("cart-order.created"))

    assert response.status_code == 200
    assert response.json() == {"status": "processed", "event_id": 1}
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
        lines = (
            await session.scalars(select(OrderLine).order_by(OrderLine.position))
        ).all()
    assert order is not None
    assert order.status == "open"
    assert order.total_price == Decimal("55.08")
    assert order.total_tax == Decimal("3.60")
    assert order.invoice_currency_code == "USD"
    assert order.updated_date == datetime(2026, 3, 14, 9, 12, 45, tzinfo=UTC)
    assert [line.line_item_id for line in lines] == [
        "li_2f8a4c6e0b1d",
        "li_4b0d6f8a2c3e",
        "li_6d2f8b0c4e5a",
    ]
    assert lines[0].unit_price == Decimal("19.99")
    assert lines[2].product_id is None
    assert lines[2].product_sku is None
    raw = json.loads(sample_bytes("cart-order.created"), parse_float=Decimal)
    assert order.record == raw["data"]


async def test_non_ascii_text_is_kept_exactly(client, database):
    body = sample_bytes("cart-order.created")

    await post(client, body)

    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
        stored = await session.scalar(select(WebhookEvent.body))
    assert order is not None
    assert order.ship_to_address is not None
    assert order.ship_to_address["full_name"] == "Zoë Müller"
    assert order.ship_to_address["city"] == "京都市"
    assert stored == body


@pytest.mark.parametrize(
    "name",
    [
        "cart-order.created",
        "cart-order.updated",
        "cart-order.cart-shipment.created",
        "cart-product.created",
        "cart-product.created.parent",
        "cart-product.updated",
        "cart-warehouse.created",
    ],
)
async def test_each_sample_event_is_processed(client, database, name):
    response = await post(client, sample_bytes(name))

    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    record_id = sample(name)["data"]["id"]
    models: dict[str, Any] = {"order": Order, "produ": Product, "wareh": Warehouse}
    model = models[name[5:10]]
    assert await count(database, model, model.id == record_id) == 1


async def test_shipment_event_alias_is_handled_as_the_same_event(client, database):
    envelope = sample("cart-order.cart-shipment.created")
    envelope["event_type"] = "cart-order.shipment.created"
    body = json.dumps(envelope).encode()

    response = await post(client, body)

    assert response.json()["status"] == "processed"
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
    assert order is not None
    assert order.status == "fulfilled"
    assert [s["tracking_number"] for s in order.shipments] == ["1ZEXAMPLE0000000001"]


async def test_parent_product_keeps_no_price_or_inventory(client, database):
    await post(client, sample_bytes("cart-product.created.parent"))

    async with database.transaction() as session:
        parent = await session.scalar(select(Product))
    assert parent is not None
    assert parent.is_variant is False
    assert parent.price is None
    assert parent.inventory is None
    assert parent.record["price"] is not None


async def test_variant_keeps_inventory_by_warehouse(client, database):
    await post(client, sample_bytes("cart-product.updated"))

    async with database.transaction() as session:
        variant = await session.scalar(select(Product))
    expected = sample("cart-product.updated")["data"]
    assert variant is not None
    assert variant.is_variant is True
    assert variant.inventory == expected["inventory"]
    assert variant.inventory_by_warehouse_id == expected["inventory_by_warehouse_id"]
    assert variant.price == Decimal(str(expected["price"]))


async def test_duplicate_delivery_is_acknowledged_once(client, database):
    body = sample_bytes("cart-order.created")
    headers = signed_headers(body, message_id="msg_same")

    first = await client.post(URL, content=body, headers=headers)
    second = await client.post(URL, content=body, headers=headers)

    assert first.json() == {"status": "processed", "event_id": 1}
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    stored = await events(database)
    assert second.json()["event_id"] == stored[1].id
    assert [(e.status, e.duplicate_of_id) for e in stored] == [
        ("processed", None),
        ("duplicate", 1),
    ]
    assert stored[1].body is None
    assert await count(database, Order) == 1


async def test_replay_with_new_timestamp_is_a_duplicate(client, database):
    body = sample_bytes("cart-product.created")
    await post(client, body, message_id="msg_replayed")

    later = datetime.now(UTC) + timedelta(seconds=30)
    replay = await post(client, body, message_id="msg_replayed", timestamp=later)

    assert replay.json()["status"] == "duplicate"
    assert (
        await count(database, WebhookEvent, WebhookEvent.dedupe_key.is_not(None)) == 1
    )


async def test_concurrent_copies_are_stored_once(client, database):
    body = sample_bytes("cart-order.created")
    headers = signed_headers(body, message_id="msg_concurrent")

    responses = await asyncio.gather(
        *(client.post(URL, content=body, headers=headers) for _ in range(5))
    )

    assert all(response.status_code == 200 for response in responses)
    statuses = sorted(response.json()["status"] for response in responses)
    assert statuses == ["duplicate"] * 4 + ["processed"]
    assert (
        await count(database, WebhookEvent, WebhookEvent.dedupe_key.is_not(None)) == 1
    )
    assert await count(database, OrderLine) == 3


async def test_older_event_after_newer_is_stale_and_changes_nothing(client, database):
    await post(client, sample_bytes("cart-order.updated"))

    response = await post(client, sample_bytes("cart-order.created"))

    assert response.json()["status"] == "stale"
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
        stale = await session.scalar(
            select(WebhookEvent).where(WebhookEvent.status == "stale")
        )
    assert order is not None
    assert order.status == "confirmed"
    assert stale is not None
    assert stale.reason == "a newer version is stored"


async def test_update_for_unknown_order_creates_it(client, database):
    response = await post(client, sample_bytes("cart-order.updated"))

    assert response.json()["status"] == "processed"
    assert await count(database, Order) == 1


async def test_out_of_order_events_end_at_the_newest_state(client, database):
    names = [
        "cart-order.cart-shipment.created",
        "cart-order.created",
        "cart-order.updated",
    ]

    results = [(await post(client, sample_bytes(name))).json() for name in names]

    assert [result["status"] for result in results] == ["processed", "stale", "stale"]
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
    assert order is not None
    assert order.status == "fulfilled"


async def test_equal_updated_date_uses_trackstar_updated_date(client, database):
    newer = with_data(
        "cart-order.created", trackstar_updated_date="2026-03-14T11:00:00Z"
    )
    older = with_data(
        "cart-order.created",
        status="confirmed",
        trackstar_updated_date="2026-03-14T10:30:00Z",
    )

    await post(client, newer)
    response = await post(client, older)

    assert response.json()["status"] == "stale"
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
    assert order is not None
    assert order.status == "open"


async def test_lines_follow_the_newest_version(client, database):
    created = sample("cart-order.created")
    created["data"]["updated_date"] = "2026-03-16T00:00:00Z"
    created["data"]["line_items"] = created["data"]["line_items"][:1]

    await post(client, sample_bytes("cart-order.created"))
    await post(client, json.dumps(created).encode())

    assert await count(database, OrderLine) == 1


async def test_unknown_event_type_is_recorded_and_ignored(client, database):
    body = json.dumps(
        {
            "connection_id": CONNECTION_ID,
            "event_type": "connection-error.created",
            "integration_name": "shopify",
            "data": {"id": "err_1"},
        }
    ).encode()

    response = await post(client, body)

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    (event,) = await events(database)
    assert event.event_type == "connection-error.created"
    assert event.body == body


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "body is not JSON"),
        (b"[1, 2, 3]", "body is not a JSON object"),
        (b'{"event_type": "cart-order.created", "data": {}}', "connection_id"),
        (
            b'{"connection_id": "c", "event_type": "cart-order.created", "data": 5}',
            "data",
        ),
        (b'{"connection_id": "c", "data": {}}', "event_type"),
        (b'{"a": 1, "b": NaN}', "body is not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "body is"),
    ],
)
async def test_authentic_but_malformed_body_is_quarantined(
    client, database, body, reason
):
    response = await post(client, body)

    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"
    (event,) = await events(database)
    assert event.status == "quarantined"
    assert event.reason is not None
    assert reason in event.reason
    assert event.body == body


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"status": "teleported"}, "data.status"),
        ({"updated_date": None}, "data.updated_date"),
        ({"updated_date": "yesterday"}, "data.updated_date"),
        ({"total_price": "a lot"}, "data.total_price"),
        ({"total_price": 1e300}, "data.total_price"),
        ({"line_items": [{"quantity": 1}]}, "data.line_items.0.line_item_id"),
        ({"line_items": [{"line_item_id": "x", "quantity": 2**40}]}, "quantity"),
        ({"id": "x" * 10_000}, "data.id"),
    ],
)
async def test_order_with_bad_fields_is_quarantined(client, database, changes, reason):
    response = await post(client, with_data("cart-order.created", **changes))

    assert response.json()["status"] == "quarantined"
    (event,) = await events(database)
    assert event.reason is not None
    assert reason in event.reason
    assert await count(database, Order) == 0


@pytest.mark.parametrize(
    "text", ["Zo\\u0000e", "\\ud800 lone surrogate"], ids=["nul", "surrogate"]
)
async def test_unstorable_text_is_quarantined_with_the_body_kept(
    client, database, text
):
    body = sample_bytes("cart-order.created").replace(
        b'"1 Sample Street"', f'"{text}"'.encode()
    )

    response = await post(client, body)

    assert response.json()["status"] == "quarantined"
    (event,) = await events(database)
    assert event.body == body
    assert event.reason is not None
    assert "address1" in event.reason


async def test_unknown_fields_are_accepted_and_kept(client, database):
    body = with_data("cart-order.created", brand_new_field={"nested": [1, 2]})

    response = await post(client, body)

    assert response.json()["status"] == "processed"
    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
    assert order is not None
    assert order.record["brand_new_field"] == {"nested": [1, 2]}


async def test_timestamps_with_offsets_and_fractions_are_stored_as_utc(
    client, database
):
    body = with_data(
        "cart-order.created",
        updated_date="2026-03-14T11:12:45.123456+02:00",
        latest_ship_date="2026-03-18T00:00",
    )

    await post(client, body)

    async with database.transaction() as session:
        order = await session.get(Order, (CONNECTION_ID, ORDER_ID))
    assert order is not None
    assert order.updated_date == datetime(2026, 3, 14, 9, 12, 45, 123456, tzinfo=UTC)
    assert order.latest_ship_date == datetime(2026, 3, 18, tzinfo=UTC)


async def test_webhook_headers_spelling_is_accepted(client):
    body = sample_bytes("cart-warehouse.created")

    response = await post(client, body, prefix="webhook")

    assert response.json()["status"] == "processed"


async def test_body_over_the_cap_is_refused_with_413(database_url):
    settings = make_settings(database_url, webhook_max_body_bytes=2048)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            body = sample_bytes("cart-order.created")
            assert len(body) > 2048

            async def chunks() -> AsyncIterator[bytes]:
                yield body

            response = await c.post(URL, content=chunks(), headers=signed_headers(body))
            small = await c.post(
                URL,
                content=sample_bytes("cart-warehouse.created"),
                headers=signed_headers(sample_bytes("cart-warehouse.created")),
            )

    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    assert small.status_code == 200


async def test_events_past_retention_are_purged_and_newer_ones_kept(client, database):
    await post(client, sample_bytes("cart-order.created"), message_id="msg_old")
    await post(client, sample_bytes("cart-product.created"), message_id="msg_new")
    async with database.transaction() as session:
        old = await session.scalar(
            select(WebhookEvent).where(WebhookEvent.message_id == "msg_old")
        )
        assert old is not None
        old.received_at = datetime.now(UTC) - timedelta(days=31)

    async with database.transaction() as session:
        removed = await purge_events(
            session, older_than=datetime.now(UTC) - timedelta(days=30)
        )

    assert removed == 1
    remaining = await events(database)
    assert [event.message_id for event in remaining] == ["msg_new"]
    # The purged id is forgotten: it would be taken as new after 30 days.
    assert await count(database, Order) == 1
