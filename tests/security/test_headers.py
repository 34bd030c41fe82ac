"""Security headers on every response, and CORS closed unless configured."""

import httpx
import pytest

from app.main import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio

ORIGIN = "https://wms.example.com"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/api/v1/orders"),
        ("GET", "/api/v1/nowhere"),
        ("POST", "/webhooks/trackstar"),
    ],
)
async def test_every_response_carries_the_security_headers(client, method, path):
    response = await client.request(method, path)

    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    assert response.headers["x-request-id"]


async def test_api_docs_may_load_their_scripts(client):
    response = await client.get("/docs")

    assert response.status_code == 200
    assert "https://cdn.jsdelivr.net" in response.headers["content-security-policy"]


async def test_cors_is_closed_by_default(client, api_headers):
    simple = await client.get(
        "/api/v1/orders", headers=api_headers | {"Origin": ORIGIN}
    )
    preflight = await client.options(
        "/api/v1/orders",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )

    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405


async def test_configured_origins_alone_are_allowed(database_url):
    application = create_app(make_settings(database_url, cors_allow_origins=ORIGIN))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            allowed = await c.options(
                "/api/v1/orders",
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
            )
            other = await c.options(
                "/api/v1/orders",
                headers={
                    "Origin": "https://evil.example.com",
                    "Access-Control-Request-Method": "GET",
                },
            )

    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-credentials" not in allowed.headers
