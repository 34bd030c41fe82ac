"""The products API: filters, one product, and what parents and variants carry."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.core.db import Database
from app.products.models import Product
from tests.fixtures.builders import (
    CONNECTION_ID,
    OTHER_CONNECTION_ID,
    parent_product,
    product,
)
from tests.fixtures.storage import put_products

pytestmark = pytest.mark.asyncio

PRODUCTS = "/api/v1/products"


async def list_keys(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[tuple[str, str]]:
    response = await client.get(PRODUCTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [(item["connection_id"], item["id"]) for item in response.json()["data"]]


async def stored_product(database: Database, product_id: str) -> Product:
    async with database.transaction() as session:
        row = await session.scalar(select(Product).where(Product.id == product_id))
    assert row is not None
    return row


async def test_request_without_a_key_is_401(client, database):
    await put_products(database, product("prod_1"))

    response = await client.get(PRODUCTS)

    assert response.status_code == 401
    assert response.json()["error"] == "InvalidApiKey"


async def test_list_returns_parents_and_variants_in_change_order(
    client, database, api_headers
):
    await put_products(database, product("prod_b"), parent_product("prod_a"))
    await put_products(database, product("prod_0"))

    assert await list_keys(client, api_headers) == [
        (CONNECTION_ID, "prod_a"),
        (CONNECTION_ID, "prod_b"),
        (CONNECTION_ID, "prod_0"),
    ]


async def test_sku_filter_returns_only_products_with_that_sku(
    client, database, api_headers
):
    await put_products(
        database,
        product("prod_m", sku="TEE-BLU-M"),
        product("prod_l", sku="TEE-BLU-L"),
        parent_product("prod_parent"),
    )
    await put_products(
        database, product("prod_m", sku="TEE-BLU-M"), connection_id=OTHER_CONNECTION_ID
    )

    assert await list_keys(client, api_headers, sku="TEE-BLU-M") == [
        (CONNECTION_ID, "prod_m"),
        (OTHER_CONNECTION_ID, "prod_m"),
    ]
    assert await list_keys(client, api_headers, sku="tee-blu-m") == []


async def test_connection_id_filter_returns_only_that_connections_products(
    client, database, api_headers
):
    await put_products(database, product("prod_1"), connection_id=CONNECTION_ID)
    await put_products(
        database,
        product("prod_1"),
        product("prod_2"),
        connection_id=OTHER_CONNECTION_ID,
    )

    assert await list_keys(client, api_headers, connection_id=OTHER_CONNECTION_ID) == [
        (OTHER_CONNECTION_ID, "prod_1"),
        (OTHER_CONNECTION_ID, "prod_2"),
    ]


async def test_variants_only_leaves_out_parent_products(client, database, api_headers):
    await put_products(
        database,
        parent_product("prod_parent"),
        product("prod_variant", parent_product_id="prod_parent"),
        # A product that names no parent is a parent itself.
        product("prod_standalone", parent_product_id=None),
    )

    all_products = await list_keys(client, api_headers)
    variants = await list_keys(client, api_headers, variants_only="true")

    assert [key[1] for key in all_products] == [
        "prod_parent",
        "prod_standalone",
        "prod_variant",
    ]
    assert variants == [(CONNECTION_ID, "prod_variant")]


async def test_filters_combine(client, database, api_headers):
    await put_products(
        database,
        product("prod_match", sku="MUG"),
        parent_product("prod_parent_mug", sku="MUG"),
        product("prod_other_sku", sku="TEE"),
    )
    await put_products(
        database, product("prod_match", sku="MUG"), connection_id=OTHER_CONNECTION_ID
    )

    keys = await list_keys(
        client,
        api_headers,
        sku="MUG",
        connection_id=CONNECTION_ID,
        variants_only="true",
    )

    assert keys == [(CONNECTION_ID, "prod_match")]


async def test_limit_one_walks_every_product_exactly_once(
    client, database, api_headers
):
    await put_products(database, product("prod_2"), parent_product("prod_1"))
    await put_products(database, product("prod_3"), connection_id=OTHER_CONNECTION_ID)
    seen: list[str] = []
    cursor: str | None = None

    for _ in range(10):
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(PRODUCTS, params=params, headers=api_headers)).json()
        seen.extend(item["id"] for item in page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == ["prod_1", "prod_2", "prod_3"]
    assert cursor is None


async def test_get_product_returns_every_field(client, database, api_headers):
    await put_products(
        database,
        product(
            "prod_full",
            name="Sample Tee - Blue / L",
            sku="TEE-BLU-L",
            parent_product_id="prod_parent",
            is_kit=True,
            active=False,
            price=Decimal("19.990"),
            unit_cost=Decimal("6.5"),
            inventory=13,
            inventory_by_warehouse_id={"wh_1": 7, "wh_2": 6},
            tags=["summer", "color:blue"],
            categories=["Apparel"],
            gtin="00000000000024",
            image_url="https://cdn.example.com/tee.jpg",
            measurements={"unit": "in", "weight_unit": "lb"},
            external_system_url="https://shop.example.com/products/1",
            additional_fields={"barcode": None, "weight": Decimal("0.45")},
            trackstar_tags=["synced"],
            created_date="2026-03-12T07:30:00Z",
            updated_date="2026-03-12T09:30:00+02:00",
            trackstar_created_date="2026-03-12T08:00:09Z",
            trackstar_updated_date="2026-03-12T08:00:09Z",
        ),
    )
    stored = await stored_product(database, "prod_full")

    response = await client.get(f"{PRODUCTS}/prod_full", headers=api_headers)

    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": "prod_full",
        "connection_id": CONNECTION_ID,
        "name": "Sample Tee - Blue / L",
        "sku": "TEE-BLU-L",
        "parent_product_id": "prod_parent",
        "is_variant": True,
        "is_kit": True,
        "active": False,
        "price": "19.990",
        "unit_cost": "6.5",
        "inventory": 13,
        "inventory_by_warehouse_id": {"wh_1": 7, "wh_2": 6},
        "tags": ["summer", "color:blue"],
        "categories": ["Apparel"],
        "gtin": "00000000000024",
        "image_url": "https://cdn.example.com/tee.jpg",
        "measurements": {
            "length": None,
            "width": None,
            "height": None,
            "unit": "in",
            "weight": None,
            "weight_unit": "lb",
        },
        "external_system_url": "https://shop.example.com/products/1",
        "additional_fields": {"barcode": None, "weight": 0.45},
        "trackstar_tags": ["synced"],
        "created_date": "2026-03-12T07:30:00Z",
        "updated_date": "2026-03-12T07:30:00Z",
        "trackstar_created_date": "2026-03-12T08:00:09Z",
        "trackstar_updated_date": "2026-03-12T08:00:09Z",
        "changed_at": body["changed_at"],
    }
    assert datetime.fromisoformat(body["changed_at"]) == stored.changed_at
    listed = await client.get(PRODUCTS, headers=api_headers)
    assert listed.json()["data"] == [body]


async def test_unknown_product_id_is_404(client, database, api_headers):
    await put_products(database, product("prod_1"))

    response = await client.get(f"{PRODUCTS}/prod_missing", headers=api_headers)

    assert response.status_code == 404
    assert response.json() == {
        "error": "ProductNotFound",
        "detail": "No product with id 'prod_missing'.",
    }


async def test_product_id_longer_than_255_characters_is_422_without_echoing_it(
    client, api_headers
):
    response = await client.get(f"{PRODUCTS}/prod_{'Q' * 300}", headers=api_headers)

    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert [error["loc"] for error in body["errors"]] == [["path", "product_id"]]
    assert "QQQQ" not in response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (PRODUCTS, {"sku": "MUG\x00"}),
        (PRODUCTS, {"connection_id": "conn\x00"}),
        (f"{PRODUCTS}/prod%00_1", {}),
    ],
    ids=["sku", "connection_id", "product_id"],
)
async def test_nul_character_in_an_id_is_refused_with_422(
    client, database, api_headers, path, params
):
    await put_products(database, product("prod_1"))

    response = await client.get(path, params=params, headers=api_headers)

    assert response.status_code == 422
    assert response.json()["error"] == "ValidationError"


async def test_parent_has_null_price_and_inventory_while_its_variant_keeps_them(
    client, database, api_headers
):
    await put_products(
        database,
        parent_product(
            "prod_parent",
            price=Decimal("19.99"),
            unit_cost=Decimal("6.50"),
            inventory=25,
            inventory_by_warehouse_id={"wh_1": 15, "wh_2": 10},
        ),
        product(
            "prod_variant",
            parent_product_id="prod_parent",
            price=Decimal("21.00"),
            unit_cost=Decimal("7.25"),
            inventory=10,
            inventory_by_warehouse_id={"wh_1": 4, "wh_2": 6},
        ),
    )

    parent = (await client.get(f"{PRODUCTS}/prod_parent", headers=api_headers)).json()
    variant = (await client.get(f"{PRODUCTS}/prod_variant", headers=api_headers)).json()

    def stock(item: dict[str, Any]) -> tuple[Any, ...]:
        return (
            item["is_variant"],
            item["price"],
            item["unit_cost"],
            item["inventory"],
            item["inventory_by_warehouse_id"],
        )

    assert stock(parent) == (False, None, None, None, {})
    assert stock(variant) == (True, "21.00", "7.25", 10, {"wh_1": 4, "wh_2": 6})
    stored_parent = await stored_product(database, "prod_parent")
    assert (stored_parent.price, stored_parent.inventory) == (None, None)
    assert stored_parent.record["inventory"] == 25


async def test_null_inventory_is_returned_as_null_not_zero(
    client, database, api_headers
):
    await put_products(
        database,
        product("prod_unknown", inventory=None, inventory_by_warehouse_id=None),
        product("prod_empty", inventory=0, inventory_by_warehouse_id={"wh_1": 0}),
    )

    unknown = (await client.get(f"{PRODUCTS}/prod_unknown", headers=api_headers)).json()
    empty = (await client.get(f"{PRODUCTS}/prod_empty", headers=api_headers)).json()

    assert unknown["inventory"] is None
    assert unknown["inventory_by_warehouse_id"] == {}
    assert empty["inventory"] == 0
    assert empty["inventory_by_warehouse_id"] == {"wh_1": 0}
    assert (await stored_product(database, "prod_unknown")).inventory is None
