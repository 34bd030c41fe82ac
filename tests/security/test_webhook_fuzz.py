"""Hypothesis against the webhook route: whatever bytes, headers and
signatures arrive, the answer is never a 5xx, and nothing is stored unless the
delivery is correctly signed."""

import asyncio
import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from app.auth import service as auth_service
from app.core.db import Database, create_engine
from app.main import create_app
from tests.conftest import make_settings
from tests.signing import TEST_SECRET

HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120
)
PREFIXES = st.sampled_from(["svix", "webhook"])


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{message_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, str], bool]:
    """A body, headers, and whether the delivery is authentic."""
    body = draw(
        st.one_of(st.binary(max_size=600), st.text(max_size=300).map(str.encode))
    )
    prefix = draw(PREFIXES)
    now = str(int(datetime.now(UTC).timestamp()))
    message_id = draw(
        st.one_of(st.from_regex(r"\Amsg_[A-Za-z0-9]{1,30}\Z"), HEADER_TEXT)
    )
    timestamp = draw(st.one_of(st.just(now), HEADER_TEXT))
    kind = draw(
        st.sampled_from(["authentic", "other-secret", "other-body", "garbage", "none"])
    )
    secret = TEST_SECRET if kind != "other-secret" else "whsec_" + "A" * 32
    signed_body = body if kind != "other-body" else body + b" "
    signature = {
        "garbage": draw(HEADER_TEXT),
        "none": "",
    }.get(kind, "v1," + sign(secret, message_id, timestamp, signed_body))
    headers = {
        f"{prefix}-id": message_id,
        f"{prefix}-timestamp": timestamp,
        f"{prefix}-signature": signature,
    }
    headers = {
        name: value
        for name, value in headers.items()
        if draw(st.booleans()) or kind == "authentic"
    }
    authentic = (
        kind == "authentic"
        and timestamp == now
        and message_id.strip() == message_id
        and 0 < len(message_id) <= 255
        and " " not in message_id
        and _utf8(body)
    )
    return body, headers, authentic


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _admin_key(database_url: str) -> str:
    database = Database(create_engine(make_settings(database_url)))
    try:
        async with database.transaction() as session:
            issued = await auth_service.create_api_key(
                session, name="fuzz-admin", is_admin=True
            )
    finally:
        await database.dispose()
    return issued.key


class Served:
    """The app on an event loop in a background thread, called synchronously
    (hypothesis drives synchronous tests)."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal = portal
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = partial(self.client.request, method, url, **kwargs)
        return self.portal.call(call)


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[Served, dict[str, str]]]:
    key = asyncio.run(_admin_key(database_url))
    app = create_app(make_settings(database_url))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(app.router.lifespan_context(app)),
    ):
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        try:
            yield Served(portal, client), {"Authorization": f"Bearer {key}"}
        finally:
            portal.call(client.aclose)


def newest_event_id(served: Served, admin: dict[str, str]) -> int | None:
    response = served.request(
        "GET", "/api/v1/webhook-events", params={"limit": 1}, headers=admin
    )
    assert response.status_code == 200
    data = response.json()["data"]
    return data[0]["id"] if data else None


@given(delivery=deliveries())
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_delivery_gets_no_5xx_and_only_authentic_ones_are_stored(served, delivery):
    app, admin = served
    body, headers, authentic = delivery
    before = newest_event_id(app, admin)

    response = app.request("POST", "/webhooks/trackstar", content=body, headers=headers)

    assert response.status_code < 500
    event("authentic" if authentic else "forged or malformed")
    after = newest_event_id(app, admin)
    if authentic:
        assert response.status_code == 200, response.text
        assert after is not None
        assert after != before
    else:
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "InvalidSignature"
        assert after == before
