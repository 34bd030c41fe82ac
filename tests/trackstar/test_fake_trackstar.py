"""The fake Trackstar API behaves as docs/trackstar-api.md documents."""

import asyncio
import copy
import json
import socket
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.fixtures.fake_trackstar import (
    FakeTrackstar,
    connect_error,
    respond,
    timeout_after_accept,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "api"
BASE_URL = "https://production.trackstarhq.com"
API_KEY = "test-api-key"
TOKEN, CONNECTION = "tok_1", "conn_1"
OTHER_TOKEN, OTHER_CONNECTION = "tok_2", "conn_2"
ORDER_ID = "ord_9c3e7a1f5b2d4e86"  # processing, one line, no shipments
SHIPMENTS = f"/cart/orders/{ORDER_ID}/shipments"
VARIANT_ID, PARENT_ID = "prod_3a7c5e9b1d0f4c26", "prod_8d2f1a6c0e4b4a39"
WAREHOUSE_A, WAREHOUSE_B = "wh_4c8e2a6f0b1d4f97", "wh_1b5d9f3a7e2c4a60"
NOW = 1773662400.0  # 2026-03-16T12:00:00Z
SHIPMENT = {
    "tracking_number": "1ZTEST0001",
    "tracking_url": "https://tracking.example.com/1ZTEST0001",
    "carrier_name": "UPS",
    "shipping_method_name": "Ground",
}


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return loaded


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeTrackstar:
    fake = FakeTrackstar(api_key=API_KEY, tokens={TOKEN: CONNECTION}, clock=clock)
    fake.add_connection(OTHER_CONNECTION, OTHER_TOKEN)
    for order in load("get-orders.page1")["data"]:
        fake.add_order(CONNECTION, order)
    for product in load("get-products")["data"]:
        fake.add_product(CONNECTION, product)
    return fake


def make_client(fake: FakeTrackstar, token: str = TOKEN) -> httpx.Client:
    headers = {"x-trackstar-api-key": API_KEY, "x-trackstar-access-token": token}
    return httpx.Client(transport=fake.transport(), base_url=BASE_URL, headers=headers)


@pytest.fixture
def api(fake: FakeTrackstar):
    with make_client(fake) as client:
        yield client


def ship(api: httpx.Client, body: Any = SHIPMENT, key: str | None = None):
    headers = {"Idempotency-Key": key} if key else {}
    return api.post(SHIPMENTS, json=body, headers=headers)


def test_shipment_is_created_and_echoed_by_get(fake, api):
    response = ship(api, {**SHIPMENT, "notify_customer": "yes"})

    assert response.status_code == 200
    body = response.json()
    assert body["unused_fields"] == ["notify_customer"]
    [shipment] = body["data"]["shipments"]
    assert shipment["shipment_id"] == body["id"]
    assert shipment["tracking_number"] == "1ZTEST0001"
    assert shipment["status"] == "shipped"
    assert shipment["line_items"][0]["product_sku"] == "TEE-BLU-L"
    assert shipment["line_items"][0]["quantity"] == 3
    assert body["data"]["status"] == "fulfilled"
    assert body["data"]["trackstar_updated_date"] == "2026-03-16T12:00:00Z"
    assert response.headers["x-request-id"].startswith("req_")
    assert response.headers["x-ratelimit-limit"] == "50"
    assert response.headers["x-ratelimit-reset"] == str(int(NOW) + 1)
    echoed = api.get(f"/cart/orders/{ORDER_ID}")
    assert echoed.json() == {"data": body["data"]}
    assert fake.order(CONNECTION, ORDER_ID) == body["data"]
    assert len(fake.writes("POST", r"/cart/orders/[^/]+/shipments")) == 1


def test_records_belong_to_the_token_connection(fake):
    with make_client(fake, OTHER_TOKEN) as other:
        response = other.get(f"/cart/orders/{ORDER_ID}")
    assert response.status_code == 404
    assert response.json()["id"] == ORDER_ID


def test_auth_errors(api):
    assert api.get("/cart/orders", headers={"x-trackstar-api-key": "x"}).json() == {
        "error": "Invalid API key",
        "origin": "trackstar",
    }
    unknown = api.get("/cart/orders", headers={"x-trackstar-access-token": "nope"})
    assert unknown.status_code == 401
    assert unknown.json()["origin"] == "trackstar"
    assert unknown.headers["x-request-id"]
    assert unknown.headers["x-ratelimit-remaining"] == "10"  # shown, not counted


def test_decimal_amounts_are_served_exactly(fake, api):
    order = copy.deepcopy(fake.order(CONNECTION, ORDER_ID))
    order["total_price"] = Decimal("64.170")
    fake.add_order(CONNECTION, order)
    raw = api.get(f"/cart/orders/{ORDER_ID}").text
    assert '"total_price":64.170' in raw


def test_idempotent_replay_writes_once(fake, api):
    first = ship(api, key="shipment:1")
    second = ship(api, key="shipment:1")

    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert second.content == first.content
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(fake.order(CONNECTION, ORDER_ID)["shipments"]) == 1
    assert len(fake.writes()) == 1


def test_idempotency_key_reused_with_another_body_is_400(fake, api):
    ship(api, key="shipment:1")
    response = ship(api, {**SHIPMENT, "tracking_number": "OTHER"}, key="shipment:1")
    assert response.status_code == 400
    assert response.json()["origin"] == "trackstar"
    assert len(fake.writes()) == 1


def test_idempotency_key_expires_after_24_hours(fake, api, clock):
    ship(api, key="shipment:1")
    clock.now += 24 * 3600
    again = ship(api, key="shipment:1")
    assert "idempotent-replayed" not in again.headers
    assert len(fake.order(CONNECTION, ORDER_ID)["shipments"]) == 2


def test_key_is_freed_after_an_error(fake, api):
    fake.script("POST", SHIPMENTS, respond(500))
    failed = ship(api, key="shipment:1")
    retried = ship(api, key="shipment:1")

    assert failed.status_code == 500
    assert failed.json() == {"error": "Internal Server Error", "origin": "trackstar"}
    assert retried.status_code == 200
    assert "idempotent-replayed" not in retried.headers
    assert len(fake.writes()) == 1


def test_null_and_empty_values_are_rejected(fake, api):
    body = {
        "tracking_number": "1ZTEST0001",
        "carrier_name": None,
        "tracking_url": "",
        "requested_shipping_method": "None",
        "line_items": [{"sku": "NULL", "quantity": 1}],
    }
    response = ship(api, body, key="shipment:1")

    assert response.status_code == 422
    payload = response.json()
    assert payload["error"] == "Validation failed"
    assert set(payload["detail"]["body"]) == {
        "carrier_name",
        "tracking_url",
        "requested_shipping_method",
        "line_items.0.sku",
    }
    assert fake.order(CONNECTION, ORDER_ID)["shipments"] == []
    assert fake.writes() == []
    assert ship(api, key="shipment:1").status_code == 200  # the key was freed


def test_unknown_order_is_404(api):
    response = api.post("/cart/orders/ord_missing/shipments", json=SHIPMENT)
    assert response.status_code == 404
    assert response.json()["id"] == "ord_missing"


def adjust(api: httpx.Client, product_id: str, **body: Any) -> httpx.Response:
    return api.put(f"/cart/products/{product_id}/adjust-inventory", json=body)


def test_adjust_inventory(fake, api):
    body = {"adjustment_type": "decrease", "quantity": 2, "warehouse_id": WAREHOUSE_A}
    response = adjust(api, VARIANT_ID, **body)
    assert response.status_code == 200
    assert response.json()["id"] == VARIANT_ID
    assert response.json()["unused_fields"] == []
    product = fake.product(CONNECTION, VARIANT_ID)
    assert product["inventory_by_warehouse_id"] == {WAREHOUSE_A: 6, WAREHOUSE_B: 4}
    assert product["inventory"] == 10
    assert product["updated_date"] == "2026-03-16T12:00:00Z"

    adjust(
        api, VARIANT_ID, adjustment_type="exact", quantity=0, warehouse_id=WAREHOUSE_B
    )
    product = fake.product(CONNECTION, VARIANT_ID)
    assert product["inventory_by_warehouse_id"] == {WAREHOUSE_A: 6, WAREHOUSE_B: 0}
    assert product["inventory"] == 6


def test_adjusting_a_parent_is_422(fake, api):
    response = adjust(api, PARENT_ID, adjustment_type="increase", quantity=1)
    assert response.status_code == 422
    assert "product_id" in response.json()["detail"]["path"]
    assert fake.writes() == []


def test_adjust_rejects_empty_values_and_bad_types(api):
    nulled = adjust(api, VARIANT_ID, adjustment_type="increase", quantity=None)
    assert nulled.json()["detail"]["body"] == {"quantity": ["Field may not be null."]}
    floated = adjust(api, VARIANT_ID, adjustment_type="increase", quantity=1.5)
    assert floated.status_code == 422
    assert adjust(
        api, "prod_missing", adjustment_type="increase", quantity=1
    ).json() == {
        "error": "Product not found",
        "id": "prod_missing",
    }


def seed_orders(fake: FakeTrackstar, count: int) -> None:
    template = fake.order(CONNECTION, ORDER_ID)
    for n in range(count):
        fake.add_order(
            CONNECTION,
            {
                **template,
                "id": f"ord_page_{n:02d}",
                "trackstar_updated_date": f"2026-03-16T10:{n:02d}:00Z",
            },
        )


FILTERS = {
    "trackstar_updated_date[gte]": "2026-03-16T10:00:00Z",
    "trackstar_updated_date[lte]": "2026-03-16T11:00:00Z",
    "status[in]": "processing,open",
}


def test_paging_with_repeated_filters(fake, api):
    seed_orders(fake, 5)
    seen: list[str] = []
    counts: list[int] = []
    token: str | None = None
    while True:
        params = {**FILTERS, "limit": "2"}
        if token:
            params["page_token"] = token
        page = api.get("/cart/orders", params=params).json()
        seen += [order["id"] for order in page["data"]]
        counts.append(page["total_count"])
        token = page["next_token"]
        if token is None:
            break
    assert counts == [2, 2, 1]
    assert seen == [f"ord_page_{n:02d}" for n in range(5)]


def test_changing_filters_mid_paging_is_422(fake, api):
    seed_orders(fake, 3)
    first = api.get("/cart/orders", params={**FILTERS, "limit": "1"}).json()
    changed = {**FILTERS, "status[in]": "open", "page_token": first["next_token"]}
    response = api.get("/cart/orders", params=changed)
    assert response.status_code == 422
    assert "page_token" in response.json()["detail"]["query"]


def test_list_limits_and_unknown_filters(api):
    ids = ",".join(f"ord_{n}" for n in range(101))
    too_many = api.get("/cart/orders", params={"ids[in]": ids})
    assert too_many.status_code == 422
    assert api.get("/cart/orders", params={"limit": "1001"}).status_code == 422
    unknown = api.get("/cart/products", params={"status[eq]": "open"})
    assert unknown.status_code == 422
    assert "status[eq]" in unknown.json()["error"]
    bad_op = api.get("/cart/orders", params={"updated_date[like]": "x"})
    assert "updated_date[like]" in bad_op.json()["detail"]["query"]


def test_ids_filter_overrides_other_filters(api):
    params = {"ids[in]": ORDER_ID, "status[eq]": "cancelled"}
    page = api.get("/cart/orders", params=params).json()
    assert [order["id"] for order in page["data"]] == [ORDER_ID]
    assert page["next_token"] is None


def test_rate_limit_is_enforced_per_token(fake, clock):
    fake.enforce_rate_limits = True
    fake.read_limit = 2
    with make_client(fake) as api, make_client(fake, OTHER_TOKEN) as other:
        assert [api.get("/cart/warehouses").status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        limited = api.get("/cart/warehouses")
        assert other.get("/cart/warehouses").status_code == 200
        clock.now += 1
        assert api.get("/cart/warehouses").status_code == 200
    assert limited.json() == {"error": "Rate limit exceeded", "origin": "trackstar"}
    assert limited.headers["retry-after"] == "1"
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert limited.headers["x-ratelimit-reset"] == str(int(NOW) + 1)
    assert fake.rate_limited == 2
    assert fake.window_counts[TOKEN] == {
        int(NOW): {"read": 4, "write": 0},
        int(NOW) + 1: {"read": 1, "write": 0},
    }


def test_timeout_after_accept_writes_then_raises(fake, api):
    fake.script("POST", SHIPMENTS, timeout_after_accept())
    with pytest.raises(httpx.ReadTimeout):
        ship(api, key="shipment:1")
    assert len(fake.order(CONNECTION, ORDER_ID)["shipments"]) == 1
    assert fake.requests[-1].status_code is None
    assert len(fake.writes()) == 1
    replay = ship(api, key="shipment:1")
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(fake.writes()) == 1


def test_down_and_connect_errors(fake, api):
    fake.script("GET", r"/cart/orders/.*", connect_error())
    with pytest.raises(httpx.ConnectError):
        api.get(f"/cart/orders/{ORDER_ID}")
    assert api.get(f"/cart/orders/{ORDER_ID}").status_code == 200
    fake.down = True
    with pytest.raises(httpx.ConnectError):
        ship(api)
    assert fake.writes() == []
    assert [r.status_code for r in fake.requests] == [None, 200, None]


@pytest.mark.asyncio
async def test_asgi_app_answers_like_the_transport(fake):
    transport = httpx.ASGITransport(app=fake.asgi_app(latency=0.05))
    headers = {"x-trackstar-api-key": API_KEY, "x-trackstar-access-token": TOKEN}
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE_URL, headers=headers
    ) as api:
        keyed = {"Idempotency-Key": "shipment:1"}
        first, concurrent = await asyncio.gather(
            api.post(SHIPMENTS, json=SHIPMENT, headers=keyed),
            api.post(SHIPMENTS, json=SHIPMENT, headers=keyed),
        )
        assert (first.status_code, concurrent.status_code) == (200, 409)
        fake.script("POST", SHIPMENTS, timeout_after_accept())
        assert (await api.post(SHIPMENTS, json=SHIPMENT)).status_code == 504
        fake.down = True
        assert (await api.get("/cart/orders")).status_code == 503
    assert len(fake.order(CONNECTION, ORDER_ID)["shipments"]) == 2


@pytest.mark.asyncio
async def test_asgi_app_is_served_by_uvicorn(fake):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake.asgi_app(), log_config=None, access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        headers = {"x-trackstar-api-key": API_KEY, "x-trackstar-access-token": TOKEN}
        async with httpx.AsyncClient(headers=headers) as client:
            url = f"http://127.0.0.1:{port}/cart/orders"
            response = await client.get(url, params={"limit": "1"})
    finally:
        server.should_exit = True
        await serving
        sock.close()
    assert response.status_code == 200
    assert response.json()["total_count"] == 1
    assert response.headers["x-request-id"].startswith("req_")
