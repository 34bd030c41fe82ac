"""The inventory adjustments API: what a warehouse system posts, what is queued
for Trackstar in the same transaction, the zero and parent-product rules,
idempotency, reads, lists and manual retry.

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
from app.inventory import service as inventory_service
from app.inventory.models import InventoryAdjustment
from app.outbox import service as outbox_service
from app.outbox.models import OutboxMessage
from tests.conftest import CONNECTION_ID
from tests.fixtures.fake_trackstar import respond
from tests.fixtures.forwarding import (
    PARENT_ID,
    VARIANT_ID,
    WAREHOUSE_ID,
    connect,
    deliver_due,
    sample_data,
    seed_variant,
    worker_for,
)

pytestmark = pytest.mark.asyncio

ADJUSTMENT = {
    "quantity": 3,
    "adjustment_type": "decrease",
    "warehouse_id": WAREHOUSE_ID,
}
OTHER_VARIANT_ID = "prod_other_variant_01"
ADJUST_PATH = f"/cart/products/{VARIANT_ID}/adjust-inventory"
LIST_PATH = "/api/v1/inventory-adjustments"
MISSING_KEY = {
    "error": "InvalidApiKey",
    "detail": "Send the API key as `Authorization: Bearer <key>`.",
}
ZERO = {
    "error": "ZeroAdjustment",
    "detail": "An increase or decrease of 0 changes nothing; it is not sent.",
}


@pytest_asyncio.fixture
async def ready(app, fake) -> None:
    """A connection with its token and the sample variant."""
    await connect(app)
    await seed_variant(app, fake)


async def seed_other_variant(app, fake) -> None:
    other = sample_data("cart-product.created") | {"id": OTHER_VARIANT_ID, "sku": "O-1"}
    await seed_variant(app, fake, other)


def compact(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def cursor_of(parts: Any) -> str:
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def post(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    *,
    product_id: str = VARIANT_ID,
    key: str | None = None,
) -> httpx.Response:
    extra = {} if key is None else {"Idempotency-Key": key}
    return await client.post(
        f"/api/v1/products/{product_id}/inventory-adjustments",
        json=ADJUSTMENT if body is None else body,
        headers=headers | extra,
    )


async def created(client, headers, body=None, **options) -> dict[str, Any]:
    response = await post(client, headers, body, **options)
    assert response.status_code == 202, response.text
    shown: dict[str, Any] = response.json()
    return shown


async def stored(
    database: Database,
) -> tuple[list[InventoryAdjustment], list[OutboxMessage]]:
    async with database.transaction() as session:
        adjustments = (
            await session.scalars(
                select(InventoryAdjustment).order_by(InventoryAdjustment.id)
            )
        ).all()
        messages = (
            await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ).all()
    return list(adjustments), list(messages)


async def assert_nothing_stored(database: Database) -> None:
    assert await stored(database) == ([], [])


async def list_ids(client, headers, **params) -> list[int]:
    response = await client.get(LIST_PATH, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["id"] for item in response.json()["data"]]


# --- create -----------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_create_answers_202_pending_with_the_posted_fields(client, api_headers):
    body = ADJUSTMENT | {"reason": "damaged"}
    before = utcnow()

    response = await post(client, api_headers, body)

    assert response.status_code == 202
    shown = response.json()
    assert shown == {
        "id": shown["id"],
        "product_id": VARIANT_ID,
        "connection_id": CONNECTION_ID,
        "warehouse_id": WAREHOUSE_ID,
        "adjustment_type": "decrease",
        "quantity": 3,
        "reason": "damaged",
        "fields": body,
        "created_at": shown["created_at"],
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": shown["next_attempt_at"],
        "last_error": None,
        "trackstar_request_id": None,
        "delivered_at": None,
        "failed_at": None,
    }
    assert isinstance(shown["id"], int)
    assert before <= datetime.fromisoformat(shown["next_attempt_at"]) <= utcnow()


@pytest.mark.usefixtures("ready")
async def test_create_stores_one_adjustment_and_one_outbox_message(
    client, api_headers, database
):
    shown = await created(client, api_headers)

    (adjustment,), (message,) = await stored(database)
    async with database.transaction() as session:
        (key_id,) = (await session.scalars(select(ApiKey.id))).all()
    assert adjustment.id == shown["id"]
    assert adjustment.product_id == VARIANT_ID
    assert adjustment.connection_id == CONNECTION_ID
    assert adjustment.warehouse_id == WAREHOUSE_ID
    assert (adjustment.adjustment_type, adjustment.quantity) == ("decrease", 3)
    assert adjustment.reason is None
    assert adjustment.fields == ADJUSTMENT
    assert adjustment.api_key_id == key_id
    assert adjustment.idempotency_key is None
    assert message.kind == "inventory_adjustment"
    assert message.subject_id == adjustment.id
    assert message.connection_id == CONNECTION_ID
    assert message.ordering_key == f"product:{CONNECTION_ID}:{VARIANT_ID}"
    assert message.method == "PUT"
    assert message.path == ADJUST_PATH
    assert message.body == compact(ADJUSTMENT)
    assert (message.status, message.attempts) == ("pending", 0)
    assert re.fullmatch(
        rf"inventory-adjustment:{adjustment.id}:[0-9a-f]{{16}}",
        message.idempotency_key,
    )


@pytest.mark.usefixtures("ready")
async def test_adjustment_and_its_message_are_committed_together(
    client, api_headers, database, monkeypatch
):
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
@pytest.mark.parametrize("adjustment_type", ["increase", "decrease", "exact"])
async def test_each_adjustment_type_is_accepted_and_queued(
    client, api_headers, database, adjustment_type
):
    body = ADJUSTMENT | {"adjustment_type": adjustment_type, "quantity": 5}

    shown = await created(client, api_headers, body)

    assert (shown["adjustment_type"], shown["quantity"]) == (adjustment_type, 5)
    (message,) = (await stored(database))[1]
    assert json.loads(message.body) == body


@pytest.mark.usefixtures("ready")
async def test_exact_zero_is_a_stock_out_and_is_sent_with_quantity_zero(
    client, api_headers, database
):
    body = ADJUSTMENT | {"adjustment_type": "exact", "quantity": 0}

    shown = await created(client, api_headers, body)

    assert (shown["adjustment_type"], shown["quantity"]) == ("exact", 0)
    (message,) = (await stored(database))[1]
    assert message.body == compact(body)


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize("adjustment_type", ["increase", "decrease"])
async def test_zero_increase_or_decrease_is_422_and_stores_nothing(
    client, api_headers, database, adjustment_type
):
    body = ADJUSTMENT | {"adjustment_type": adjustment_type, "quantity": 0}

    response = await post(client, api_headers, body)

    assert response.status_code == 422
    assert response.json() == ZERO
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize(
    ("change", "loc", "error_type"),
    [
        ({"quantity": -1}, "quantity", "greater_than_equal"),
        ({"quantity": 2**31}, "quantity", "less_than_equal"),
        ({"quantity": "three"}, "quantity", "int_type"),
        # Strict: neither converted to 3 nor to 1.
        ({"quantity": "3"}, "quantity", "int_type"),
        ({"quantity": True}, "quantity", "int_type"),
        ({"adjustment_type": "set"}, "adjustment_type", "enum"),
        ({"warehouse_id": None}, "warehouse_id", "string_type"),
        ({"warehouse_id": ""}, "warehouse_id", "string_too_short"),
        # Would be left out of the body sent: a write without its warehouse.
        ({"warehouse_id": "none"}, "warehouse_id", "value_error"),
        ({"warehouse_id": "  "}, "warehouse_id", "value_error"),
    ],
    ids=[
        "negative",
        "over-int32",
        "not-a-number",
        "number-as-text",
        "boolean",
        "unknown-type",
        "null-wh",
        "empty-wh",
        "placeholder-wh",
        "blank-wh",
    ],
)
async def test_invalid_body_is_422_in_the_error_envelope(
    client, api_headers, database, change, loc, error_type
):
    response = await post(client, api_headers, ADJUSTMENT | change)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert body["detail"] == "The request is not valid; see errors."
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [
        (["body", loc], error_type)
    ]
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize("missing", ["quantity", "adjustment_type", "warehouse_id"])
async def test_missing_required_field_is_422(client, api_headers, database, missing):
    body = {key: value for key, value in ADJUSTMENT.items() if key != missing}

    response = await post(client, api_headers, body)

    assert response.status_code == 422
    assert response.json() == {
        "error": "ValidationError",
        "detail": "The request is not valid; see errors.",
        "errors": [
            {"loc": ["body", missing], "msg": "Field required", "type": "missing"}
        ],
    }
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_integration_fields_are_kept_in_fields_and_in_the_sent_body(
    client, api_headers, database
):
    body = ADJUSTMENT | {"shop_id": "7495611", "reason": "damaged", "unit_cost": 6.5}

    shown = await created(client, api_headers, body)

    assert shown["fields"] == body
    again = await client.get(f"{LIST_PATH}/{shown['id']}", headers=api_headers)
    assert again.json()["fields"] == body
    (adjustment,), (message,) = await stored(database)
    assert adjustment.fields == body
    assert json.loads(message.body) == body


async def test_parent_product_is_422_only_variants_can_be_adjusted(
    app, fake, client, api_headers, database
):
    await connect(app)
    await seed_variant(app, fake, sample_data("cart-product.created.parent"))

    response = await post(client, api_headers, product_id=PARENT_ID)

    assert response.status_code == 422
    assert response.json() == {
        "error": "ProductNotAdjustable",
        "detail": f"Product {PARENT_ID!r} is a parent; only variants can be adjusted.",
    }
    await assert_nothing_stored(database)


async def test_unknown_product_is_404_and_stores_nothing(
    app, client, api_headers, database
):
    await connect(app)

    response = await post(client, api_headers, product_id="prod_does_not_exist")

    assert response.status_code == 404
    assert response.json() == {
        "error": "ProductNotFound",
        "detail": "No product with id 'prod_does_not_exist'.",
    }
    await assert_nothing_stored(database)


async def test_product_of_a_connection_without_token_is_409_saying_how_to_add_it(
    app, fake, client, api_headers, database
):
    await seed_variant(app, fake)  # no connect(app)

    response = await post(client, api_headers)

    assert response.status_code == 409
    assert response.json() == {
        "error": "ConnectionNotConfigured",
        "detail": f"Connection {CONNECTION_ID!r} has no access token; add it "
        "with `python -m app connections add`.",
    }
    await assert_nothing_stored(database)


@pytest.mark.usefixtures("ready")
async def test_create_without_api_key_is_401_and_stores_nothing(client, database):
    response = await post(client, {})

    assert response.status_code == 401
    assert response.json() == MISSING_KEY
    await assert_nothing_stored(database)


# --- Idempotency-Key ----------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_same_idempotency_key_and_body_return_the_first_adjustment(
    client, api_headers, database
):
    first = await post(client, api_headers, key="wms-adjust-1")
    second = await post(client, api_headers, key="wms-adjust-1")

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json() == first.json()
    adjustments, messages = await stored(database)
    assert [a.id for a in adjustments] == [first.json()["id"]]
    assert adjustments[0].idempotency_key == "wms-adjust-1"
    assert len(messages) == 1


@pytest.mark.usefixtures("ready")
async def test_same_idempotency_key_with_another_body_is_409(
    client, api_headers, database
):
    await created(client, api_headers, key="wms-adjust-1")

    response = await post(
        client, api_headers, ADJUSTMENT | {"quantity": 4}, key="wms-adjust-1"
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "IdempotencyKeyReused",
        "detail": "This Idempotency-Key was used with a different request.",
    }
    adjustments, messages = await stored(database)
    assert [a.quantity for a in adjustments] == [3]
    assert len(messages) == 1


@pytest.mark.usefixtures("ready")
async def test_same_idempotency_key_for_another_product_is_409(
    app, fake, client, api_headers, database
):
    await seed_other_variant(app, fake)
    await created(client, api_headers, key="wms-adjust-1")

    response = await post(
        client, api_headers, product_id=OTHER_VARIANT_ID, key="wms-adjust-1"
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
    adjustments, messages = await stored(database)
    assert [a.id for a in adjustments] == [first["id"], second["id"]]
    assert len({a.api_key_id for a in adjustments}) == 2
    assert len(messages) == 2


@pytest.mark.usefixtures("ready")
async def test_concurrent_requests_with_one_key_store_one_adjustment(
    client, api_headers, database, monkeypatch
):
    # Record the key's use now, so neither request waits on the api_keys row.
    assert (await client.get(LIST_PATH, headers=api_headers)).status_code == 200
    replays = []
    if database.dialect == "postgresql":
        # Both requests miss each other's row, so the loser meets the unique
        # constraint inside its savepoint. (SQLite serialises writers.)
        lookup = inventory_service.ADJUSTMENTS.find_replay
        both_looked = asyncio.Barrier(2)

        async def replay_after_both_looked(*args, **kwargs):
            replays.append(kwargs["idempotency_key"])
            found = await lookup(*args, **kwargs)
            if len(replays) <= 2:
                await asyncio.wait_for(both_looked.wait(), timeout=10)
            return found

        monkeypatch.setattr(
            inventory_service.ADJUSTMENTS, "find_replay", replay_after_both_looked
        )

    first, second = await asyncio.gather(
        post(client, api_headers, key="race"), post(client, api_headers, key="race")
    )

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    adjustments, messages = await stored(database)
    assert [a.id for a in adjustments] == [first.json()["id"]]
    assert len(messages) == 1
    if database.dialect == "postgresql":
        assert len(replays) == 3  # two first look-ups, one after the conflict


# --- read and list ------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_get_adjustment_shows_it_as_created(client, api_headers):
    shown = await created(client, api_headers)

    response = await client.get(f"{LIST_PATH}/{shown['id']}", headers=api_headers)

    assert response.status_code == 200
    assert response.json() == shown


@pytest.mark.usefixtures("ready")
async def test_get_unknown_adjustment_is_404(client, api_headers):
    response = await client.get(f"{LIST_PATH}/987654", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "InventoryAdjustmentNotFound",
        "detail": "No inventory adjustment with id 987654.",
    }


@pytest.mark.usefixtures("ready")
async def test_reading_adjustments_needs_an_api_key(client, api_headers):
    shown = await created(client, api_headers)

    one = await client.get(f"{LIST_PATH}/{shown['id']}")
    listed = await client.get(LIST_PATH)

    assert (one.status_code, listed.status_code) == (401, 401)
    assert one.json() == listed.json() == MISSING_KEY


@pytest.mark.usefixtures("ready")
async def test_list_shows_adjustments_newest_first(client, api_headers):
    ids = [
        (await created(client, api_headers, ADJUSTMENT | {"quantity": n}))["id"]
        for n in (1, 2, 3)
    ]

    response = await client.get(LIST_PATH, headers=api_headers)

    assert response.status_code == 200
    page = response.json()
    assert [item["id"] for item in page["data"]] == ids[::-1]
    assert [item["quantity"] for item in page["data"]] == [3, 2, 1]
    assert page["next_cursor"] is None


@pytest.mark.usefixtures("ready")
async def test_list_filters_by_product_id(app, fake, client, api_headers):
    await seed_other_variant(app, fake)
    ours = await created(client, api_headers)
    other = await created(client, api_headers, product_id=OTHER_VARIANT_ID)

    assert await list_ids(client, api_headers, product_id=VARIANT_ID) == [ours["id"]]
    assert await list_ids(client, api_headers, product_id=OTHER_VARIANT_ID) == [
        other["id"]
    ]
    assert await list_ids(client, api_headers, product_id="prod_none") == []


@pytest.mark.usefixtures("ready")
async def test_list_filters_by_delivery_status(
    app, client, api_headers, fake, settings
):
    worker = worker_for(app, settings)
    fake.script("PUT", ADJUST_PATH, respond(422, {"error": "Unknown location"}))
    failed = await created(client, api_headers)
    await deliver_due(worker)
    delivered = await created(client, api_headers)
    await deliver_due(worker)
    pending = await created(client, api_headers)

    assert await list_ids(client, api_headers, status="pending") == [pending["id"]]
    assert await list_ids(client, api_headers, status="delivered") == [delivered["id"]]
    assert await list_ids(client, api_headers, status="failed") == [failed["id"]]
    assert await list_ids(client, api_headers, status="delivering") == []


@pytest.mark.usefixtures("ready")
async def test_list_pages_through_every_adjustment_with_the_cursor(
    app, fake, client, api_headers
):
    await seed_other_variant(app, fake)
    ours = []
    for n in range(1, 6):
        ours.append(
            (await created(client, api_headers, ADJUSTMENT | {"quantity": n}))["id"]
        )
        await created(client, api_headers, product_id=OTHER_VARIANT_ID)

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"product_id": VARIANT_ID, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(LIST_PATH, params=params, headers=api_headers)
        assert response.status_code == 200
        page = response.json()
        assert len(page["data"]) <= 2
        seen += [item["id"] for item in page["data"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10

    assert seen == ours[::-1]
    assert pages == 3


@pytest.mark.usefixtures("ready")
@pytest.mark.parametrize(
    "cursor",
    ["not a cursor!", cursor_of(["abc"]), cursor_of([]), cursor_of([2**63])],
    ids=["garbage", "text-id", "empty", "over-int64"],
)
async def test_invalid_cursor_is_400(client, api_headers, cursor):
    await created(client, api_headers)

    response = await client.get(
        LIST_PATH, params={"cursor": cursor}, headers=api_headers
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "InvalidCursor",
        "detail": "The cursor is not valid.",
    }


# --- retry --------------------------------------------------------------------


@pytest.mark.usefixtures("ready")
async def test_retrying_a_pending_adjustment_is_refused(client, api_headers, database):
    shown = await created(client, api_headers)

    response = await client.post(
        f"{LIST_PATH}/{shown['id']}/retry", headers=api_headers
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "RetryRefused",
        "detail": "Only failed items can be retried; this one is pending.",
    }
    (message,) = (await stored(database))[1]
    assert (message.status, message.attempts) == ("pending", 0)


@pytest.mark.usefixtures("ready")
async def test_retrying_a_failed_adjustment_overtaken_by_a_later_one_is_refused(
    app, client, api_headers, fake, settings, database
):
    worker = worker_for(app, settings)
    fake.script("PUT", ADJUST_PATH, respond(422, {"error": "Unknown location"}))
    failed = await created(client, api_headers)
    await deliver_due(worker)
    later = await created(
        client, api_headers, ADJUSTMENT | {"adjustment_type": "exact"}
    )
    await deliver_due(worker)

    response = await client.post(
        f"{LIST_PATH}/{failed['id']}/retry", headers=api_headers
    )

    assert response.status_code == 409
    assert response.json() == {
        "error": "RetryRefused",
        "detail": "A later item for the same order or product has already been "
        "sent; retrying this one would apply them out of order. Post a new one "
        "instead.",
    }
    statuses = {m.subject_id: m.status for m in (await stored(database))[1]}
    assert statuses == {failed["id"]: "failed", later["id"]: "delivered"}
    assert await deliver_due(worker, now=utcnow() + timedelta(hours=1)) == 0


@pytest.mark.usefixtures("ready")
async def test_a_later_adjustment_of_another_product_does_not_block_retry(
    app, client, api_headers, fake, settings
):
    await seed_other_variant(app, fake)
    worker = worker_for(app, settings)
    fake.script("PUT", ADJUST_PATH, respond(422, {"error": "Unknown location"}))
    failed = await created(client, api_headers)
    await deliver_due(worker)
    await created(client, api_headers, product_id=OTHER_VARIANT_ID)
    await deliver_due(worker)

    response = await client.post(
        f"{LIST_PATH}/{failed['id']}/retry", headers=api_headers
    )

    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert await deliver_due(worker) == 1


@pytest.mark.usefixtures("ready")
async def test_retrying_a_failed_adjustment_puts_it_back_in_the_queue(
    app, client, api_headers, fake, settings, database
):
    fake.script("PUT", ADJUST_PATH, respond(422, {"error": "Unknown location"}))
    shown = await created(client, api_headers)
    await deliver_due(worker_for(app, settings))

    response = await client.post(
        f"{LIST_PATH}/{shown['id']}/retry", headers=api_headers
    )

    assert response.status_code == 202
    retried = response.json()
    assert (retried["status"], retried["attempts"]) == ("pending", 1)
    assert retried["failed_at"] is None
    (message,) = (await stored(database))[1]
    assert message.status == "pending"


@pytest.mark.usefixtures("ready")
async def test_retrying_an_unknown_adjustment_is_404(client, api_headers):
    response = await client.post(f"{LIST_PATH}/987654/retry", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "InventoryAdjustmentNotFound",
        "detail": "No inventory adjustment with id 987654.",
    }
