"""The webhook events API: what was received, newest first, bodies only on request."""

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from app.core.db import Database
from app.webhooks.models import WebhookEvent
from tests.signing import sample_bytes, signed_headers

pytestmark = pytest.mark.asyncio

EVENTS = "/api/v1/webhook-events"
RECEIVER = "/webhooks/trackstar"
ORDER_ID = "ord_5b1e0c7a93d24f68"
CONNECTION_ID = "conn_7f3a9c2e5b1d4e80"
UNHANDLED = json.dumps(
    {
        "connection_id": CONNECTION_ID,
        "event_type": "connection-error.created",
        "integration_name": "shopify",
        "data": {"id": "err_1", "note": "unhandled-event-marker"},
    }
).encode()
NOT_JSON = "not json ✓ at all, quarantine-marker\r\n".encode()
ITEM_FIELDS = {
    "id",
    "message_id",
    "status",
    "reason",
    "event_type",
    "connection_id",
    "integration_name",
    "record_id",
    "duplicate_of_id",
    "signed_at",
    "received_at",
}


def cursor_of(parts: Any) -> str:
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def deliver(
    client: httpx.AsyncClient, body: bytes, **signing: Any
) -> dict[str, Any]:
    response = await client.post(
        RECEIVER, content=body, headers=signed_headers(body, **signing)
    )
    assert response.status_code == 200, response.text
    ack: dict[str, Any] = response.json()
    return ack


async def stored_event(database: Database, event_id: int) -> WebhookEvent:
    async with database.transaction() as session:
        event = await session.scalar(
            select(WebhookEvent).where(WebhookEvent.id == event_id)
        )
    assert event is not None
    return event


@pytest_asyncio.fixture
async def one_of_each(client) -> dict[str, int]:
    """One event per status, delivered in this order; their ids by status.

    Ids are not dense on Postgres: the insert that finds a duplicate uses one.
    """
    statuses = [
        await deliver(client, sample_bytes("cart-order.updated"), message_id="msg_1"),
        await deliver(client, sample_bytes("cart-order.created")),
        await deliver(client, sample_bytes("cart-order.updated"), message_id="msg_1"),
        await deliver(client, UNHANDLED),
        await deliver(client, NOT_JSON),
    ]
    ids = {ack["status"]: ack["event_id"] for ack in statuses}
    assert list(ids) == ["processed", "stale", "duplicate", "ignored", "quarantined"]
    return ids


async def test_request_without_a_key_is_401(client, one_of_each):
    for path in (EVENTS, f"{EVENTS}/{one_of_each['processed']}"):
        response = await client.get(path)

        assert response.status_code == 401
        assert response.json()["error"] == "InvalidApiKey"


async def test_events_are_listed_newest_first(client, api_headers, one_of_each):
    response = await client.get(EVENTS, headers=api_headers)

    assert response.status_code == 200
    body = response.json()
    newest_first = ["quarantined", "ignored", "duplicate", "stale", "processed"]
    assert [(item["id"], item["status"]) for item in body["data"]] == [
        (one_of_each[status], status) for status in newest_first
    ]
    ids = [item["id"] for item in body["data"]]
    assert ids == sorted(ids, reverse=True)
    assert body["next_cursor"] is None


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("processed", None),
        ("ignored", "event type is not handled"),
        ("stale", "a newer version is stored"),
        ("duplicate", "message already received as event 1"),
        ("quarantined", "body is not JSON: Expecting value: line 1 column 1 (char 0)"),
    ],
)
async def test_status_filter_lists_only_events_with_that_status_and_reason(
    client, api_headers, one_of_each, status, reason
):
    response = await client.get(EVENTS, params={"status": status}, headers=api_headers)

    assert response.status_code == 200
    data = response.json()["data"]
    assert [(item["id"], item["status"], item["reason"]) for item in data] == [
        (one_of_each[status], status, reason)
    ]


async def test_unknown_status_filter_is_422(client, api_headers):
    response = await client.get(EVENTS, params={"status": "lost"}, headers=api_headers)

    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"


async def test_list_items_never_include_the_body(client, api_headers, one_of_each):
    response = await client.get(EVENTS, headers=api_headers)

    for item in response.json()["data"]:
        assert set(item) == ITEM_FIELDS
    for marker in ("1 Sample Street", "unhandled-event-marker", "quarantine-marker"):
        assert marker not in response.text
    for status in one_of_each:
        filtered = await client.get(
            EVENTS, params={"status": status}, headers=api_headers
        )
        assert set(filtered.json()["data"][0]) == ITEM_FIELDS


async def test_list_item_describes_the_delivery(client, database, api_headers):
    # Whole seconds, as the svix-timestamp header carries them.
    signed_at = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()), UTC)
    await deliver(
        client,
        sample_bytes("cart-order.updated"),
        message_id="msg_described",
        timestamp=signed_at,
    )
    stored = await stored_event(database, 1)

    response = await client.get(EVENTS, headers=api_headers)

    (item,) = response.json()["data"]
    assert datetime.fromisoformat(item["received_at"]) == stored.received_at
    assert item == {
        "id": 1,
        "message_id": "msg_described",
        "status": "processed",
        "reason": None,
        "event_type": "cart-order.updated",
        "connection_id": CONNECTION_ID,
        "integration_name": "shopify",
        "record_id": ORDER_ID,
        "duplicate_of_id": None,
        "signed_at": signed_at.isoformat().replace("+00:00", "Z"),
        "received_at": item["received_at"],
    }


async def test_limit_one_walks_every_event_newest_first(
    client, api_headers, one_of_each
):
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(EVENTS, params=params, headers=api_headers)).json()
        seen.extend(item["id"] for item in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(one_of_each.values(), reverse=True)
    assert cursor is None


async def test_status_filter_holds_across_pages(client, api_headers):
    for _ in range(3):
        await deliver(client, UNHANDLED)
    await deliver(client, NOT_JSON)

    first = await client.get(
        EVENTS, params={"status": "ignored", "limit": 2}, headers=api_headers
    )
    second = await client.get(
        EVENTS,
        params={"status": "ignored", "limit": 2, "cursor": first.json()["next_cursor"]},
        headers=api_headers,
    )

    assert [item["id"] for item in first.json()["data"]] == [3, 2]
    assert [item["id"] for item in second.json()["data"]] == [1]
    assert second.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        cursor_of(["5"]),
        cursor_of([5, 4]),
        cursor_of([True]),
        cursor_of([2**70]),
    ],
    ids=["garbage", "text-id", "two-parts", "boolean", "beyond-64-bits"],
)
@pytest.mark.usefixtures("one_of_each")
async def test_invalid_cursor_is_400(client, api_headers, cursor):
    response = await client.get(EVENTS, params={"cursor": cursor}, headers=api_headers)

    assert response.status_code == 400
    assert response.json() == {
        "error": "InvalidCursor",
        "detail": "The cursor is not valid.",
    }


@pytest.mark.parametrize(
    "body",
    [sample_bytes("cart-order.created"), NOT_JSON, UNHANDLED],
    ids=["processed-non-ascii", "quarantined", "ignored"],
)
async def test_event_detail_returns_the_body_exactly_as_delivered(
    client, database, api_headers, body
):
    ack = await deliver(client, body)

    response = await client.get(f"{EVENTS}/{ack['event_id']}", headers=api_headers)

    assert response.status_code == 200
    detail = response.json()
    assert base64.b64decode(detail["body_base64"], validate=True) == body
    assert detail["body_text"] == body.decode()
    assert set(detail) == ITEM_FIELDS | {"body_base64", "body_text"}
    assert detail["status"] == ack["status"]
    assert (await stored_event(database, ack["event_id"])).body == body


async def test_duplicate_event_detail_has_no_body_and_points_at_the_first(
    client, api_headers, one_of_each
):
    response = await client.get(
        f"{EVENTS}/{one_of_each['duplicate']}", headers=api_headers
    )

    detail = response.json()
    assert detail["status"] == "duplicate"
    assert detail["duplicate_of_id"] == one_of_each["processed"]
    assert detail["body_base64"] is None
    assert detail["body_text"] is None


@pytest.mark.usefixtures("one_of_each")
async def test_unknown_event_id_is_404(client, api_headers):
    response = await client.get(f"{EVENTS}/999", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "WebhookEventNotFound",
        "detail": "No webhook event with id 999.",
    }


@pytest.mark.parametrize("event_id", ["0", "-1", str(2**63), "abc"])
async def test_event_id_that_is_not_a_positive_64_bit_integer_is_422(
    client, api_headers, event_id
):
    response = await client.get(f"{EVENTS}/{event_id}", headers=api_headers)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert [error["loc"] for error in body["errors"]] == [["path", "event_id"]]
