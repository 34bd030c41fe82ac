"""The warehouses API: the list, its connection filter and cursor pages."""

from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.warehouses.models import Warehouse
from tests.fixtures.builders import (
    CONNECTION_ID,
    OTHER_CONNECTION_ID,
    envelope,
    to_json,
    warehouse,
)
from tests.fixtures.storage import put_warehouses
from tests.signing import signed_headers

pytestmark = pytest.mark.asyncio

WAREHOUSES = "/api/v1/warehouses"


async def list_keys(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[tuple[str, str]]:
    response = await client.get(WAREHOUSES, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [(item["connection_id"], item["id"]) for item in response.json()["data"]]


async def test_request_without_a_key_is_401(client, database):
    await put_warehouses(database, warehouse("wh_1"))

    response = await client.get(WAREHOUSES)

    assert response.status_code == 401
    assert response.json() == {
        "error": "InvalidApiKey",
        "detail": "Send the API key as `Authorization: Bearer <key>`.",
    }


async def test_list_returns_every_field_of_each_warehouse(
    client, database, api_headers
):
    await put_warehouses(
        database,
        warehouse(
            "wh_east",
            name="East Annex",
            code="EA",
            address={"address1": "5 Sample Street", "city": "Exampleville"},
            created_date="2026-03-10T14:22:05Z",
            updated_date="2026-03-10T16:22:05+02:00",
            trackstar_created_date="2026-03-10T15:00:00Z",
            trackstar_updated_date=None,
        ),
    )
    async with database.transaction() as session:
        stored = await session.scalar(select(Warehouse))
    assert stored is not None

    response = await client.get(WAREHOUSES, headers=api_headers)

    assert response.status_code == 200
    body = response.json()
    (item,) = body["data"]
    assert datetime.fromisoformat(item["changed_at"]) == stored.changed_at
    assert body == {
        "data": [
            {
                "id": "wh_east",
                "connection_id": CONNECTION_ID,
                "name": "East Annex",
                "code": "EA",
                "address": {
                    "address1": "5 Sample Street",
                    "address2": None,
                    "address3": None,
                    "city": "Exampleville",
                    "state": None,
                    "postal_code": None,
                    "country": None,
                },
                "created_date": "2026-03-10T14:22:05Z",
                "updated_date": "2026-03-10T14:22:05Z",
                "trackstar_created_date": "2026-03-10T15:00:00Z",
                "trackstar_updated_date": None,
                "changed_at": item["changed_at"],
            }
        ],
        "next_cursor": None,
    }


async def test_warehouse_received_by_webhook_is_listed(client, api_headers):
    body = to_json(envelope("cart-warehouse.created", warehouse("wh_hook")))
    delivered = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )
    assert delivered.json()["status"] == "processed"

    assert await list_keys(client, api_headers) == [(CONNECTION_ID, "wh_hook")]


async def test_connection_id_filter_returns_only_that_connections_warehouses(
    client, database, api_headers
):
    await put_warehouses(database, warehouse("wh_1"), connection_id=CONNECTION_ID)
    await put_warehouses(
        database,
        warehouse("wh_1"),
        warehouse("wh_2"),
        connection_id=OTHER_CONNECTION_ID,
    )

    assert await list_keys(client, api_headers, connection_id=OTHER_CONNECTION_ID) == [
        (OTHER_CONNECTION_ID, "wh_1"),
        (OTHER_CONNECTION_ID, "wh_2"),
    ]
    assert await list_keys(client, api_headers, connection_id=CONNECTION_ID) == [
        (CONNECTION_ID, "wh_1")
    ]
    assert await list_keys(client, api_headers, connection_id="conn_unknown") == []


async def test_nul_character_in_connection_id_is_refused_with_422(
    client, database, api_headers
):
    await put_warehouses(database, warehouse("wh_1"))

    response = await client.get(
        WAREHOUSES, params={"connection_id": "conn\x00"}, headers=api_headers
    )

    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"


async def test_limit_one_walks_every_warehouse_exactly_once(
    client, database, api_headers
):
    await put_warehouses(database, warehouse("wh_b"), warehouse("wh_a"))
    await put_warehouses(database, warehouse("wh_a"), connection_id=OTHER_CONNECTION_ID)
    await put_warehouses(database, warehouse("wh_0"))
    pages: list[dict[str, Any]] = []
    cursor: str | None = None

    while len(pages) < 10:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        response = await client.get(WAREHOUSES, params=params, headers=api_headers)
        assert response.status_code == 200
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            break

    seen = [(item["connection_id"], item["id"]) for p in pages for item in p["data"]]
    assert seen == [
        (CONNECTION_ID, "wh_a"),
        (CONNECTION_ID, "wh_b"),
        (OTHER_CONNECTION_ID, "wh_a"),
        (CONNECTION_ID, "wh_0"),
    ]
    assert [len(p["data"]) for p in pages] == [1, 1, 1, 1]
    assert pages[-1]["next_cursor"] is None


async def test_page_limit_splits_the_list_and_the_last_page_has_null_cursor(
    client, database, api_headers
):
    await put_warehouses(database, *(warehouse(f"wh_{i}") for i in range(5)))

    first = (
        await client.get(WAREHOUSES, params={"limit": 3}, headers=api_headers)
    ).json()
    second = (
        await client.get(
            WAREHOUSES,
            params={"limit": 3, "cursor": first["next_cursor"]},
            headers=api_headers,
        )
    ).json()

    assert [item["id"] for item in first["data"]] == ["wh_0", "wh_1", "wh_2"]
    assert first["next_cursor"] is not None
    assert [item["id"] for item in second["data"]] == ["wh_3", "wh_4"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("limit", [0, 501])
async def test_limit_outside_1_to_500_is_422(client, api_headers, limit):
    response = await client.get(
        WAREHOUSES, params={"limit": limit}, headers=api_headers
    )

    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["errors"]] == [["query", "limit"]]


async def test_invalid_cursor_is_400(client, database, api_headers):
    await put_warehouses(database, warehouse("wh_1"))

    response = await client.get(
        WAREHOUSES, params={"cursor": "bm90IGEgY3Vyc29y"}, headers=api_headers
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "InvalidCursor",
        "detail": "The cursor is not valid.",
    }
