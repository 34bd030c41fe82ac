"""Reconciliation: pull what changed since the last pull, for every connection,
so that missed webhooks and initial syncs (which send none) are healed."""

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import structlog

from app.connections.service import ConnectionNotConfigured, list_connections
from app.core.db import Database
from app.core.models import utcnow
from app.core.settings import Settings
from app.sync import service
from app.sync.puller import PullBusy, Puller
from app.sync.resources import Resource
from app.trackstar.errors import TrackstarError
from app.webhooks.tasks import complete_pending_events

log = structlog.get_logger(__name__)

T = TypeVar("T")

# How often the worker looks for due or requested pulls.
POLL_INTERVAL_S = 15.0


class Stopped(Exception):
    pass


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    """Run `work`, cancelling it if `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise Stopped
    return task.result()


async def reconcile_once(
    database: Database, puller: Puller, settings: Settings, stop: asyncio.Event
) -> int:
    """Run every due pull once; returns how many were due."""
    async with database.transaction() as session:
        active = [
            c.id for c in await list_connections(session) if c.suspended_at is None
        ]
        for connection_id in active:
            await service.ensure_states(session, connection_id, list(Resource))
        due = await service.due_pulls(
            session,
            now=utcnow(),
            interval=settings.sync_interval,
            retry_delay=settings.sync_retry_delay,
        )
    for connection_id, resource in due:
        if connection_id not in active:
            continue
        try:
            await until_stopped(puller.pull(connection_id, resource), stop)
        except (PullBusy, ConnectionNotConfigured, TrackstarError):
            continue  # another worker has it, or the failure is recorded
        except Stopped:
            break
        except Exception as error:
            log.error(
                "sync.crashed",
                connection_id=connection_id,
                resource=resource.value,
                exc_info=error,
            )
    return len(due)


async def run_reconciliation(
    database: Database, puller: Puller, settings: Settings, stop: asyncio.Event
) -> None:
    """Pull what is due, and complete truncated events, until `stop` is set."""
    while not stop.is_set():
        try:
            await complete_pending_events(database, puller.client, puller.box)
            await reconcile_once(database, puller, settings, stop)
        except Exception as error:
            log.error("sync.reconciliation_failed", exc_info=error)
        try:
            await asyncio.wait_for(stop.wait(), timeout=POLL_INTERVAL_S)
        except TimeoutError:
            pass
