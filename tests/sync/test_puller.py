"""Pulling from Trackstar: paging, retries, ordering against webhooks, resuming."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from app.core.db import Database
from app.core.settings import Settings
from app.core.timestamps import format_timestamp
from app.orders.models import Order, OrderLine
from app.products.models import Product
from app.sync.models import SyncState
from app.sync.puller import PullBusy, Puller, PullProgress
from app.sync.resources import Resource
from app.sync.service import claim_pull
from tests.conftest import CONNECTION_ID
from tests.fixtures import builders
from tests.fixtures.fake_trackstar import FakeTrackstar, respond
from tests.fixtures.forwarding import connect
from tests.signing import signed_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.usefixtures("connected")]

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = format_timestamp(NOW - timedelta(days=1))


def recent_order(number: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "updated_date": RECENT,
        "trackstar_updated_date": RECENT,
        "line_items": [
            builders.line_item(f"li_{number}_1"),
            builders.line_item(f"li_{number}_2"),
        ],
    }
    return builders.order(f"ord_{number:04d}", **(fields | overrides))


@pytest.fixture
def settings(database_url: str) -> Settings:
    from tests.conftest import make_settings

    return make_settings(database_url, sync_page_size=2)


@pytest_asyncio.fixture
async def connected(app) -> None:
    await connect(app)


@pytest.fixture
def puller(app, settings) -> Puller:
    return Puller(
        database=app.state.database,
        client=app.state.trackstar,
        box=app.state.secret_box,
        settings=settings,
    )


async def count(database: Database, model: Any) -> int:
    async with database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def sync_state(database: Database, resource: Resource) -> SyncState:
    async with database.transaction() as session:
        state = await session.get(SyncState, (CONNECTION_ID, resource.value))
    assert state is not None
    return state


def list_requests(fake: FakeTrackstar, path: str = "/cart/orders"):
    return [r for r in fake.requests if r.method == "GET" and r.path == path]


async def test_full_pull_follows_every_page_and_repeats_the_filters(
    fake, puller, database
):
    for number in range(5):
        fake.add_order(CONNECTION_ID, recent_order(number))

    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert (progress.pages, progress.records, progress.stale) == (3, 5, 0)
    requests = list_requests(fake)
    assert len(requests) == 3
    filters = [
        {k: v for k, v in r.query.items() if k != "page_token"} for r in requests
    ]
    assert filters[0] == filters[1] == filters[2]
    assert filters[0]["limit"] == "2"
    assert set(filters[0]) == {"limit", "updated_date[gte]", "updated_date[lte]"}
    assert "page_token" not in requests[0].query
    assert all(r.query.get("page_token") for r in requests[1:])
    assert all(r.status_code == 200 for r in requests)
    assert await count(database, Order) == 5
    assert await count(database, OrderLine) == 10


async def test_finished_pull_sets_the_watermark_and_the_next_is_incremental(
    fake, puller, database, settings
):
    fake.add_order(CONNECTION_ID, recent_order(1))
    await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)
    state = await sync_state(database, Resource.ORDERS)
    assert state.watermark is not None
    assert state.last_success_at is not None
    assert state.run_started_at is None

    await puller.pull(CONNECTION_ID, Resource.ORDERS)

    last = list_requests(fake)[-1]
    since = state.watermark - settings.sync_overlap
    assert last.query["trackstar_updated_date[gte]"] == format_timestamp(since)
    assert "trackstar_updated_date[lte]" in last.query
    assert "updated_date[gte]" not in last.query


async def test_rate_limit_in_the_middle_of_a_pull_waits_and_continues(
    fake, puller, database
):
    for number in range(5):
        fake.add_order(CONNECTION_ID, recent_order(number))

    def limit_once(progress: PullProgress) -> None:
        if progress.pages == 1:
            headers = {"retry-after": "1", "x-ratelimit-remaining": "0"}
            fake.script("GET", "/cart/orders", respond(429, {"error": "Slow"}, headers))

    puller.on_page = limit_once

    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert progress.records == 5
    assert await count(database, Order) == 5
    requests = list_requests(fake)
    statuses = [r.status_code for r in requests]
    assert statuses.count(429) == 1
    limited = statuses.index(429)
    assert 0 < limited < len(statuses) - 1
    assert requests[limited + 1].query == requests[limited].query
    assert requests[limited + 1].at - requests[limited].at >= 0.9


async def test_pulled_record_older_than_a_webhook_does_not_overwrite_it(
    client, fake, puller, database
):
    newer = recent_order(1, status="fulfilled", updated_date=format_timestamp(NOW))
    body = builders.to_json(builders.envelope("cart-order.updated", newer))
    body = body.replace(b'"conn_test_1"', f'"{CONNECTION_ID}"'.encode())
    await client.post("/webhooks/trackstar", content=body, headers=signed_headers(body))
    fake.add_order(CONNECTION_ID, recent_order(1, status="open"))

    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert progress.stale == 1
    async with database.transaction() as session:
        stored = await session.get(Order, (CONNECTION_ID, "ord_0001"))
    assert stored is not None
    assert stored.status == "fulfilled"


async def test_pulled_record_newer_than_a_webhook_replaces_it(
    client, fake, puller, database
):
    older = recent_order(
        1, status="open", updated_date=format_timestamp(NOW - timedelta(days=2))
    )
    body = builders.to_json(builders.envelope("cart-order.created", older))
    body = body.replace(b'"conn_test_1"', f'"{CONNECTION_ID}"'.encode())
    await client.post("/webhooks/trackstar", content=body, headers=signed_headers(body))
    fake.add_order(CONNECTION_ID, recent_order(1, status="confirmed"))

    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert progress.stale == 0
    async with database.transaction() as session:
        stored = await session.get(Order, (CONNECTION_ID, "ord_0001"))
    assert stored is not None
    assert stored.status == "confirmed"


async def test_webhook_older_than_a_pulled_record_is_stale(client, fake, puller):
    fake.add_order(CONNECTION_ID, recent_order(1, status="confirmed"))
    await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)
    older = recent_order(
        1, status="open", updated_date=format_timestamp(NOW - timedelta(days=3))
    )
    body = builders.to_json(builders.envelope("cart-order.updated", older))
    body = body.replace(b'"conn_test_1"', f'"{CONNECTION_ID}"'.encode())

    response = await client.post(
        "/webhooks/trackstar", content=body, headers=signed_headers(body)
    )

    assert response.json()["status"] == "stale"


async def test_pull_stopped_between_pages_resumes_from_its_last_page(
    fake, puller, database
):
    for number in range(5):
        fake.add_order(CONNECTION_ID, recent_order(number))

    def crash_after_first_page(progress: PullProgress) -> None:
        if progress.pages == 1:
            raise KeyboardInterrupt  # the process is stopped mid-pull

    puller.on_page = crash_after_first_page
    with pytest.raises(KeyboardInterrupt):
        await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)
    state = await sync_state(database, Resource.ORDERS)
    assert state.run_pages == 1
    assert state.run_page_token is not None
    assert state.watermark is None
    assert await count(database, Order) == 2
    before = len(list_requests(fake))

    puller.on_page = None
    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    resumed = list_requests(fake)[before:]
    assert resumed[0].query["page_token"] == state.run_page_token
    assert progress.resumed is True
    assert progress.pages == 3
    assert progress.records == 5
    assert await count(database, Order) == 5
    assert (await sync_state(database, Resource.ORDERS)).watermark is not None


async def test_a_pull_in_progress_is_not_run_twice(puller, settings, database):
    async with database.transaction() as session:
        plan = await claim_pull(
            session,
            connection_id=CONNECTION_ID,
            resource=Resource.PRODUCTS,
            worker_id="another-worker",
            lease=timedelta(minutes=5),
            since=None,
            full=True,
            overlap=settings.sync_overlap,
            orders_window=settings.sync_orders_backfill,
            page_size=settings.sync_page_size,
        )
    assert plan is not None

    with pytest.raises(PullBusy):
        await puller.pull(CONNECTION_ID, Resource.PRODUCTS, full=True)


async def test_pull_whose_worker_died_is_taken_over_after_its_lease(
    fake, puller, settings, database
):
    fake.add_product(CONNECTION_ID, builders.product("prod_a", updated_date=RECENT))
    async with database.transaction() as session:
        await claim_pull(
            session,
            connection_id=CONNECTION_ID,
            resource=Resource.PRODUCTS,
            worker_id="dead-worker",
            lease=timedelta(seconds=-1),
            since=None,
            full=True,
            overlap=settings.sync_overlap,
            orders_window=settings.sync_orders_backfill,
            page_size=settings.sync_page_size,
        )

    progress = await puller.pull(CONNECTION_ID, Resource.PRODUCTS)

    assert progress.records == 1
    assert await count(database, Product) == 1


async def test_invalid_pulled_record_is_skipped_and_counted(fake, puller, database):
    fake.add_order(CONNECTION_ID, recent_order(1))
    fake.add_order(CONNECTION_ID, recent_order(2, status="teleported"))

    progress = await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert (progress.records, progress.invalid) == (1, 1)
    assert await count(database, Order) == 1


async def test_failed_pull_records_the_error_and_keeps_its_progress(
    fake, puller, database
):
    for number in range(3):
        fake.add_order(CONNECTION_ID, recent_order(number))

    def refuse_next(progress: PullProgress) -> None:
        if progress.pages == 1:
            fake.script(
                "GET", "/cart/orders", respond(403, {"error": "Reads disabled"})
            )

    puller.on_page = refuse_next
    with pytest.raises(Exception, match="Reads disabled"):
        await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    state = await sync_state(database, Resource.ORDERS)
    assert state.last_error is not None
    assert "Reads disabled" in state.last_error
    assert state.run_pages == 1
    assert state.leased_by is None


async def test_a_next_token_given_twice_stops_the_pull_instead_of_looping(
    fake, puller, database
):
    page = {"data": [recent_order(1)], "next_token": "tok_again", "total_count": 1}
    # Trackstar misbehaving: every page points at the same next page.
    fake.script("GET", "/cart/orders", *[respond(200, page)] * 5)

    with pytest.raises(Exception, match="already given"):
        await puller.pull(CONNECTION_ID, Resource.ORDERS, full=True)

    assert len(list_requests(fake)) == 2
    state = await sync_state(database, Resource.ORDERS)
    assert state.last_error is not None
    assert "already given" in state.last_error
    assert state.leased_by is None
