"""The orders API: authentication, filters, cursor pages and the response shape."""

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.auth import service as auth_service
from app.auth.models import ApiKey
from app.core.db import Database
from app.orders.models import Order
from tests.fixtures.builders import (
    CONNECTION_ID,
    OTHER_CONNECTION_ID,
    envelope,
    line_item,
    order,
    to_json,
)
from tests.fixtures.storage import put_orders
from tests.signing import sample_bytes, signed_headers

pytestmark = pytest.mark.asyncio

ORDERS = "/api/v1/orders"
MISSING_KEY = {
    "error": "InvalidApiKey",
    "detail": "Send the API key as `Authorization: Bearer <key>`.",
}
INVALID_KEY = {"error": "InvalidApiKey", "detail": "The API key is not valid."}


def cursor_of(parts: Any) -> str:
    """A cursor in the API's encoding around arbitrary JSON."""
    raw = json.dumps(parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def list_ids(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[str]:
    response = await client.get(ORDERS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    """Every page from the first to the one whose `next_cursor` is null."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get(ORDERS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page: dict[str, Any] = response.json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


async def stored_order(database: Database, connection_id: str, order_id: str) -> Order:
    async with database.transaction() as session:
        row = await session.get(Order, (connection_id, order_id))
    assert row is not None
    return row


# --- authentication -------------------------------------------------------


@pytest.mark.parametrize("path", [ORDERS, f"{ORDERS}/ord_1"])
async def test_request_without_a_key_is_401_with_the_error_envelope(
    client, database, path
):
    await put_orders(database, order("ord_1"))

    response = await client.get(path)

    assert response.status_code == 401
    assert response.json() == MISSING_KEY
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        ("Basic dXNlcjpwYXNzd29yZA==", MISSING_KEY),
        ("Bearer", MISSING_KEY),
        ("tsf_abc_def", MISSING_KEY),
        ("Bearer not-a-key", INVALID_KEY),
        ("Bearer tsf_onlyprefix", INVALID_KEY),
        ("Bearer xyz_abc_def", INVALID_KEY),
    ],
)
@pytest.mark.parametrize("path", [ORDERS, f"{ORDERS}/ord_1"])
async def test_malformed_authorization_header_is_401(
    client, database, path, authorization, expected
):
    await put_orders(database, order("ord_1"))

    response = await client.get(path, headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.json() == expected


async def test_key_with_a_known_prefix_but_wrong_secret_is_401(
    client, database, api_headers
):
    await put_orders(database, order("ord_1"))
    key = api_headers["Authorization"].removeprefix("Bearer ")
    known_prefix = key[: len("tsf_") + 12]
    forged = f"Bearer {known_prefix}_{'A' * 43}"

    response = await client.get(ORDERS, headers={"Authorization": forged})

    assert response.status_code == 401
    assert response.json() == INVALID_KEY


@pytest.mark.parametrize("path", [ORDERS, f"{ORDERS}/ord_1"])
async def test_revoked_key_is_401_and_its_use_is_not_recorded(client, database, path):
    await put_orders(database, order("ord_1"))
    async with database.transaction() as session:
        issued = await auth_service.create_api_key(session, name="revoked-wms")
    headers = {"Authorization": f"Bearer {issued.key}"}
    assert (await client.get(path, headers=headers)).status_code == 200
    async with database.transaction() as session:
        # Forget the use above, so that a use recorded below would show.
        await session.execute(
            update(ApiKey).where(ApiKey.name == "revoked-wms").values(last_used_at=None)
        )
        await auth_service.revoke_api_key(session, name="revoked-wms")

    response = await client.get(path, headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "error": "InvalidApiKey",
        "detail": "The API key has been revoked.",
    }
    async with database.transaction() as session:
        stored = await session.scalar(
            select(ApiKey).where(ApiKey.name == "revoked-wms")
        )
    assert stored is not None
    assert stored.revoked_at is not None
    assert stored.last_used_at is None


# --- filters --------------------------------------------------------------


async def test_status_filter_returns_only_orders_in_that_status(
    client, database, api_headers
):
    await put_orders(
        database,
        order("ord_open", status="open"),
        order("ord_cancelled", status="cancelled"),
        order("ord_open_too", status="open"),
    )

    assert await list_ids(client, api_headers, status="open") == [
        "ord_open",
        "ord_open_too",
    ]
    assert await list_ids(client, api_headers, status="cancelled") == ["ord_cancelled"]
    assert await list_ids(client, api_headers, status="fulfilled") == []


async def test_unknown_status_filter_is_422(client, api_headers):
    response = await client.get(
        ORDERS, params={"status": "teleported"}, headers=api_headers
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert [error["loc"] for error in body["errors"]] == [["query", "status"]]


async def test_misspelt_filter_is_422_not_ignored(client, api_headers):
    response = await client.get(ORDERS, params={"statuss": "open"}, headers=api_headers)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert [error["loc"] for error in body["errors"]] == [["query", "statuss"]]


async def test_filter_given_twice_is_422(client, database, api_headers):
    await put_orders(database, order("ord_a", status="open"))

    response = await client.get(
        ORDERS,
        params=[("status", "open"), ("status", "cancelled")],
        headers=api_headers,
    )

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(error["loc"], error["type"]) for error in errors] == [
        (["query", "status"], "repeated_parameter")
    ]


async def test_connection_id_filter_returns_only_that_connections_orders(
    client, database, api_headers
):
    await put_orders(database, order("ord_a"), connection_id=CONNECTION_ID)
    await put_orders(
        database, order("ord_a"), order("ord_b"), connection_id=OTHER_CONNECTION_ID
    )

    response = await client.get(
        ORDERS, params={"connection_id": OTHER_CONNECTION_ID}, headers=api_headers
    )

    assert response.status_code == 200
    data = response.json()["data"]
    assert [(item["connection_id"], item["id"]) for item in data] == [
        (OTHER_CONNECTION_ID, "ord_a"),
        (OTHER_CONNECTION_ID, "ord_b"),
    ]
    assert await list_ids(client, api_headers, connection_id="conn_unknown") == []


async def test_updated_since_filters_on_when_the_service_changed_the_order(
    client, database, api_headers
):
    # The cart's updated_date points the other way on purpose: the filter must
    # use the time this service stored the order, not the cart's timestamp.
    await put_orders(database, order("ord_early", updated_date="2030-01-01T00:00:00Z"))
    await asyncio.sleep(0.01)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await put_orders(database, order("ord_late", updated_date="2020-01-01T00:00:00Z"))

    ids = await list_ids(client, api_headers, updated_since=boundary.isoformat())

    assert ids == ["ord_late"]
    early = await stored_order(database, CONNECTION_ID, "ord_early")
    late = await stored_order(database, CONNECTION_ID, "ord_late")
    assert early.changed_at < boundary <= late.changed_at


async def test_updated_since_includes_an_order_changed_exactly_then(
    client, database, api_headers
):
    await put_orders(database, order("ord_first"))
    await asyncio.sleep(0.01)
    await put_orders(database, order("ord_second"))
    second = await client.get(f"{ORDERS}/ord_second", headers=api_headers)
    changed_at = second.json()["changed_at"]

    ids = await list_ids(client, api_headers, updated_since=changed_at)

    assert ids == ["ord_second"]


async def test_updated_since_with_an_offset_is_compared_in_utc(
    client, database, api_headers
):
    await put_orders(database, order("ord_1"))
    stored = await stored_order(database, CONNECTION_ID, "ord_1")
    minute = timedelta(minutes=1)
    # Read as UTC, the first would lie after the change and the second before it.
    before = (stored.changed_at - minute).astimezone(timezone(timedelta(hours=2)))
    after = (stored.changed_at + minute).astimezone(timezone(timedelta(hours=-5)))

    ids_since_before = await list_ids(
        client, api_headers, updated_since=before.isoformat()
    )
    ids_since_after = await list_ids(
        client, api_headers, updated_since=after.isoformat()
    )

    assert before.isoformat().endswith("+02:00")
    assert ids_since_before == ["ord_1"]
    assert ids_since_after == []


@pytest.mark.parametrize("value", ["yesterday", "9999-12-31T23:59:59-05:00"])
async def test_unparseable_updated_since_is_422(client, api_headers, value):
    response = await client.get(
        ORDERS, params={"updated_since": value}, headers=api_headers
    )

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert [error["loc"] for error in body["errors"]] == [["query", "updated_since"]]


async def test_sku_filter_returns_orders_with_a_line_for_that_sku_once(
    client, database, api_headers
):
    await put_orders(
        database,
        order(
            "ord_twice",
            line_items=[
                line_item("li_1", product_sku="MUG"),
                line_item("li_2", product_sku="MUG"),
            ],
        ),
        order("ord_other_sku", line_items=[line_item("li_1", product_sku="TEE")]),
        order(
            "ord_parent_sku_only",
            line_items=[line_item("li_1", product_sku="TEE", parent_product_sku="MUG")],
        ),
        order(
            "ord_mixed",
            line_items=[
                line_item("li_1", product_sku="TEE"),
                line_item("li_2", product_sku="MUG"),
            ],
        ),
        order("ord_no_lines", line_items=[]),
    )

    assert await list_ids(client, api_headers, sku="MUG") == ["ord_mixed", "ord_twice"]
    assert await list_ids(client, api_headers, sku="mug") == []


async def test_filters_combine(client, database, api_headers):
    mug = [line_item("li_1", product_sku="MUG")]
    await put_orders(
        database,
        order("ord_match", status="open", line_items=mug),
        order("ord_wrong_status", status="cancelled", line_items=mug),
        order("ord_wrong_sku", status="open"),
    )
    await put_orders(
        database, order("ord_match", line_items=mug), connection_id=OTHER_CONNECTION_ID
    )

    response = await client.get(
        ORDERS,
        params={"status": "open", "sku": "MUG", "connection_id": CONNECTION_ID},
        headers=api_headers,
    )

    data = response.json()["data"]
    assert [(item["connection_id"], item["id"]) for item in data] == [
        (CONNECTION_ID, "ord_match")
    ]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (ORDERS, {"sku": "MUG\x00"}),
        (ORDERS, {"connection_id": "conn\x00"}),
        (f"{ORDERS}/ord%00_1", {}),
    ],
    ids=["sku", "connection_id", "order_id"],
)
async def test_nul_character_in_an_id_is_refused_with_422(
    client, database, api_headers, path, params
):
    await put_orders(database, order("ord_1"))

    response = await client.get(path, params=params, headers=api_headers)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert len(body["errors"]) == 1


# --- cursor pagination ----------------------------------------------------


async def test_limit_one_walks_every_order_exactly_once_in_change_order(
    client, database, api_headers
):
    # Three writes: orders stored together share `changed_at`, and the same
    # order id exists under two connections.
    await put_orders(database, order("ord_3"), order("ord_1"))
    await put_orders(
        database, order("ord_2"), order("ord_1"), connection_id=OTHER_CONNECTION_ID
    )
    await put_orders(database, order("ord_0"))

    pages = await walk(client, api_headers, limit=1)

    seen = [(item["connection_id"], item["id"]) for p in pages for item in p["data"]]
    assert seen == [
        (CONNECTION_ID, "ord_1"),
        (CONNECTION_ID, "ord_3"),
        (OTHER_CONNECTION_ID, "ord_1"),
        (OTHER_CONNECTION_ID, "ord_2"),
        (CONNECTION_ID, "ord_0"),
    ]
    assert [len(p["data"]) for p in pages] == [1, 1, 1, 1, 1]
    assert all(p["next_cursor"] for p in pages[:-1])
    assert pages[-1]["next_cursor"] is None


async def test_page_exactly_as_long_as_the_rest_has_null_next_cursor(
    client, database, api_headers
):
    await put_orders(database, order("ord_1"), order("ord_2"), order("ord_3"))

    response = await client.get(ORDERS, params={"limit": 3}, headers=api_headers)

    assert [item["id"] for item in response.json()["data"]] == [
        "ord_1",
        "ord_2",
        "ord_3",
    ]
    assert response.json()["next_cursor"] is None


async def test_empty_list_is_one_page_with_null_next_cursor(client, api_headers):
    response = await client.get(ORDERS, headers=api_headers)

    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}


async def test_next_pages_keep_the_filters(client, database, api_headers):
    await put_orders(
        database,
        order("ord_1", status="open"),
        order("ord_2", status="cancelled"),
        order("ord_3", status="open"),
        order("ord_4", status="cancelled"),
    )

    pages = await walk(client, api_headers, limit=1, status="open")

    assert [item["id"] for p in pages for item in p["data"]] == ["ord_1", "ord_3"]


async def test_order_changed_while_paging_is_seen_again_at_the_end(
    client, database, api_headers
):
    await put_orders(database, order("ord_1"), order("ord_2"))
    first = await client.get(ORDERS, params={"limit": 1}, headers=api_headers)
    await asyncio.sleep(0.01)
    await put_orders(database, order("ord_1", updated_date="2026-04-01T00:00:00Z"))

    pages = await walk(client, api_headers, limit=1, cursor=first.json()["next_cursor"])

    assert [item["id"] for p in pages for item in p["data"]] == ["ord_2", "ord_1"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        cursor_of({"changed_at": "2026-03-14T09:12:45+00:00"}),
        cursor_of(["2026-03-14T09:12:45+00:00", CONNECTION_ID]),
        cursor_of(["yesterday", CONNECTION_ID, "ord_1"]),
        cursor_of([1_700_000_000, CONNECTION_ID, "ord_1"]),
        cursor_of(["9999-12-31T23:59:59-05:00", CONNECTION_ID, "ord_1"]),
        cursor_of(["2026-03-14T09:12:45+00:00", ["x"], "ord_1"]),
        cursor_of(["2026-03-14T09:12:45+00:00", True, "ord_1"]),
        cursor_of(["2026-03-14T09:12:45+00:00", CONNECTION_ID, "ord\x00"]),
        cursor_of(["2026-03-14T09:12:45+00:00", "\ud800", "ord_1"]),
    ],
    ids=[
        "not-base64-json",
        "not-base64",
        "object",
        "too-short",
        "bad-timestamp",
        "number-timestamp",
        "timestamp-overflow",
        "nested-list",
        "boolean",
        "nul",
        "lone-surrogate",
    ],
)
async def test_invalid_cursor_is_400(client, database, api_headers, cursor):
    await put_orders(database, order("ord_1"))

    response = await client.get(ORDERS, params={"cursor": cursor}, headers=api_headers)

    assert response.status_code == 400
    assert response.json() == {
        "error": "InvalidCursor",
        "detail": "The cursor is not valid.",
    }


# --- the response ---------------------------------------------------------


async def test_get_order_returns_every_field(client, database, api_headers):
    record = order(
        "ord_full",
        order_number="1001",
        created_date="2026-03-14T09:00:00Z",
        updated_date="2026-03-14T11:12:45.5+02:00",
        status="confirmed",
        raw_status="paid",
        shipping_method_id="shm_1",
        shipping_method_name="International Standard",
        carrier_id="car_1",
        carrier_name="UPS",
        invoice_currency_code="EUR",
        total_price=Decimal("55.08"),
        total_tax=Decimal("3.60"),
        total_discount=Decimal("2.00"),
        total_shipping=None,
        ship_to_address={"full_name": "Zoë Müller", "city": "京都市"},
        latest_ship_date="2026-03-18T00:00",
        line_items=[line_item("li_1")],
        shipping_groups=[
            {
                "shipping_group_id": "sg_1",
                "status": "open",
                "warehouse_id": "wh_1",
                "line_items": [{"line_item_id": "li_1", "quantity": 1}],
            }
        ],
        external_system_url="https://shop.example.com/orders/1001",
        additional_fields={"gift": True, "weight": Decimal("1.5")},
        trackstar_tags=["vip"],
        trackstar_created_date="2026-03-14T10:00:31Z",
        trackstar_updated_date="2026-03-14T10:00:31Z",
    )
    await put_orders(database, record)
    stored = await stored_order(database, CONNECTION_ID, "ord_full")

    response = await client.get(f"{ORDERS}/ord_full", headers=api_headers)

    assert response.status_code == 200
    body = response.json()
    assert datetime.fromisoformat(body["changed_at"]) == stored.changed_at
    assert body == {
        "id": "ord_full",
        "connection_id": CONNECTION_ID,
        "order_number": "1001",
        "status": "confirmed",
        "raw_status": "paid",
        "requested_shipping_method": "Standard",
        "shipping_method_id": "shm_1",
        "shipping_method_name": "International Standard",
        "carrier_id": "car_1",
        "carrier_name": "UPS",
        "invoice_currency_code": "EUR",
        "total_price": "55.08",
        "total_tax": "3.60",
        "total_discount": "2.00",
        "total_shipping": None,
        "ship_to_address": {
            "full_name": "Zoë Müller",
            "company": None,
            "address1": None,
            "address2": None,
            "address3": None,
            "city": "京都市",
            "state": None,
            "postal_code": None,
            "country": None,
            "phone_number": None,
            "email_address": None,
        },
        "bill_to_address": None,
        "earliest_ship_date": None,
        "latest_ship_date": "2026-03-18T00:00:00Z",
        "line_items": [
            {
                "line_item_id": "li_1",
                "product_id": "prod_var_1",
                "product_sku": "SKU-1",
                "parent_product_id": "prod_parent_1",
                "parent_product_sku": None,
                "quantity": 1,
                "unit_price": "19.99",
                "discount": "0.00",
                "tax": "1.60",
            }
        ],
        "shipping_groups": [
            {
                "shipping_group_id": "sg_1",
                "status": "open",
                "raw_status": None,
                "warehouse_id": "wh_1",
                "created_date": None,
                "updated_date": None,
                "line_items": [{"line_item_id": "li_1", "quantity": 1}],
            }
        ],
        "shipments": [],
        "external_system_url": "https://shop.example.com/orders/1001",
        "additional_fields": {"gift": True, "weight": 1.5},
        "trackstar_tags": ["vip"],
        "created_date": "2026-03-14T09:00:00Z",
        "updated_date": "2026-03-14T09:12:45.500000Z",
        "trackstar_created_date": "2026-03-14T10:00:31Z",
        "trackstar_updated_date": "2026-03-14T10:00:31Z",
        "changed_at": body["changed_at"],
    }


async def test_listed_order_has_the_same_shape_as_the_single_order(
    client, database, api_headers
):
    await put_orders(database, order("ord_1"))

    listed = await client.get(ORDERS, headers=api_headers)
    single = await client.get(f"{ORDERS}/ord_1", headers=api_headers)

    assert listed.json()["data"] == [single.json()]


async def test_money_fields_are_exact_decimal_strings_with_the_currency(
    client, database, api_headers
):
    await put_orders(
        database,
        order(
            "ord_1",
            invoice_currency_code="JPY",
            total_price=Decimal("1234567890.120"),
            total_tax=Decimal("0.10"),
            total_discount=Decimal("-0.30"),
            total_shipping=Decimal("5"),
            line_items=[
                line_item(
                    "li_1",
                    unit_price=Decimal("0.1"),
                    discount=Decimal("0.20"),
                    tax=None,
                )
            ],
        ),
    )

    body = (await client.get(f"{ORDERS}/ord_1", headers=api_headers)).json()

    money = ("total_price", "total_tax", "total_discount", "total_shipping")
    assert {name: body[name] for name in ("invoice_currency_code", *money)} == {
        "invoice_currency_code": "JPY",
        "total_price": "1234567890.120",
        "total_tax": "0.10",
        "total_discount": "-0.30",
        "total_shipping": "5",
    }
    (line,) = body["line_items"]
    assert (line["unit_price"], line["discount"], line["tax"]) == ("0.1", "0.20", None)


async def test_money_sent_in_exponent_notation_comes_back_as_a_plain_decimal(
    client, database, api_headers
):
    data = order(
        "ord_1",
        total_price=Decimal("1E+2"),
        total_tax=Decimal("1E-7"),
        line_items=[line_item("li_1", unit_price=Decimal("2.5E+1"))],
    )
    body = to_json(envelope("cart-order.created", data))
    assert b'"total_price": 1E+2' in body
    delivered = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )
    assert delivered.json()["status"] == "processed"

    response = await client.get(f"{ORDERS}/ord_1", headers=api_headers)

    order_body = response.json()
    assert (order_body["total_price"], order_body["total_tax"]) == ("100", "0.0000001")
    assert order_body["line_items"][0]["unit_price"] == "25"
    stored = await stored_order(database, CONNECTION_ID, "ord_1")
    assert stored.total_price == Decimal(100)
    assert stored.total_tax == Decimal("0.0000001")


async def test_line_items_come_back_in_the_order_the_cart_sent_them(
    client, database, api_headers
):
    lines = [line_item(line_id) for line_id in ("li_c", "li_a", "li_b", "li_0")]
    await put_orders(database, order("ord_1", line_items=lines))

    single = await client.get(f"{ORDERS}/ord_1", headers=api_headers)
    listed = await client.get(ORDERS, headers=api_headers)

    expected = ["li_c", "li_a", "li_b", "li_0"]
    assert [line["line_item_id"] for line in single.json()["line_items"]] == expected
    (listed_order,) = listed.json()["data"]
    assert [line["line_item_id"] for line in listed_order["line_items"]] == expected


async def test_order_received_by_webhook_is_served_by_the_api(client, api_headers):
    body = sample_bytes("cart-order.created")
    await client.post("/webhooks/trackstar", content=body, headers=signed_headers(body))

    response = await client.get(f"{ORDERS}/ord_5b1e0c7a93d24f68", headers=api_headers)

    assert response.status_code == 200
    order_body = response.json()
    assert order_body["connection_id"] == "conn_7f3a9c2e5b1d4e80"
    assert order_body["total_price"] == "55.08"
    assert order_body["total_tax"] == "3.60"
    assert order_body["ship_to_address"]["full_name"] == "Zoë Müller"
    assert [line["product_sku"] for line in order_body["line_items"]] == [
        "TEE-BLU-M",
        "MUG-CAFE",
        None,
    ]
    assert order_body["additional_fields"]["customer_note"] == (
        "Please ring twice \u2013 merci!"
    )


async def test_unknown_order_id_is_404(client, database, api_headers):
    await put_orders(database, order("ord_1"))

    response = await client.get(f"{ORDERS}/ord_missing", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "OrderNotFound",
        "detail": "No order with id 'ord_missing'.",
    }


async def test_order_id_of_255_characters_is_looked_up(client, database, api_headers):
    long_id = "o" * 255
    await put_orders(database, order(long_id))

    response = await client.get(f"{ORDERS}/{long_id}", headers=api_headers)

    assert response.status_code == 200
    assert response.json()["id"] == long_id


async def test_order_id_longer_than_255_characters_is_422_without_echoing_it(
    client, api_headers
):
    long_id = "ord_" + "Q" * 300

    response = await client.get(f"{ORDERS}/{long_id}", headers=api_headers)

    assert response.status_code == 422
    assert response.json() == {
        "error": "ValidationError",
        "detail": "The request is not valid; see errors.",
        "errors": [
            {
                "loc": ["path", "order_id"],
                "msg": "String should have at most 255 characters",
                "type": "string_too_long",
            }
        ],
    }
    assert "QQQQ" not in response.text
