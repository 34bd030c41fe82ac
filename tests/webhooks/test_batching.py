"""Concurrent deliveries share transactions (group commit) and still get the
outcome each would have had alone; one that cannot be stored fails alone."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from sqlalchemy import event, func, select, text

from app.core.db import Database
from app.orders.models import Order, OrderLine
from app.webhooks.models import EventStatus, WebhookEvent
from tests.signing import sample, signed_headers

pytestmark = pytest.mark.asyncio

URL = "/webhooks/trackstar"
POISON_ORDER_ID = "ord_refused_by_the_database"


def order_event(order_id: str, updated_date: str = "2026-03-14T09:12:45Z") -> bytes:
    envelope = sample("cart-order.created")
    envelope["data"].update(id=order_id, updated_date=updated_date)
    return json.dumps(envelope).encode()


async def post(client, body: bytes, message_id: str):
    headers = signed_headers(body, message_id=message_id)
    return await client.post(URL, content=body, headers=headers)


async def scalar(database: Database, statement):
    async with database.transaction() as session:
        return await session.scalar(statement)


@pytest.fixture
def commits(database: Database) -> Iterator[list[int]]:
    """One entry per transaction committed by the application's engine."""
    seen: list[int] = []

    def on_commit(_connection) -> None:
        seen.append(1)

    event.listen(database.engine.sync_engine, "commit", on_commit)
    yield seen
    event.remove(database.engine.sync_engine, "commit", on_commit)


async def test_concurrent_deliveries_share_transactions(client, database, commits):
    bodies = [order_event(f"ord_batch_{n}") for n in range(30)]

    responses = await asyncio.gather(
        *(post(client, body, f"msg_batch_{n}") for n, body in enumerate(bodies))
    )

    assert [response.status_code for response in responses] == [200] * 30
    assert {response.json()["status"] for response in responses} == {"processed"}
    assert len({response.json()["event_id"] for response in responses}) == 30
    assert await scalar(database, select(func.count()).select_from(Order)) == 30
    assert await scalar(database, select(func.count()).select_from(OrderLine)) == 90
    # Grouped: far fewer commits than deliveries.
    assert 1 <= len(commits) <= 10


async def test_duplicates_and_versions_in_one_burst_keep_their_outcomes(
    client, database
):
    newer = order_event("ord_burst", updated_date="2026-03-15T10:00:00Z")
    older = order_event("ord_burst", updated_date="2026-03-14T10:00:00Z")
    others = [order_event(f"ord_burst_{n}") for n in range(10)]

    responses = await asyncio.gather(
        post(client, newer, "msg_newer"),
        post(client, newer, "msg_newer"),
        post(client, older, "msg_older"),
        *(post(client, body, f"msg_other_{n}") for n, body in enumerate(others)),
    )

    statuses = [response.json()["status"] for response in responses]
    assert sorted(statuses[:2]) == ["duplicate", "processed"]
    # Delivered first, the newer one makes the older stale.
    assert statuses[2] == "stale"
    assert statuses[3:] == ["processed"] * 10
    stored = await scalar(
        database, select(Order.updated_date).where(Order.id == "ord_burst")
    )
    assert stored.isoformat() == "2026-03-15T10:00:00+00:00"
    originals = select(func.count()).where(WebhookEvent.dedupe_key.is_not(None))
    assert await scalar(database, originals) == 12


@pytest_asyncio.fixture
async def poison_trigger(database: Database, database_url: str) -> AsyncIterator[None]:
    """A database that refuses one order, as a constraint or a bug might."""
    if database_url.startswith("sqlite"):
        create = [
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON orders"
            f" WHEN NEW.id = '{POISON_ORDER_ID}'"
            " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        ]
        drop = ["DROP TRIGGER refuse_poison"]
    else:
        create = [
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN IF NEW.id = '{POISON_ORDER_ID}' THEN"
            " RAISE EXCEPTION 'refused by trigger'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON orders"
            " FOR EACH ROW EXECUTE FUNCTION refuse_poison()",
        ]
        drop = ["DROP TRIGGER refuse_poison ON orders", "DROP FUNCTION refuse_poison"]
    async with database.engine.begin() as connection:
        for statement in create:
            await connection.execute(text(statement))
    yield
    async with database.engine.begin() as connection:
        for statement in drop:
            await connection.execute(text(statement))


@pytest.mark.usefixtures("poison_trigger")
async def test_a_delivery_the_database_refuses_fails_alone(client, database):
    bodies = [order_event(f"ord_fine_{n}") for n in range(8)]
    bodies.insert(4, order_event(POISON_ORDER_ID))

    responses = await asyncio.gather(
        *(post(client, body, f"msg_poison_{n}") for n, body in enumerate(bodies))
    )

    assert [response.status_code for response in responses] == [200] * 9
    statuses = [response.json()["status"] for response in responses]
    assert statuses == ["processed"] * 4 + ["quarantined"] + ["processed"] * 4
    assert await scalar(database, select(func.count()).select_from(Order)) == 8
    async with database.transaction() as session:
        kept = await session.scalar(
            select(WebhookEvent).where(WebhookEvent.message_id == "msg_poison_4")
        )
    assert kept is not None
    assert kept.status == EventStatus.QUARANTINED
    assert kept.reason is not None
    assert kept.reason.startswith("processing failed:")
    assert kept.body == bodies[4]
