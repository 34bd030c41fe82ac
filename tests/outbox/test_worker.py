"""Delivery to Trackstar through the outbox, with Trackstar faked at the HTTP
boundary: every request the service makes is recorded by the fake."""

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import simplejson
from sqlalchemy import func, select

from app.connections.models import Connection
from app.core.db import Database
from app.core.models import utcnow
from app.outbox import service as outbox_service
from app.outbox.models import OutboxAttempt, OutboxMessage
from app.outbox.worker import OutboxWorker
from app.shipments.models import Shipment
from app.trackstar.client import TrackstarClient
from app.worker import build_outbox_worker
from tests.conftest import ACCESS_TOKEN, CONNECTION_ID, TEST_API_KEY
from tests.fixtures.fake_trackstar import (
    connect_error,
    respond,
    timeout_after_accept,
)
from tests.fixtures.forwarding import (
    ORDER_ID,
    VARIANT_ID,
    WAREHOUSE_ID,
    connect,
    deliver_due,
    sample_data,
    seed_order,
    seed_variant,
    worker_for,
)
from tests.signing import sample, signed_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("ready")]

SHIPMENT = {
    "tracking_number": "1ZTEST0000000000001",
    "tracking_url": "https://example.com/track/1ZTEST0000000000001",
    "carrier_name": "UPS",
    "shipping_method_name": "Ground",
}
SHIPMENTS_PATH = f"/cart/orders/{ORDER_ID}/shipments"
ADJUST_PATH = f"/cart/products/{VARIANT_ID}/adjust-inventory"


@pytest_asyncio.fixture
async def ready(app, fake) -> None:
    """A connection with its token, the sample order and a variant."""
    await connect(app)
    await seed_order(app, fake)
    await seed_variant(app, fake)


@pytest.fixture
def worker(app, settings) -> OutboxWorker:
    return worker_for(app, settings)


async def post_shipment(client, api_headers, body=None) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/orders/{ORDER_ID}/shipments",
        json=body or SHIPMENT,
        headers=api_headers,
    )
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def post_adjustment(client, api_headers, **body) -> dict[str, Any]:
    payload = {
        "quantity": 2,
        "adjustment_type": "decrease",
        "warehouse_id": WAREHOUSE_ID,
    }
    response = await client.post(
        f"/api/v1/products/{VARIANT_ID}/inventory-adjustments",
        json=payload | body,
        headers=api_headers,
    )
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


async def message(database, kind: str, subject_id: int) -> OutboxMessage:
    async with database.transaction() as session:
        return await outbox_service.message_for(
            session, kind=kind, subject_id=subject_id
        )


async def get(client, api_headers, path: str) -> dict[str, Any]:
    response = await client.get(path, headers=api_headers)
    assert response.status_code == 200
    shown: dict[str, Any] = response.json()
    return shown


async def test_shipment_is_sent_once_with_auth_headers_and_exact_body(
    client, api_headers, fake, worker
):
    created = await post_shipment(client, api_headers)

    assert await deliver_due(worker) == 1

    (write,) = fake.writes("POST")
    assert write.path == SHIPMENTS_PATH
    assert write.headers["x-trackstar-api-key"] == TEST_API_KEY
    assert write.headers["x-trackstar-access-token"] == ACCESS_TOKEN
    assert write.headers["content-type"] == "application/json"
    assert write.json == SHIPMENT
    assert write.idempotency_key is not None
    assert write.idempotency_key.startswith(f"shipment:{created['id']}:")
    shown = await get(client, api_headers, f"/api/v1/shipments/{created['id']}")
    assert shown["status"] == "delivered"
    assert shown["attempts"] == 1
    assert shown["last_error"] is None
    assert shown["trackstar_request_id"].startswith("req_")
    assert shown["trackstar_shipment_id"] is not None


async def test_null_and_empty_values_are_left_out_of_the_body(
    client, api_headers, fake, worker
):
    body = SHIPMENT | {
        "tracking_url": None,
        "carrier_name": "",
        "shop_id": "none",
        "shipping_cost": 4.5,
        "notes": {"gift": None, "inner": ["", "NULL"]},
        "warehouse_id": "  ",
    }
    await post_shipment(client, api_headers, body)

    await deliver_due(worker)

    (write,) = fake.writes("POST")
    assert write.json == {
        "tracking_number": SHIPMENT["tracking_number"],
        "shipping_method_name": "Ground",
        "shipping_cost": 4.5,
    }


async def test_delivered_shipment_updates_the_stored_order(
    client, api_headers, fake, worker
):
    await post_shipment(client, api_headers)

    await deliver_due(worker)

    order = await get(client, api_headers, f"/api/v1/orders/{ORDER_ID}")
    tracking = [shipment["tracking_number"] for shipment in order["shipments"]]
    assert tracking == [SHIPMENT["tracking_number"]]
    assert order["status"] == fake.order(CONNECTION_ID, ORDER_ID)["status"]


async def test_webhook_echo_of_our_shipment_creates_no_second_shipment(
    client, api_headers, fake, worker, database
):
    await post_shipment(client, api_headers)
    await deliver_due(worker)
    echo = sample("cart-order.cart-shipment.created")
    echo["data"] = fake.order(CONNECTION_ID, ORDER_ID)
    body = simplejson.dumps(echo, use_decimal=True).encode()

    response = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )

    assert response.json()["status"] in ("processed", "stale")
    async with database.transaction() as session:
        shipments = await session.scalar(select(func.count()).select_from(Shipment))
        messages = await session.scalar(select(func.count()).select_from(OutboxMessage))
    assert (shipments, messages) == (1, 1)
    assert await deliver_due(worker) == 0
    assert len(fake.writes("POST")) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "30"},
        {"x-rate-limit-retry-after": "30"},
        {"retry-after": "2", "x-rate-limit-retry-after": "30"},
        {"x-ratelimit-reset": "RESET+30", "x-ratelimit-remaining": "0"},
    ],
    ids=["retry-after", "old-spelling", "larger-of-both", "reset"],
)
async def test_rate_limited_write_waits_as_told_then_succeeds(
    client, api_headers, fake, worker, database, settings, headers
):
    now = utcnow()
    headers = {
        name: str(int(now.timestamp()) + 30) if value == "RESET+30" else value
        for name, value in headers.items()
    }
    fake.script("POST", SHIPMENTS_PATH, respond(429, {"error": "Too many"}, headers))
    created = await post_shipment(client, api_headers)

    await deliver_due(worker)

    waiting = await message(database, "shipment", created["id"])
    assert waiting.status == "pending"
    assert waiting.last_status_code == 429
    wait = (waiting.next_attempt_at - now).total_seconds()
    assert 27 <= wait <= 36
    assert worker.client.limiter.delay(CONNECTION_ID, "write") >= 25
    assert await deliver_due(worker, now=now + timedelta(seconds=10)) == 0

    # The token's pause lives in this process; a new one (a restart, another
    # worker) starts from the stored next attempt time.
    async with TrackstarClient.from_settings(
        settings, transport=fake.transport()
    ) as other_client:
        other = worker_with_client(worker, other_client, settings)
        assert await deliver_due(other, now=waiting.next_attempt_at) == 1
    assert [r.status_code for r in fake.requests if r.method == "POST"] == [429, 200]
    assert (await message(database, "shipment", created["id"])).status == "delivered"


def worker_with_client(worker: OutboxWorker, client: TrackstarClient, settings):
    return build_outbox_worker(
        database=worker.database, client=client, box=worker.box, settings=settings
    )


async def test_server_error_then_success_creates_one_shipment_with_one_key(
    client, api_headers, fake, worker, database
):
    fake.script("POST", SHIPMENTS_PATH, respond(500, {"error": "Upstream hiccup"}))
    created = await post_shipment(client, api_headers)

    await deliver_due(worker)
    waiting = await message(database, "shipment", created["id"])
    assert waiting.status == "pending"
    assert waiting.last_status_code == 500
    assert waiting.outcome_unknown is True
    await deliver_due(worker, now=waiting.next_attempt_at)

    posts = [r for r in fake.requests if r.method == "POST"]
    assert [r.status_code for r in posts] == [500, 200]
    assert posts[0].idempotency_key == posts[1].idempotency_key
    assert posts[0].body == posts[1].body
    # Before resending after an unknown outcome, the order was read back.
    reads = [r for r in fake.requests if r.method == "GET"]
    assert [r.path for r in reads] == [f"/cart/orders/{ORDER_ID}"]
    shipments = fake.order(CONNECTION_ID, ORDER_ID)["shipments"]
    assert [s["tracking_number"] for s in shipments] == [SHIPMENT["tracking_number"]]
    assert (await message(database, "shipment", created["id"])).status == "delivered"


async def test_shipment_accepted_before_a_timeout_is_not_sent_again(
    client, api_headers, fake, worker, database
):
    fake.script("POST", SHIPMENTS_PATH, timeout_after_accept())
    created = await post_shipment(client, api_headers)

    await deliver_due(worker)
    waiting = await message(database, "shipment", created["id"])
    assert waiting.status == "pending"
    assert waiting.outcome_unknown is True
    await deliver_due(worker, now=waiting.next_attempt_at)

    assert len(fake.writes("POST")) == 1
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
    done = await message(database, "shipment", created["id"])
    assert done.status == "delivered"
    async with database.transaction() as session:
        outcomes = (
            await session.scalars(
                select(OutboxAttempt.outcome).order_by(OutboxAttempt.id)
            )
        ).all()
    assert outcomes == ["retry", "verified"]


async def test_adjustment_accepted_before_a_timeout_is_replayed_not_reapplied(
    client, api_headers, fake, worker, database
):
    before = fake.product(CONNECTION_ID, VARIANT_ID)["inventory_by_warehouse_id"]
    fake.script("PUT", ADJUST_PATH, timeout_after_accept())
    created = await post_adjustment(client, api_headers, quantity=2)

    await deliver_due(worker)
    waiting = await message(database, "inventory_adjustment", created["id"])
    await deliver_due(worker, now=waiting.next_attempt_at)

    puts = [r for r in fake.requests if r.method == "PUT"]
    assert len(puts) == 2
    assert puts[0].idempotency_key == puts[1].idempotency_key
    assert len(fake.writes("PUT")) == 1
    after = fake.product(CONNECTION_ID, VARIANT_ID)["inventory_by_warehouse_id"]
    assert after[WAREHOUSE_ID] == before[WAREHOUSE_ID] - 2
    assert (await message(database, "inventory_adjustment", created["id"])).status == (
        "delivered"
    )


@pytest.mark.parametrize(
    ("status", "body", "origin"),
    [
        (
            422,
            {
                "error": "Validation failed",
                "detail": {"body": {"carrier_name": ["Unknown carrier"]}},
            },
            None,
        ),
        (501, {"error": "Endpoint create_shipment is not implemented for Cool"}, None),
        (
            400,
            {"error": "Tracking number rejected", "origin": "integration"},
            "integration",
        ),
        (403, {"error": "create_shipment is disabled for this connection"}, None),
    ],
    ids=["422", "501", "integration", "403"],
)
async def test_permanent_error_fails_at_once_with_the_message_kept(
    client, api_headers, fake, worker, status, body, origin
):
    fake.script("POST", SHIPMENTS_PATH, respond(status, body))
    created = await post_shipment(client, api_headers)

    await deliver_due(worker)

    shown = await get(client, api_headers, f"/api/v1/shipments/{created['id']}")
    assert shown["status"] == "failed"
    assert shown["attempts"] == 1
    assert shown["next_attempt_at"] is None
    assert shown["last_error"] == {
        "status_code": status,
        "message": body["error"],
        "origin": origin,
    }
    assert await deliver_due(worker, now=utcnow() + timedelta(days=2)) == 0


async def test_failed_shipment_can_be_retried_by_hand(
    client, api_headers, fake, worker
):
    fake.script("POST", SHIPMENTS_PATH, respond(422, {"error": "Bad carrier"}))
    created = await post_shipment(client, api_headers)
    await deliver_due(worker)

    response = await client.post(
        f"/api/v1/shipments/{created['id']}/retry", headers=api_headers
    )
    await deliver_due(worker)

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    shown = await get(client, api_headers, f"/api/v1/shipments/{created['id']}")
    assert shown["status"] == "delivered"
    assert shown["attempts"] == 2


async def test_unauthorized_suspends_the_connection_and_holds_its_queue(
    app, client, api_headers, fake, worker, database
):
    fake.script("POST", SHIPMENTS_PATH, respond(401, {"error": "Invalid access token"}))
    first = await post_shipment(client, api_headers)
    await deliver_due(worker)
    second = await post_adjustment(client, api_headers)

    assert await deliver_due(worker, now=utcnow() + timedelta(hours=1)) == 0

    async with database.transaction() as session:
        connection = await session.get(Connection, CONNECTION_ID)
    assert connection is not None
    assert connection.suspended_at is not None
    assert "401" in (connection.suspended_reason or "")
    assert (await message(database, "shipment", first["id"])).status == "failed"
    assert (await message(database, "inventory_adjustment", second["id"])).status == (
        "pending"
    )
    await connect(app)  # a new token lifts the suspension
    assert await deliver_due(worker) == 1


async def test_retryable_errors_give_up_after_the_maximum_age(
    app, client, api_headers, fake, settings
):
    patient = worker_for(
        app, settings.model_copy(update={"outbox_max_age": timedelta(0)})
    )
    fake.script("POST", SHIPMENTS_PATH, respond(503, {"error": "Down for maintenance"}))
    created = await post_shipment(client, api_headers)

    await deliver_due(patient)

    shown = await get(client, api_headers, f"/api/v1/shipments/{created['id']}")
    assert shown["status"] == "failed"
    assert shown["last_error"]["status_code"] == 503


async def test_unreachable_trackstar_is_retried_with_growing_delays(
    client, api_headers, fake, worker, database
):
    fake.script(
        "POST", SHIPMENTS_PATH, connect_error(), connect_error(), connect_error()
    )
    created = await post_shipment(client, api_headers)

    delays = []
    now = utcnow()
    for _ in range(3):
        await deliver_due(worker, now=now)
        waiting = await message(database, "shipment", created["id"])
        recorded = await last_attempt_finished_at(database)
        delays.append((waiting.next_attempt_at - recorded).total_seconds())
        now = waiting.next_attempt_at
    await deliver_due(worker, now=now)

    # Base delay 1 s doubling per attempt, jittered within [½, 1] of it
    # (measured from when the attempt was recorded, a few ms after the decision).
    assert 0.45 <= delays[0] <= 1
    assert 0.95 <= delays[1] <= 2
    assert 1.95 <= delays[2] <= 4
    assert (await message(database, "shipment", created["id"])).status == "delivered"
    # A refused connection proves nothing was sent: no read-back was needed.
    assert [r.method for r in fake.requests] == ["POST"] * 4


async def test_worker_killed_between_sending_and_recording_sends_once(
    app, client, api_headers, fake, worker, settings, database
):
    created = await post_shipment(client, api_headers)
    (claimed,) = await worker.claim()
    assert claimed.credentials is not None
    # The worker sends, then dies before it can record anything.
    await app.state.trackstar.write(
        claimed.credentials,
        method=claimed.method,
        path=claimed.path,
        body=claimed.body.encode(),
        idempotency_key=claimed.idempotency_key,
    )
    assert await deliver_due(worker_for(app, settings)) == 0  # still leased

    successor = worker_for(app, settings)
    later = utcnow() + settings.outbox_lease + timedelta(seconds=1)
    assert await deliver_due(successor, now=later) == 1

    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 2
    assert posts[0].idempotency_key == posts[1].idempotency_key
    assert len(fake.writes("POST")) == 1
    done = await message(database, "shipment", created["id"])
    assert done.status == "delivered"
    assert done.attempts == 2
    async with database.transaction() as session:
        late = await outbox_service.record_delivered(
            session,
            claimed,
            worker_id=worker.worker_id,
            started_at=utcnow(),
            request_id=None,
            result={},
            verified=False,
        )
    assert late is False


async def last_attempt_finished_at(database: Database) -> datetime:
    async with database.transaction() as session:
        statement = select(func.max(OutboxAttempt.finished_at))
        finished: datetime | None = await session.scalar(statement)
    assert finished is not None
    return finished


class SlowTransport(httpx.AsyncBaseTransport):
    """Adds latency and records how many writes per path overlap."""

    def __init__(self, inner: httpx.MockTransport, delay: float) -> None:
        self.inner = inner
        self.delay = delay
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        self.most_in_flight[path] = max(
            self.most_in_flight.get(path, 0), self.in_flight[path]
        )
        try:
            await asyncio.sleep(self.delay)
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight[path] -= 1


async def test_two_workers_deliver_each_products_adjustments_in_order(
    app, client, api_headers, fake, settings, database
):
    other = sample_data("cart-product.created") | {
        "id": "prod_other_variant",
        "sku": "OTHER",
    }
    await seed_variant(app, fake, other)
    kinds = ["decrease", "increase", "exact", "decrease", "increase", "exact"]
    sent = []
    for number, kind in enumerate(kinds):
        sent.append(
            await post_adjustment(
                client, api_headers, adjustment_type=kind, quantity=number + 1
            )
        )
        response = await client.post(
            "/api/v1/products/prod_other_variant/inventory-adjustments",
            json={
                "quantity": 1,
                "adjustment_type": "increase",
                "warehouse_id": WAREHOUSE_ID,
            },
            headers=api_headers,
        )
        assert response.status_code == 202
    fast = settings.model_copy(update={"outbox_poll_interval": timedelta(seconds=0.01)})
    transport = SlowTransport(fake.transport(), delay=0.01)
    stop = asyncio.Event()
    async with (
        TrackstarClient.from_settings(fast, transport=transport) as first_client,
        TrackstarClient.from_settings(fast, transport=transport) as second_client,
    ):
        workers = [
            worker_with_client(worker_for(app, fast), first_client, fast),
            worker_with_client(worker_for(app, fast), second_client, fast),
        ]
        runs = [asyncio.create_task(w.run(stop)) for w in workers]
        await wait_until_delivered(database, count=len(kinds) * 2)
        stop.set()
        await asyncio.gather(*runs)

    ours = [r for r in fake.writes("PUT") if r.path == ADJUST_PATH]
    assert [r.json["adjustment_type"] for r in ours] == kinds
    assert [r.json["quantity"] for r in ours] == [1, 2, 3, 4, 5, 6]
    assert transport.most_in_flight[ADJUST_PATH] == 1
    keys = [r.idempotency_key for r in ours]
    assert len(set(keys)) == len(kinds)


async def test_next_message_of_a_product_goes_when_the_last_is_delivered(
    app, client, api_headers, settings, database
):
    """Only one message per product is claimable at a time; the loop claims
    the next as soon as the last is recorded, not at the next poll."""
    for number in range(5):
        await post_adjustment(client, api_headers, quantity=number + 1)
    # Ten minutes between polls: were the loop to wait for one, it would be
    # stopped long before the five messages were delivered.
    slow_poll = settings.model_copy(
        update={"outbox_poll_interval": timedelta(minutes=10)}
    )
    stop = asyncio.Event()
    run = asyncio.create_task(worker_for(app, slow_poll).run(stop))
    try:
        await wait_until_delivered(database, count=5)
    finally:
        stop.set()
        await run


async def wait_until_delivered(database, *, count: int, timeout: float = 20) -> None:
    async def delivered() -> int:
        async with database.transaction() as session:
            statement = select(func.count()).where(OutboxMessage.status == "delivered")
            return int(await session.scalar(statement) or 0)

    async def poll() -> None:
        while await delivered() < count:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_a_failing_product_does_not_hold_up_other_products(
    app, client, api_headers, fake, worker, database
):
    other = sample_data("cart-product.created") | {"id": "prod_other", "sku": "O-1"}
    await seed_variant(app, fake, other)
    fake.script("PUT", ADJUST_PATH, respond(503, {"error": "busy"}))
    stuck = await post_adjustment(client, api_headers)
    behind = await post_adjustment(client, api_headers, adjustment_type="increase")
    response = await client.post(
        "/api/v1/products/prod_other/inventory-adjustments",
        json={
            "quantity": 1,
            "adjustment_type": "increase",
            "warehouse_id": WAREHOUSE_ID,
        },
        headers=api_headers,
    )

    await deliver_due(worker)

    assert (await message(database, "inventory_adjustment", stuck["id"])).status == (
        "pending"
    )
    assert (await message(database, "inventory_adjustment", behind["id"])).attempts == 0
    other_state = await message(database, "inventory_adjustment", response.json()["id"])
    assert other_state.status == "delivered"


async def test_access_token_and_api_key_never_reach_the_logs(
    client, api_headers, fake, worker, capfd
):
    fake.script("POST", SHIPMENTS_PATH, respond(500, {"error": "boom"}))
    await post_shipment(client, api_headers)
    await post_adjustment(client, api_headers)
    await deliver_due(worker)
    await deliver_due(worker, now=utcnow() + timedelta(minutes=10))

    captured = capfd.readouterr()
    logged = captured.out + captured.err
    assert "outbox.delivered" in logged
    assert "outbox.attempt_failed" in logged
    assert ACCESS_TOKEN not in logged
    assert TEST_API_KEY not in logged


async def test_message_for_a_removed_connection_fails_with_a_clear_reason(
    client, api_headers, fake, worker, database
):
    created = await post_shipment(client, api_headers)
    async with database.transaction() as session:
        connection = await session.get(Connection, CONNECTION_ID)
        await session.delete(connection)

    await deliver_due(worker)

    failed = await message(database, "shipment", created["id"])
    assert failed.status == "failed"
    assert "no usable access token" in (failed.last_error or "")
    assert fake.writes() == []
