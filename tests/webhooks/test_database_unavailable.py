"""With the database down, deliveries get 503 so that Svix retries them.

Postgres only: the database URL points at a port where nothing listens.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from app.core.migrations import head_revision
from app.main import create_app
from tests.conftest import make_settings, terminate_connections
from tests.signing import sample_bytes, signed_headers

pytestmark = pytest.mark.asyncio

UNREACHABLE_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/x"
UNAVAILABLE = {
    "error": "DatabaseUnavailable",
    "detail": "The database is unavailable; retry later.",
}


@pytest_asyncio.fixture
async def unreachable_client() -> AsyncIterator[httpx.AsyncClient]:
    # Every secret is configured, so start-up itself needs no database.
    settings = make_settings(UNREACHABLE_DATABASE_URL, secret_key="k" * 40)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as client:
            yield client


def assert_retry_after(response: httpx.Response) -> None:
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit(), response.headers
    assert 1 <= int(retry_after) <= 60


async def test_signed_delivery_gets_503_with_retry_after(unreachable_client):
    body = sample_bytes("cart-order.created")

    response = await unreachable_client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert_retry_after(response)


async def test_badly_signed_delivery_is_still_401(unreachable_client):
    body = sample_bytes("cart-order.created")
    headers = {**signed_headers(body), "svix-signature": "v1,AAAA"}

    response = await unreachable_client.post(
        "/webhooks/trackstar", content=body, headers=headers
    )

    assert response.status_code == 401


async def test_api_request_gets_503_with_retry_after(unreachable_client):
    response = await unreachable_client.get(
        "/api/v1/orders", headers={"Authorization": "Bearer tsf_abc_def"}
    )

    assert response.status_code == 503
    assert response.json() == UNAVAILABLE
    assert_retry_after(response)


async def test_readyz_answers_503(unreachable_client):
    response = await unreachable_client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "migration": None,
        "expected_migration": head_revision(),
    }


async def test_healthz_answers_200(unreachable_client):
    response = await unreachable_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_pool_recovers_after_the_server_drops_its_connections(
    client, database_url
):
    """Pooled connections are not pinged before use: after a database restart
    (here: the server terminates every connection of the app), at most one
    request fails, with a 503, and the next is served on fresh connections."""
    body = sample_bytes("cart-order.created")
    response = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )
    assert response.status_code == 200

    await terminate_connections(database_url)
    responses = [
        await client.post(
            "/webhooks/trackstar",
            content=body,
            headers=signed_headers(body, message_id=f"msg_after_restart_{n}"),
        )
        for n in (1, 2)
    ]

    assert responses[0].status_code in {200, 503}
    assert responses[1].status_code == 200
    assert responses[1].json()["status"] == "processed"
