"""Input meant to break the service: it must answer 4xx (or store the event
as quarantined), never 5xx, and never crash."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.core.settings import Settings
from app.main import create_app
from app.orders.models import OrderLine
from app.webhooks.models import WebhookEvent
from tests.conftest import CONNECTION_ID, make_settings
from tests.fixtures import builders
from tests.fixtures.fake_trackstar import respond
from tests.fixtures.forwarding import (
    ORDER_ID,
    connect,
    deliver_due,
    seed_order,
    worker_for,
)
from tests.signing import sample_bytes, signed_headers

pytestmark = pytest.mark.asyncio

WEBHOOK = "/webhooks/trackstar"


async def count(database, model, *conditions) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).select_from(model).where(*conditions)
        return int(await session.scalar(statement) or 0)


async def test_order_with_ten_thousand_lines_is_stored_whole(
    client, api_headers, database
):
    lines = [
        builders.line_item(f"li_{n:05d}", product_sku=f"SKU-{n}", quantity=n % 7 + 1)
        for n in range(10_000)
    ]
    envelope = builders.envelope(
        "cart-order.created", builders.order("ord_huge", line_items=lines)
    )
    envelope["connection_id"] = CONNECTION_ID
    body = builders.to_json(envelope)

    response = await client.post(WEBHOOK, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    assert response.json()["status"] == "processed"
    assert await count(database, OrderLine) == 10_000
    listed = await client.get(
        "/api/v1/orders", params={"sku": "SKU-9999"}, headers=api_headers
    )
    assert [order["id"] for order in listed.json()["data"]] == ["ord_huge"]


async def test_shipment_too_large_for_trackstar_fails_alone(
    app, client, api_headers, fake, settings
):
    await connect(app)
    await seed_order(app, fake)
    other = builders.order("ord_small", updated_date="2026-03-14T09:12:45Z")
    await seed_order(app, fake, other)
    big = {
        "tracking_number": "1ZBIG",
        "line_items": [
            {"product_sku": f"SKU-{n}", "quantity": 1} for n in range(10_000)
        ],
    }
    path = f"/cart/orders/{ORDER_ID}/shipments"
    fake.script("POST", path, respond(413, {"error": "Request body too large"}))
    large = await client.post(
        f"/api/v1/orders/{ORDER_ID}/shipments", json=big, headers=api_headers
    )
    small = await client.post(
        "/api/v1/orders/ord_small/shipments",
        json={"tracking_number": "1ZSMALL"},
        headers=api_headers,
    )

    await deliver_due(worker_for(app, settings))

    failed = await client.get(
        f"/api/v1/shipments/{large.json()['id']}", headers=api_headers
    )
    done = await client.get(
        f"/api/v1/shipments/{small.json()['id']}", headers=api_headers
    )
    assert failed.json()["status"] == "failed"
    assert failed.json()["last_error"] == {
        "status_code": 413,
        "message": "Request body too large",
        "origin": None,
    }
    assert done.json()["status"] == "delivered"


@pytest.mark.parametrize(
    "depth", [1_000, 50_000], ids=["recursion-limit", "far-beyond"]
)
async def test_deeply_nested_json_is_quarantined(client, database, depth):
    body = b'{"a":' * depth + b"1" + b"}" * depth

    response = await client.post(WEBHOOK, content=body, headers=signed_headers(body))

    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"
    assert (
        await count(database, WebhookEvent, WebhookEvent.status == "quarantined") == 1
    )


@pytest.mark.parametrize(
    "amount",
    ["1e400", "-1e400", "1" + "0" * 5000, "1e-400", "123456789012345678901234567890.5"],
    ids=["huge-exponent", "negative-huge", "5000-digits", "tiny", "too-many-digits"],
)
async def test_numbers_that_overflow_are_quarantined_not_crashed(client, amount):
    raw = sample_bytes("cart-order.created").replace(
        b'"total_price": 55.08', f'"total_price": {amount}'.encode()
    )

    response = await client.post(WEBHOOK, content=raw, headers=signed_headers(raw))

    assert response.status_code == 200
    assert response.json()["status"] == "quarantined"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/orders", {"limit": str(10**30)}),
        ("/api/v1/orders", {"limit": "-1"}),
        ("/api/v1/shipments/" + str(2**70), {}),
        ("/api/v1/inventory-adjustments/-5", {}),
        ("/api/v1/webhook-events/" + "9" * 400, {}),
        ("/api/v1/orders", {"updated_since": "9999-12-31T23:59:59-05:00"}),
    ],
    ids=[
        "huge-limit",
        "negative-limit",
        "huge-id",
        "negative-id",
        "400-digits",
        "date",
    ],
)
async def test_numbers_out_of_range_in_the_api_are_422(
    client, api_headers, path, params
):
    response = await client.get(path, params=params, headers=api_headers)

    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orders/" + "o" * 10_000,
        "/api/v1/products/" + "p" * 10_000,
        "/api/v1/shipments/" + "1" * 10_000,
    ],
    ids=["order", "product", "shipment"],
)
async def test_ids_of_ten_thousand_characters_are_422(client, api_headers, path):
    response = await client.get(path, headers=api_headers)

    assert response.status_code == 422
    assert "o" * 200 not in response.text


async def test_shipment_for_an_id_of_ten_thousand_characters_is_422(
    client, api_headers
):
    response = await client.post(
        "/api/v1/orders/" + "x" * 10_000 + "/shipments",
        json={"tracking_number": "1Z"},
        headers=api_headers,
    )

    assert response.status_code == 422


@pytest.mark.parametrize(
    "order_id",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fapi%2fv1%2fwebhook-events",
        "1'%20OR%20'1'='1",
        "x%3B%20DROP%20TABLE%20orders%3B--",
        "%25%27%22%5C",
    ],
)
async def test_path_traversal_and_sql_in_ids_find_nothing(
    client, api_headers, order_id
):
    await client.post(
        WEBHOOK,
        content=sample_bytes("cart-order.created"),
        headers=signed_headers(sample_bytes("cart-order.created")),
    )

    response = await client.get(f"/api/v1/orders/{order_id}", headers=api_headers)

    assert response.status_code == 404
    assert response.json()["error"] in ("OrderNotFound", "NotFound")
    listed = await client.get("/api/v1/orders", headers=api_headers)
    assert len(listed.json()["data"]) == 1


@pytest.mark.parametrize(
    "value",
    ["' OR 1=1 --", "%", "_", "\\", "TEE%", "x'; DROP TABLE orders; --", "../../"],
)
async def test_sql_metacharacters_in_filters_match_literally(
    client, api_headers, value
):
    body = sample_bytes("cart-order.created")
    await client.post(WEBHOOK, content=body, headers=signed_headers(body))

    response = await client.get(
        "/api/v1/orders",
        params={"sku": value, "connection_id": value},
        headers=api_headers,
    )

    assert response.status_code == 200
    assert response.json()["data"] == []


@pytest.mark.parametrize("value", ["a\x00b", "\udc80"], ids=["nul", "lone-surrogate"])
async def test_unstorable_text_in_a_request_body_is_422(
    app, client, api_headers, fake, value
):
    await connect(app)
    await seed_order(app, fake)

    response = await client.post(
        f"/api/v1/orders/{ORDER_ID}/shipments",
        content=json.dumps({"tracking_number": "1Z", "note": value}).encode(),
        headers=api_headers | {"content-type": "application/json"},
    )

    assert response.status_code == 422


async def test_replayed_delivery_outside_the_window_is_401_and_not_stored(
    client, database
):
    body = sample_bytes("cart-order.created")
    captured = signed_headers(
        body,
        message_id="msg_captured",
        timestamp=datetime.now(UTC) - timedelta(hours=2),
    )

    response = await client.post(WEBHOOK, content=body, headers=captured)

    assert response.status_code == 401
    assert response.json() == {
        "error": "InvalidSignature",
        "detail": "The signature timestamp is outside the allowed window.",
    }
    assert await count(database, WebhookEvent) == 0


async def test_body_just_over_the_cap_is_413_even_with_a_false_length(database_url):

    settings: Settings = make_settings(database_url, webhook_max_body_bytes=1024)
    application = create_app(settings)
    body = b"x" * 1025
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:

            async def stream() -> Any:
                yield body

            response = await c.post(
                WEBHOOK,
                content=stream(),
                headers=signed_headers(body) | {"content-length": "10"},
            )

    assert response.status_code == 413


async def test_money_keeps_every_digit_through_the_api(client, api_headers):
    raw = sample_bytes("cart-order.created").replace(
        b'"total_price": 55.08', b'"total_price": 0.1000000000'
    )
    await client.post(WEBHOOK, content=raw, headers=signed_headers(raw))

    shown = await client.get("/api/v1/orders/ord_5b1e0c7a93d24f68", headers=api_headers)

    assert Decimal(shown.json()["total_price"]) == Decimal("0.1")
