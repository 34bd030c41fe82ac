"""The shipments API: what a warehouse system posts, what is stored for the
outbox in the same transaction, idempotency, reads, lists and manual retry.

Delivery itself is covered in tests/outbox/test_worker.py.
"""

import asyncio
import base64
import json
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from app.auth import service as auth_service
from app.auth.models import ApiKey
from app.core.db import Database
from app.core.errors import Conflict
from app.core.models import utcnow
from app.outbox import service as outbox_service
from app.outbox.models import OutboxMessage
from app.shipments import service as shipments_service
from app.shipments.models import Shipment
from tests.conftest import CONNECTION_ID
from tests.fixtures.fake_trackstar import respond
from tests.fixtures.forwarding import (
    ORDER_ID,
    connect,
    deliver_due,
    sample_data,
    seed_order,
    worker_for,
)

pytestmark = pytest.mark.asyncio

SHIPMENT = {
    "tracking_number": "1ZTEST0000000000001",
    "tracking_url": "https://example.com/track/1ZTEST0000000000001",
    "carrier_name": "UPS",
    "shipping_method_name": "Ground",
}
OTHER_ORDER_ID = "ord_other_0000000001"
POST_PATH = f"/api/v1/orders/{ORDER_ID}/shipments"
SHIPMENTS_PATH = f"/cart/orders/{ORDER_ID}/shipments"
MISSING_KEY = {
    "error": "InvalidApiKey",
    "detail": "Send the API key as `Authorization: Bearer <key>`.",
}


@pytest_asyncio.fixture
async def ready(app, fake) -> None:
    """A connection with its token and the sample order."""
    await connect(app)
    await seed_order(app, fake)


def tracking(number: int) -> dict[str, str]:
    return SHIPMENT | {"tracking_number": f"1ZTEST{number:013d}"}


def compact(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    *,
    order_id: str = ORDER_ID,
    key: str | None = None,
) -> httpx.Response:
    extra = {} if key is None else {"Idempotency-Key": key}
    return await client.post(
        f"/api/v1/orders/{order_id}/shipments",
        json=SHIPMENT if body is None else body,
        headers=headers | extra,
    )


async def created(client, headers, body=None, **options) -> dict[str, Any]:
    response = await post(client, headers, body, **options)
    assert response.status_code == 202, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def stored(database: Database) -> tuple[list[Shipment], list[OutboxMessage]]:
    async with database.transaction() as session:
        shipments = (
            await session.scalars(select(Shipment).order_by(Shipment.id))
        ).all()
        messages = (
            await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ).all()
    return list(shipments), list(messages)


async def assert_nothing_stored(database: Database) -> None:
    assert await stored(database) == ([], [])


async def api_key_id(database: Database) -> int:
    async with database.transaction() as session:
        (key_id,) = (await session.scalars(select(ApiKey.id))).all()
    return key_id


def cursor_of(parts: Any) -> str:
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def list_ids(client, headers, **params) -> list[int]:
    response = await client.get("/api/v1/shipments", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["id"] for item in response.json()["data"]]


# --- create -----------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_create_answers_202_pending_with_the_posted_fields(client, api_headers):
    before = utcnow()
    response = await post(client, api_headers)

    assert response.status_code == 202
    body = response.json()
    assert body == {
        "id": body["id"],
        "order_id": ORDER_ID,
        "connection_id": CONNECTION_ID,
        "tracking_number": SHIPMENT["tracking_number"],
        "fields": SHIPMENT,
        "trackstar_shipment_id": None,
        "created_at": body["created_at"],
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": body["next_attempt_at"],
        "last_error": None,
        "trackstar_request_id": None,
        "delivered_at": None,
        "failed_at": None,
    }
    assert isinstance(body["id"], int)
    due = datetime.fromisoformat(body["next_attempt_at"])
    assert before <= due <= utcnow()
    assert before <= datetime.fromisoformat(body["created_at"]) <= utcnow()


@pytest.mark.usefixtures("ready")
async def test_create_stores_one_shipment_and_one_outbox_message(
    client, api_headers, database
):
    body = await created(client, api_headers)

    (shipment,), (message,) = await stored(database)
    assert shipment.id == body["id"]
    assert shipment.order_id == ORDER_ID
    assert shipment.connection_id == CONNECTION_ID
    assert shipment.tracking_number == SHIPMENT["tracking_number"]
    assert shipment.fields == SHIPMENT
    assert shipment.api_key_id == await api_key_id(database)
    assert shipment.idempotency_key is None
    assert message.kind == "shipment"
    assert message.subject_id == shipment.id
    assert message.connection_id == CONNECTION_ID
    assert message.ordering_key == f"order:{CONNECTION_ID}:{ORDER_ID}"
    assert message.method == "POST"
    assert message.path == SHIPMENTS_PATH
    assert message.body == compact(SHIPMENT)
    assert message.status == "pending"
    assert message.attempts == 0
    assert re.fullmatch(
        rf"shipment:{shipment.id}:[0-9a-f]{{16}}", message.idempotency_key
    )


@pytest.mark.usefixtures("ready")
async def test_shipment_and_its_message_are_committed_together(
    client, api_headers, database, monkeypatch
):
    """If queueing the message fails, the shipment is not kept either."""
    enqueue = outbox_service.enqueue

    class QueueBroken(Conflict):
        pass

    async def enqueue_then_fail(session, **values):
        await enqueue(session, **values)
        raise QueueBroken("queue broken after the insert")

    monkeypatch.setattr(outbox_service, "enqueue", enqueue_then_fail)

    response = await post(client, api_headers)

    assert response.status_code == 409
    assert response.json()["error"] == "QueueBroken"
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_integration_fields_are_kept_in_fields_and_in_the_sent_body(
    client, api_headers, database
):
    body = SHIPMENT | {
        "shop_id": "7495611",
        "shipping_cost": 4.5,
        "carrier_id": "ups",
        "shipped_date": "2026-03-15T10:00:00Z",
        "shipping_groups": [
            {
                "shipping_group_id": "sg_1",
                "line_items": [{"line_item_id": "li_2f8a4c6e0b1d", "quantity": 2}],
            }
        ],
    }

    answer = await created(client, api_headers, body)

    assert answer["fields"] == body
    shown = await client.get(f"/api/v1/shipments/{answer['id']}", headers=api_headers)
    assert shown.json()["fields"] == body
    (shipment,), (message,) = await stored(database)
    assert shipment.fields == body
    assert json.loads(message.body) == body


async def test_unknown_order_is_404_and_stores_nothing(
    app, client, api_headers, database
):
    await connect(app)

    response = await post(client, api_headers, order_id="ord_does_not_exist")

    assert response.status_code == 404
    assert response.json() == {
        "error": "OrderNotFound",
        "detail": "No order with id 'ord_does_not_exist'.",
    }
    await assert_nothing_stored(database)


async def test_cancelled_order_is_409_and_stores_nothing(
    app, fake, client, api_headers, database
):
    await connect(app)
    await seed_order(
        app, fake, sample_data("cart-order.created") | {"status": "cancelled"}
    )

    response = await post(client, api_headers)

    assert response.status_code == 409
    assert response.json() == {
        "error": "OrderCancelled",
        "detail": f"Order {ORDER_ID!r} is cancelled; it cannot ship.",
    }
    await assert_nothing_stored(database)


async def test_order_of_a_connection_without_token_is_409_saying_how_to_add_it(
    app, fake, client, api_headers, database
):
    await seed_order(app, fake)  # no connect(app): no token stored

    response = await post(client, api_headers)

    assert response.status_code == 409
    assert response.json() == {
        "error": "ConnectionNotConfigured",
        "detail": f"Connection {CONNECTION_ID!r} has no access token; add it "
        "with `python -m app connections add`.",
    }
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_missing_tracking_number_is_422_in_the_error_envelope(
    client, api_headers, database
):
    body = {key: value for key, value in SHIPMENT.items() if key != "tracking_number"}

    response = await post(client, api_headers, body)

    assert response.status_code == 422
    assert response.json() == {
        "error": "ValidationError",
        "detail": "The request is not valid; see errors.",
        "errors": [
            {
                "loc": ["body", "tracking_number"],
                "msg": "Field required",
                "type": "missing",
            }
        ],
    }
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
# Each would be left out of the body sent: a shipment without its number.
@pytest.mark.parametrize("tracking_number", ["", " ", "\t", "none", "NULL", "None"])
async def test_empty_tracking_number_is_422(
    client, api_headers, database, tracking_number
):
    body = SHIPMENT | {"tracking_number": tracking_number}

    response = await post(client, api_headers, body)

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["body", "tracking_number"]
    ]
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_a_number_json_cannot_hold_is_422(client, api_headers, database):
    # 1e999 parses as infinity, which has no JSON spelling to send on.
    content = b'{"tracking_number": "1ZTEST1", "shipping_cost": 1e999}'

    response = await client.post(
        POST_PATH,
        content=content,
        headers=api_headers | {"content-type": "application/json"},
    )

    assert response.status_code == 422
    assert "not a finite number" in response.text
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_create_without_api_key_is_401_and_stores_nothing(client, database):
    response = await post(client, {})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == MISSING_KEY
    await assert_nothing_stored(database)


# --- Idempotency-Key ----------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_same_idempotency_key_and_body_return_the_first_shipment(
    client, api_headers, database
):
    first = await post(client, api_headers, key="wms-shipment-1")
    second = await post(client, api_headers, key="wms-shipment-1")

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == first.json()
    shipments, messages = await stored(database)
    assert [s.id for s in shipments] == [first.json()["id"]]
    assert shipments[0].idempotency_key == "wms-shipment-1"
    assert len(messages) == 1


@pytest.mark.usefixtures("ready")
async def test_same_idempotency_key_with_another_body_is_409(
    client, api_headers, database
):
    first = await post(client, api_headers, key="wms-shipment-1")
    second = await post(client, api_headers, tracking(2), key="wms-shipment-1")

    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json() == {
        "error": "IdempotencyKeyReused",
        "detail": "This Idempotency-Key was used with a different request.",
    }
    shipments, messages = await stored(database)
    assert [s.tracking_number for s in shipments] == [SHIPMENT["tracking_number"]]
    assert len(messages) == 1


async def test_same_idempotency_key_for_another_order_is_409(
    app, fake, client, api_headers, database
):
    await connect(app)
    await seed_order(app, fake)
    await seed_order(
        app, fake, sample_data("cart-order.created") | {"id": OTHER_ORDER_ID}
    )
    await created(client, api_headers, key="wms-shipment-1")

    response = await post(
        client, api_headers, order_id=OTHER_ORDER_ID, key="wms-shipment-1"
    )

    assert response.status_code == 409
    assert response.json()["error"] == "IdempotencyKeyReused"
    assert len((await stored(database))[0]) == 1


@pytest.mark.usefixtures("ready")
async def test_idempotency_keys_are_scoped_per_api_key(client, api_headers, database):
    async with database.transaction() as session:
        other = await auth_service.create_api_key(session, name="other-wms")
    other_headers = {"Authorization": f"Bearer {other.key}"}

    first = await created(client, api_headers, key="shared-key")
    second = await created(client, other_headers, key="shared-key")

    assert first["id"] != second["id"]
    shipments, messages = await stored(database)
    assert [s.id for s in shipments] == [first["id"], second["id"]]
    assert len({s.api_key_id for s in shipments}) == 2
    assert len(messages) == 2


@pytest.mark.usefixtures("ready")
async def test_concurrent_requests_with_one_key_store_one_shipment(
    client, api_headers, database, monkeypatch
):
    # Record the key's use now, so neither request waits on the api_keys row.
    assert (
        await client.get("/api/v1/shipments", headers=api_headers)
    ).status_code == 200
    replays = []
    if database.dialect == "postgresql":
        # Hold both requests after their first look-up, so both miss the other's
        # row and the loser meets the unique constraint inside its savepoint.
        # (SQLite serialises whole write transactions: no race is possible.)
        lookup = shipments_service.SHIPMENTS.find_replay
        both_looked = asyncio.Barrier(2)

        async def replay_after_both_looked(*args, **kwargs):
            replays.append(kwargs["idempotency_key"])
            found = await lookup(*args, **kwargs)
            if len(replays) <= 2:
                await asyncio.wait_for(both_looked.wait(), timeout=10)
            return found

        monkeypatch.setattr(
            shipments_service.SHIPMENTS, "find_replay", replay_after_both_looked
        )

    first, second = await asyncio.gather(
        post(client, api_headers, key="race"), post(client, api_headers, key="race")
    )

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    shipments, messages = await stored(database)
    assert [s.id for s in shipments] == [first.json()["id"]]
    assert len(messages) == 1
    if database.dialect == "postgresql":
        assert len(replays) == 3  # two first look-ups, one after the conflict


# --- read and list ------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_get_shipment_shows_it_as_created(client, api_headers):
    answer = await created(client, api_headers)

    response = await client.get(
        f"/api/v1/shipments/{answer['id']}", headers=api_headers
    )

    assert response.status_code == 200
    assert response.json() == answer


@pytest.mark.usefixtures("ready")
async def test_get_unknown_shipment_is_404(client, api_headers):
    response = await client.get("/api/v1/shipments/987654", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "ShipmentNotFound",
        "detail": "No shipment with id 987654.",
    }


@pytest.mark.usefixtures("ready")
async def test_reading_shipments_needs_an_api_key(client, api_headers):
    answer = await created(client, api_headers)

    one = await client.get(f"/api/v1/shipments/{answer['id']}")
    listed = await client.get("/api/v1/shipments")

    assert (one.status_code, listed.status_code) == (401, 401)
    assert one.json() == listed.json() == MISSING_KEY


@pytest.mark.usefixtures("ready")
async def test_list_shows_shipments_newest_first(client, api_headers):
    ids = [(await created(client, api_headers, tracking(n)))["id"] for n in range(3)]

    response = await client.get("/api/v1/shipments", headers=api_headers)

    assert response.status_code == 200
    page = response.json()
    assert [item["id"] for item in page["data"]] == ids[::-1]
    assert [item["tracking_number"] for item in page["data"]] == [
        tracking(n)["tracking_number"] for n in (2, 1, 0)
    ]
    assert page["next_cursor"] is None


async def test_list_filters_by_order_id(app, fake, client, api_headers):
    await connect(app)
    await seed_order(app, fake)
    await seed_order(
        app, fake, sample_data("cart-order.created") | {"id": OTHER_ORDER_ID}
    )
    ours = await created(client, api_headers, tracking(1))
    other = await created(client, api_headers, tracking(2), order_id=OTHER_ORDER_ID)

    assert await list_ids(client, api_headers, order_id=ORDER_ID) == [ours["id"]]
    assert await list_ids(client, api_headers, order_id=OTHER_ORDER_ID) == [other["id"]]
    assert await list_ids(client, api_headers, order_id="ord_none") == []


@pytest.mark.usefixtures("ready")
async def test_list_filters_by_delivery_status(
    app, client, api_headers, fake, settings
):
    worker = worker_for(app, settings)
    fake.script("POST", SHIPMENTS_PATH, respond(422, {"error": "Bad carrier"}))
    failed = await created(client, api_headers, tracking(1))
    await deliver_due(worker)
    delivered = await created(client, api_headers, tracking(2))
    await deliver_due(worker)
    pending = await created(client, api_headers, tracking(3))

    assert await list_ids(client, api_headers, status="pending") == [pending["id"]]
    assert await list_ids(client, api_headers, status="delivered") == [delivered["id"]]
    assert await list_ids(client, api_headers, status="failed") == [failed["id"]]
    assert await list_ids(client, api_headers, status="delivering") == []


@pytest.mark.usefixtures("ready")
async def test_list_with_an_unknown_status_is_422(client, api_headers):
    response = await client.get(
        "/api/v1/shipments", params={"status": "lost"}, headers=api_headers
    )

    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"
    assert [e["loc"] for e in response.json()["errors"]] == [["query", "status"]]


@pytest.mark.usefixtures("ready")
async def test_list_pages_through_every_shipment_with_the_cursor(client, api_headers):
    ids = [(await created(client, api_headers, tracking(n)))["id"] for n in range(5)]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get(
            "/api/v1/shipments", params=params, headers=api_headers
        )
        assert response.status_code == 200
        page = response.json()
        assert len(page["data"]) <= 2
        seen += [item["id"] for item in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10

    assert seen == ids[::-1]
    assert pages == 3


@pytest.mark.usefixtures("ready")
async def test_cursor_keeps_the_filter(app, fake, client, api_headers):
    await seed_order(
        app, fake, sample_data("cart-order.created") | {"id": OTHER_ORDER_ID}
    )
    ours = []
    for n in range(3):
        ours.append((await created(client, api_headers, tracking(n)))["id"])
        await created(client, api_headers, tracking(10 + n), order_id=OTHER_ORDER_ID)

    first = await client.get(
        "/api/v1/shipments",
        params={"order_id": ORDER_ID, "limit": 2},
        headers=api_headers,
    )
    second = await client.get(
        "/api/v1/shipments",
        params={
            "order_id": ORDER_ID,
            "limit": 2,
            "cursor": first.json()["next_cursor"],
        },
        headers=api_headers,
    )

    assert [i["id"] for i in first.json()["data"]] == [ours[2], ours[1]]
    assert [i["id"] for i in second.json()["data"]] == [ours[0]]
    assert second.json()["next_cursor"] is None


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize(
    "cursor",
    ["not a cursor!", cursor_of(["abc"]), cursor_of([1, 2]), cursor_of([True]), "e30"],
    ids=["garbage", "text-id", "two-parts", "boolean", "object"],
)
async def test_invalid_cursor_is_400(client, api_headers, cursor):
    await created(client, api_headers)

    response = await client.get(
        "/api/v1/shipments", params={"cursor": cursor}, headers=api_headers
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "InvalidCursor",
        "detail": "The cursor is not valid.",
    }


# --- retry --------------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_retrying_a_pending_shipment_is_refused(client, api_headers, database):
    answer = await created(client, api_headers)

    response = await client.post(
        f"/api/v1/shipments/{answer['id']}/retry", headers=api_headers
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "RetryRefused",
        "detail": "Only failed items can be retried; this one is pending.",
    }
    (message,) = (await stored(database))[1]
    assert (message.status, message.attempts) == ("pending", 0)


@pytest.mark.usefixtures("ready")
async def test_retrying_a_delivered_shipment_is_refused(
    app, client, api_headers, settings
):
    answer = await created(client, api_headers)
    await deliver_due(worker_for(app, settings))

    response = await client.post(
        f"/api/v1/shipments/{answer['id']}/retry", headers=api_headers
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "RetryRefused",
        "detail": "Only failed items can be retried; this one is delivered.",
    }


@pytest.mark.usefixtures("ready")
async def test_retrying_a_failed_shipment_overtaken_by_a_later_one_is_refused(
    app, client, api_headers, fake, settings, database
):
    worker = worker_for(app, settings)
    fake.script("POST", SHIPMENTS_PATH, respond(422, {"error": "Bad carrier"}))
    failed = await created(client, api_headers, tracking(1))
    await deliver_due(worker)
    later = await created(client, api_headers, tracking(2))
    await deliver_due(worker)

    response = await client.post(
        f"/api/v1/shipments/{failed['id']}/retry", headers=api_headers
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "RetryRefused",
        "detail": "A later item for the same order or product has already been "
        "sent; retrying this one would apply them out of order. Post a new one "
        "instead.",
    }
    messages = {m.subject_id: m.status for m in (await stored(database))[1]}
    assert messages == {failed["id"]: "failed", later["id"]: "delivered"}
    assert await deliver_due(worker, now=utcnow() + timedelta(hours=1)) == 0


@pytest.mark.usefixtures("ready")
async def test_retrying_a_failed_shipment_puts_it_back_in_the_queue(
    app, client, api_headers, fake, settings, database
):
    fake.script("POST", SHIPMENTS_PATH, respond(422, {"error": "Bad carrier"}))
    answer = await created(client, api_headers)
    await deliver_due(worker_for(app, settings))
    before = utcnow()

    response = await client.post(
        f"/api/v1/shipments/{answer['id']}/retry", headers=api_headers
    )

    assert response.status_code == 202
    shown = response.json()
    assert shown["status"] == "pending"
    assert shown["attempts"] == 1
    assert shown["failed_at"] is None
    assert datetime.fromisoformat(shown["next_attempt_at"]) >= before
    assert shown["last_error"] == {
        "status_code": 422,
        "message": "Bad carrier",
        "origin": None,
    }
    (message,) = (await stored(database))[1]
    assert message.status == "pending"
    assert message.failed_at is None


@pytest.mark.usefixtures("ready")
async def test_retrying_an_unknown_shipment_is_404(client, api_headers):
    response = await client.post("/api/v1/shipments/987654/retry", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "ShipmentNotFound",
        "detail": "No shipment with id 987654.",
    }
