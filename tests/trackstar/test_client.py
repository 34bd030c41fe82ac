"""The Trackstar client on its own, no database: reading wait headers, sorting
failures into retryable and final, spacing calls per token, and what a write
sends and returns. Trackstar is the fake at the HTTP boundary, or a bare
`httpx.MockTransport` where a response needs headers the fake would override.
"""

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.connections.service import ConnectionCredentials
from app.core.models import utcnow
from app.trackstar.client import TrackstarClient
from app.trackstar.errors import (
    MAX_ERROR_BODY_CHARS,
    TrackstarError,
    TrackstarFinal,
    TrackstarInProgress,
    TrackstarRateLimited,
    TrackstarServerError,
    TrackstarUnauthorized,
    TrackstarUnreachable,
    error_from_exception,
    error_from_response,
    retry_after_seconds,
)
from app.trackstar.ratelimit import CallKind, RateLimiter, ThrottledTooLong
from tests.conftest import ACCESS_TOKEN, CONNECTION_ID, TEST_API_KEY
from tests.fixtures.fake_trackstar import (
    FakeTrackstar,
    Outcome,
    connect_error,
    respond,
    timeout_after_accept,
    timeout_before_accept,
)
from tests.fixtures.forwarding import ORDER_ID, sample_data

API_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "api"
BASE_URL = "https://trackstar.test"
SHIPMENTS_PATH = f"/cart/orders/{ORDER_ID}/shipments"
CREDENTIALS = ConnectionCredentials(
    connection_id=CONNECTION_ID,
    access_token=SecretStr(ACCESS_TOKEN),
    integration_name="shopify",
)
# Deliberately not compact: the bytes must go out exactly as given.
BODY = b'{"tracking_number": "1ZTEST0001",  "carrier_name":"UPS"}'


def api_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((API_FIXTURES / f"{name}.json").read_text())
    return loaded


def response(
    status: int,
    json_body: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if json_body is not None:
        return httpx.Response(status, json=json_body, headers=headers)
    return httpx.Response(status, content=content or b"", headers=headers)


def in_seconds(seconds: float) -> str:
    return str(int(time.time() + seconds))


class FakeClock:
    """A monotonic clock that only moves when the limiter sleeps."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def limiter(clock: FakeClock, *, read_rate: float = 10, write_rate: float = 50):
    return RateLimiter(
        read_rate=read_rate, write_rate=write_rate, clock=clock, sleep=clock.sleep
    )


def make_client(
    transport: httpx.AsyncBaseTransport,
    clock: FakeClock | None = None,
    *,
    api_key: str | None = TEST_API_KEY,
) -> TrackstarClient:
    return TrackstarClient(
        base_url=BASE_URL,
        api_key=SecretStr(api_key) if api_key is not None else None,
        timeout=httpx.Timeout(5.0),
        max_connections=4,
        limiter=limiter(clock or FakeClock()),
        transport=transport,
    )


@pytest.fixture
def order_fake(fake: FakeTrackstar) -> FakeTrackstar:
    fake.add_order(CONNECTION_ID, sample_data("cart-order.created"))
    return fake


async def write(client: TrackstarClient, body: bytes = BODY, key: str = "shipment:1:k"):
    return await client.write(
        CREDENTIALS,
        method="POST",
        path=SHIPMENTS_PATH,
        body=body,
        idempotency_key=key,
    )


# --- retry_after_seconds --------------------------------------------------------


def wait_for(headers: dict[str, str]) -> float | None:
    return retry_after_seconds(httpx.Headers(headers))


@pytest.mark.parametrize(
    ("value", "expected"), [("30", 30.0), ("0", 0.0), ("1.5", 1.5)]
)
def test_retry_after_in_seconds(value, expected):
    assert wait_for({"retry-after": value}) == expected


def test_retry_after_as_an_http_date():
    when = utcnow() + timedelta(seconds=120)

    wait = wait_for({"retry-after": format_datetime(when, usegmt=True)})

    assert wait is not None
    assert 117 <= wait <= 120


def test_retry_after_as_an_http_date_in_the_past_is_zero():
    when = utcnow() - timedelta(minutes=5)

    assert wait_for({"retry-after": format_datetime(when, usegmt=True)}) == 0.0


def test_earlier_spelling_x_rate_limit_retry_after():
    assert wait_for({"x-rate-limit-retry-after": "12"}) == 12.0


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "2", "x-rate-limit-retry-after": "30"},
        {"retry-after": "30", "x-rate-limit-retry-after": "2"},
    ],
    ids=["second-larger", "first-larger"],
)
def test_the_larger_of_both_spellings_wins(headers):
    assert wait_for(headers) == 30.0


def test_http_date_and_earlier_spelling_take_the_larger():
    when = format_datetime(utcnow() + timedelta(seconds=60), usegmt=True)

    wait = wait_for({"retry-after": when, "x-rate-limit-retry-after": "5"})

    assert wait is not None
    assert 57 <= wait <= 60


@pytest.mark.parametrize("name", ["x-ratelimit-reset", "x-rate-limit-reset"])
def test_reset_epoch_gives_the_time_until_reset(name):
    wait = wait_for({name: in_seconds(10)})

    assert wait is not None
    assert 8 <= wait <= 10


@pytest.mark.parametrize("name", ["x-ratelimit-reset", "x-rate-limit-reset"])
def test_reset_in_the_past_is_zero(name):
    assert wait_for({name: in_seconds(-30)}) == 0.0


def test_retry_after_is_preferred_to_reset():
    assert wait_for({"retry-after": "2", "x-ratelimit-reset": in_seconds(30)}) == 2.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": ""},
        {"retry-after": "-5"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after": "1e400"},
        {"x-rate-limit-retry-after": "abc"},
        {"x-rate-limit-retry-after": "-Infinity"},
        {"x-ratelimit-reset": "never"},
        {"x-ratelimit-reset": "Infinity"},
        {"x-rate-limit-reset": "NaN"},
        {"retry-after": "Wed, 99 Foo 2026 99:00:00 GMT"},
    ],
    ids=[
        "none",
        "word",
        "empty",
        "negative",
        "nan",
        "inf",
        "overflow",
        "old-word",
        "old-minus-inf",
        "reset-word",
        "reset-inf",
        "old-reset-nan",
        "bad-date",
    ],
)
def test_unparseable_values_give_none(headers):
    assert wait_for(headers) is None


@pytest.mark.parametrize(
    "headers",
    [
        {"retry-after": "99999999999999"},
        {"x-rate-limit-retry-after": "1e20"},
        {"x-ratelimit-reset": "99999999999999"},
        {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
    ],
    ids=["seconds", "old-spelling", "reset", "date"],
)
def test_absurdly_long_waits_are_capped_at_a_day(headers):
    """A wait no timedelta can hold would crash the retry decision and block
    the token's limiter for good; no rate limit lasts longer than a day."""
    wait = wait_for(headers)

    assert wait == 24 * 3600.0
    assert timedelta(seconds=wait) == timedelta(days=1)


# --- error_from_response --------------------------------------------------------


@pytest.mark.parametrize("status", [400, 403, 404, 422, 501])
def test_client_errors_and_501_are_final(status):
    error = error_from_response(
        response(status, {"error": "No", "origin": "trackstar"})
    )

    assert type(error) is TrackstarFinal
    assert error.retryable is False
    assert error.kind == "final"
    assert error.status_code == status
    assert error.outcome_unknown is False


def test_401_is_unauthorized_and_final():
    error = error_from_response(response(401, {"error": "Invalid access token"}))

    assert isinstance(error, TrackstarUnauthorized)
    assert isinstance(error, TrackstarFinal)
    assert error.retryable is False
    assert error.kind == "unauthorized"
    assert error.message == "Invalid access token"


def test_409_is_still_in_progress_and_retryable():
    error = error_from_response(response(409, {"error": "In progress"}))

    assert type(error) is TrackstarInProgress
    assert error.retryable is True
    assert error.kind == "in_progress"


def test_429_is_rate_limited_with_the_wait_from_its_headers():
    error = error_from_response(
        response(429, api_fixture("error-429"), headers={"retry-after": "7"})
    )

    assert type(error) is TrackstarRateLimited
    assert error.retryable is True
    assert error.retry_after == 7.0
    assert error.message == "Rate limit exceeded"
    assert error.origin == "trackstar"


def test_429_without_wait_headers_has_no_retry_after():
    error = error_from_response(response(429, api_fixture("error-429")))

    assert isinstance(error, TrackstarRateLimited)
    assert error.retry_after is None


def test_500_is_a_server_error_whose_outcome_is_unknown():
    error = error_from_response(response(500, {"error": "Upstream hiccup"}))

    assert type(error) is TrackstarServerError
    assert error.retryable is True
    assert error.outcome_unknown is True
    assert error.kind == "server_error"


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_errors_are_unreachable_and_retryable(status):
    error = error_from_response(response(status, {"error": "Gateway"}))

    assert type(error) is TrackstarUnreachable
    assert error.retryable is True
    assert error.kind == "unreachable"


def test_error_keeps_message_origin_request_id_and_body():
    body = api_fixture("error-422")
    answer = response(422, body, headers={"X-Request-Id": "req_abc123"})

    error = error_from_response(answer)

    assert error.message == "Request body failed validation"
    assert error.origin == "trackstar"
    assert error.request_id == "req_abc123"
    assert error.status_code == 422
    assert error.body is not None
    assert json.loads(error.body) == body


def test_integration_origin_is_kept():
    body = {"error": "Tracking number rejected by Shopify", "origin": "integration"}

    error = error_from_response(response(400, body))

    assert (error.message, error.origin) == (body["error"], "integration")


def test_error_without_origin_like_the_published_501():
    body = api_fixture("error-501")
    assert "origin" not in body

    error = error_from_response(response(501, body, headers={"x-request-id": "r1"}))

    assert type(error) is TrackstarFinal
    assert (
        error.message == "Endpoint adjust_inventory is not implemented for Example Cart"
    )
    assert error.origin is None
    assert error.request_id == "r1"


@pytest.mark.parametrize(
    ("status", "content", "expected_type", "message"),
    [
        (502, b"<html><h1>502 Bad Gateway</h1></html>", TrackstarUnreachable, None),
        (400, b"bad request, plain text", TrackstarFinal, None),
        (503, b"", TrackstarUnreachable, "Service Unavailable"),
        (500, b"\xff\xfe not utf-8", TrackstarServerError, None),
    ],
    ids=["html", "text", "empty", "binary"],
)
def test_non_json_error_body_does_not_crash(status, content, expected_type, message):
    error = error_from_response(response(status, content=content))

    assert type(error) is expected_type
    assert error.origin is None
    assert error.message == (message or error.body)
    assert error.message


@pytest.mark.parametrize(
    "body", [["not", "an", "object"], {"detail": "no error key"}, {"error": ""}]
)
def test_json_error_without_a_message_falls_back(body):
    error = error_from_response(response(422, body))

    assert type(error) is TrackstarFinal
    assert error.message
    assert error.origin is None


def test_non_string_origin_is_ignored():
    error = error_from_response(response(400, {"error": "No", "origin": {"x": 1}}))

    assert error.origin is None


def test_long_error_body_is_cut():
    error = error_from_response(
        response(500, content=b"x" * (MAX_ERROR_BODY_CHARS * 3))
    )

    assert error.body is not None
    assert len(error.body) == MAX_ERROR_BODY_CHARS


# --- error_from_exception -------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "outcome_unknown"),
    [
        (httpx.ConnectError, False),
        (httpx.ConnectTimeout, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteTimeout, True),
    ],
)
def test_transport_failures_are_unreachable_knowing_whether_anything_was_sent(
    exception, outcome_unknown
):
    request = httpx.Request("POST", f"{BASE_URL}{SHIPMENTS_PATH}")

    error = error_from_exception(exception("boom", request=request))

    assert type(error) is TrackstarUnreachable
    assert error.retryable is True
    assert error.outcome_unknown is outcome_unknown
    assert error.status_code is None
    assert error.message == f"{exception.__name__} talking to Trackstar"


# --- RateLimiter ----------------------------------------------------------------


async def acquire_times(
    rate_limiter: RateLimiter, clock: FakeClock, count: int, key: str = "conn_a"
) -> list[float]:
    times = []
    for _ in range(count):
        await rate_limiter.acquire(key, CallKind.WRITE)
        times.append(clock())
    return times


@pytest.mark.asyncio
# The limiter runs on time.monotonic(): seconds since boot (100 days: 8.64e6).
@pytest.mark.parametrize("start", [1000.0, 1000.5, 1000.013, 8_640_000.25])
async def test_writes_are_spaced_20_ms_apart_so_no_second_holds_more_than_50(start):
    clock = FakeClock(start)

    times = await acquire_times(limiter(clock, write_rate=50), clock, 200)

    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps == pytest.approx([0.02] * 199)
    assert times[0] == start
    # Any one-second window, however it is aligned with ours, holds at most 50.
    # Counted in whole microseconds: float sums of 0.02 drift by ~1e-12 s,
    # far below what any clock (ours or Trackstar's) resolves.
    micros = [round(t * 1_000_000) for t in times]
    for offset in range(0, 1_000_000, 2_500):
        windows = Counter((us + offset) // 1_000_000 for us in micros)
        assert max(windows.values()) <= 50, (offset, windows)


@pytest.mark.asyncio
async def test_reads_are_spaced_by_the_read_rate():
    clock = FakeClock()
    rate_limiter = limiter(clock, read_rate=10)

    for _ in range(3):
        await rate_limiter.acquire("conn_a", CallKind.READ)

    assert clock.sleeps == pytest.approx([0.1, 0.1])


@pytest.mark.asyncio
async def test_different_keys_do_not_wait_for_each_other():
    clock = FakeClock()
    rate_limiter = limiter(clock)
    await acquire_times(rate_limiter, clock, 10, key="conn_a")
    slept = list(clock.sleeps)

    await rate_limiter.acquire("conn_b", CallKind.WRITE)

    assert clock.sleeps == slept
    assert rate_limiter.delay("conn_b", CallKind.WRITE) == pytest.approx(0.02)
    assert rate_limiter.keys() == ["conn_a", "conn_b"]


@pytest.mark.asyncio
async def test_reads_and_writes_have_separate_budgets():
    clock = FakeClock()
    rate_limiter = limiter(clock)
    await rate_limiter.acquire("conn_a", CallKind.WRITE)

    await rate_limiter.acquire("conn_a", CallKind.READ)

    assert clock.sleeps == []


@pytest.mark.asyncio
async def test_pause_pushes_the_next_slot():
    clock = FakeClock()
    rate_limiter = limiter(clock)

    rate_limiter.pause("conn_a", CallKind.WRITE, 5.0)

    assert rate_limiter.delay("conn_a", CallKind.WRITE) == 5.0
    assert rate_limiter.delay("conn_a", CallKind.READ) == 0.0
    await rate_limiter.acquire("conn_a", CallKind.WRITE)
    assert clock.sleeps == [5.0]


@pytest.mark.asyncio
async def test_a_shorter_pause_does_not_bring_the_next_slot_forward():
    clock = FakeClock()
    rate_limiter = limiter(clock)
    rate_limiter.pause("conn_a", CallKind.WRITE, 5.0)

    rate_limiter.pause("conn_a", CallKind.WRITE, 1.0)

    assert rate_limiter.delay("conn_a", CallKind.WRITE) == 5.0


@pytest.mark.asyncio
async def test_max_wait_raises_throttled_too_long_without_taking_the_slot():
    clock = FakeClock()
    rate_limiter = limiter(clock)
    rate_limiter.pause("conn_a", CallKind.WRITE, 10.0)

    with pytest.raises(ThrottledTooLong) as raised:
        await rate_limiter.acquire("conn_a", CallKind.WRITE, max_wait=5.0)

    assert raised.value.wait == 10.0
    assert clock.sleeps == []
    assert rate_limiter.delay("conn_a", CallKind.WRITE) == 10.0
    await rate_limiter.acquire("conn_a", CallKind.WRITE, max_wait=10.0)
    assert clock.sleeps == [10.0]


# --- TrackstarClient.write ------------------------------------------------------


@pytest.mark.asyncio
async def test_write_sends_auth_headers_idempotency_key_and_the_exact_bytes(order_fake):
    async with make_client(order_fake.transport()) as client:
        await write(client, key="shipment:42:0123456789abcdef")

    (sent,) = order_fake.requests
    assert (sent.method, sent.path) == ("POST", SHIPMENTS_PATH)
    assert sent.body == BODY
    assert sent.headers["x-trackstar-api-key"] == TEST_API_KEY
    assert sent.headers["x-trackstar-access-token"] == ACCESS_TOKEN
    assert sent.headers["idempotency-key"] == "shipment:42:0123456789abcdef"
    assert sent.headers["content-type"] == "application/json"
    assert sent.status_code == 200


@pytest.mark.asyncio
async def test_write_parses_money_as_decimal(order_fake):
    order = sample_data("cart-order.created")

    async with make_client(order_fake.transport()) as client:
        result = await write(client)

    assert isinstance(result.data["total_price"], Decimal)
    assert result.data["total_price"] == order["total_price"] == Decimal("55.08")
    unit_price = result.data["line_items"][0]["unit_price"]
    assert isinstance(unit_price, Decimal)
    assert unit_price == order["line_items"][0]["unit_price"]


@pytest.mark.asyncio
async def test_write_returns_id_request_id_and_unused_fields(order_fake):
    body = b'{"tracking_number":"1ZTEST0001","shop_id":"7495611"}'

    async with make_client(order_fake.transport()) as client:
        result = await write(client, body)

    assert result.unused_fields == ["shop_id"]
    assert result.record_id is not None
    assert result.record_id.startswith("shp_")
    assert result.request_id is not None
    assert result.request_id.startswith("req_")
    assert result.replayed is False


@pytest.mark.asyncio
async def test_repeated_write_with_the_same_key_is_a_replay(order_fake):
    async with make_client(order_fake.transport()) as client:
        first = await write(client, key="shipment:1:same")
        second = await write(client, key="shipment:1:same")

    assert (first.replayed, second.replayed) == (False, True)
    assert second.data == first.data
    assert len(order_fake.writes("POST")) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("remaining", "reset"),
    [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ],
    ids=["current-spelling", "earlier-spelling"],
)
async def test_exhausted_budget_pauses_that_connection_until_reset(remaining, reset):
    def handler(_: httpx.Request) -> httpx.Response:
        headers = {remaining: "0", reset: in_seconds(30)}
        return httpx.Response(200, json={"data": {}, "id": "x"}, headers=headers)

    async with make_client(httpx.MockTransport(handler)) as client:
        await write(client)
        write_delay = client.limiter.delay(CONNECTION_ID, CallKind.WRITE)
        read_delay = client.limiter.delay(CONNECTION_ID, CallKind.READ)
        other_delay = client.limiter.delay("conn_other", CallKind.WRITE)

    assert 28 <= write_delay <= 30
    assert (read_delay, other_delay) == (0.0, 0.0)


@pytest.mark.asyncio
async def test_remaining_budget_does_not_pause(order_fake):
    async with make_client(order_fake.transport()) as client:
        await write(client)
        delay = client.limiter.delay(CONNECTION_ID, CallKind.WRITE)

    assert delay == pytest.approx(0.02)


@pytest.mark.asyncio
async def test_429_pauses_the_connection_for_the_wait_it_gives(fake):
    fake.script("POST", SHIPMENTS_PATH, respond(429, headers={"retry-after": "7"}))

    async with make_client(fake.transport()) as client:
        with pytest.raises(TrackstarRateLimited) as raised:
            await write(client)
        delay = client.limiter.delay(CONNECTION_ID, CallKind.WRITE)

    assert raised.value.retry_after == 7.0
    assert delay == 7.0


@pytest.mark.asyncio
@pytest.mark.parametrize("wait", ["inf", "nan", "1e400", "99999999999999"])
async def test_429_with_a_bogus_wait_does_not_pause_the_token_for_good(fake, wait):
    fake.script("POST", SHIPMENTS_PATH, respond(429, headers={"retry-after": wait}))

    async with make_client(fake.transport()) as client:
        with pytest.raises(TrackstarRateLimited) as raised:
            await write(client)
        delay = client.limiter.delay(CONNECTION_ID, CallKind.WRITE)

    retry_after = raised.value.retry_after
    assert retry_after is None or retry_after <= 24 * 3600
    assert delay <= 24 * 3600
    # The outbox turns the wait into a timedelta; it must fit one.
    assert timedelta(seconds=retry_after or 0) <= timedelta(days=1)


@pytest.mark.asyncio
async def test_write_without_api_key_fails_without_sending(order_fake):
    async with make_client(order_fake.transport(), api_key=None) as client:
        with pytest.raises(TrackstarFinal, match="TRACKSTAR_API_KEY is not set"):
            await write(client)

    assert order_fake.requests == []


@pytest.mark.asyncio
async def test_success_with_a_body_that_is_not_json_is_an_error(fake):
    fake.script("POST", SHIPMENTS_PATH, respond(200, content=b"<html>ok</html>"))

    async with make_client(fake.transport()) as client:
        with pytest.raises(TrackstarError, match="not JSON") as raised:
            await write(client)

    assert raised.value.status_code == 200


OUTCOMES: dict[str, Callable[[], Outcome]] = {
    "401": lambda: respond(401, {"error": "Invalid access token"}),
    "403": lambda: respond(403, {"error": "create_shipment is disabled"}),
    "422": lambda: respond(422, api_fixture("error-422")),
    "429": lambda: respond(429, headers={"retry-after": "1"}),
    "500": lambda: respond(500),
    "502-html": lambda: respond(502, content=b"<html>Bad Gateway</html>"),
    "connect-error": connect_error,
    "timeout-before": timeout_before_accept,
    "timeout-after": timeout_after_accept,
    "not-json": lambda: respond(200, content=b"surprise"),
    "not-object": lambda: respond(200, ["a", "list"]),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("outcome", list(OUTCOMES))
async def test_errors_never_carry_the_access_token_or_api_key(order_fake, outcome):
    order_fake.script("*", SHIPMENTS_PATH, OUTCOMES[outcome]())

    async with make_client(order_fake.transport()) as client:
        with pytest.raises(TrackstarError) as raised:
            await write(client)

    error = raised.value
    shown = [str(error), repr(error), error.message, error.body or "", str(error.args)]
    cause = error.__cause__
    if cause is not None:
        shown += [str(cause), repr(cause)]
    for text in shown:
        assert ACCESS_TOKEN not in text
        assert TEST_API_KEY not in text


@pytest.mark.asyncio
async def test_unknown_access_token_is_unauthorized(order_fake):
    stranger = ConnectionCredentials(
        connection_id="conn_stranger",
        access_token=SecretStr("tok_not_known_to_trackstar"),
        integration_name=None,
    )

    async with make_client(order_fake.transport()) as client:
        with pytest.raises(TrackstarUnauthorized) as raised:
            await client.write(
                stranger,
                method="POST",
                path=SHIPMENTS_PATH,
                body=BODY,
                idempotency_key="k",
            )

    assert raised.value.status_code == 401
    assert "tok_not_known_to_trackstar" not in str(raised.value)


@pytest.mark.asyncio
async def test_get_sends_auth_headers_and_parses_money_as_decimal(order_fake):
    async with make_client(order_fake.transport()) as client:
        payload = await client.get(CREDENTIALS, f"/cart/orders/{ORDER_ID}")

    (sent,) = order_fake.requests
    assert (sent.method, sent.path, sent.body) == (
        "GET",
        f"/cart/orders/{ORDER_ID}",
        b"",
    )
    assert sent.headers["x-trackstar-api-key"] == TEST_API_KEY
    assert sent.headers["x-trackstar-access-token"] == ACCESS_TOKEN
    assert "idempotency-key" not in sent.headers
    assert payload["data"]["total_price"] == Decimal("55.08")
    assert isinstance(payload["data"]["total_price"], Decimal)
