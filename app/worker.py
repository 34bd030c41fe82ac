"""Background work of one process: outbox delivery, reconciliation pulls and
housekeeping.

Run by `python -m app worker`, and inside `serve` unless `--no-worker`.
Any number of these may run against one Postgres database.
"""

import asyncio
from collections.abc import Mapping
from datetime import timedelta

import structlog

from app.core.db import Database
from app.core.models import utcnow
from app.core.secrets import SecretBox
from app.core.settings import Settings
from app.inventory.service import KIND as INVENTORY_ADJUSTMENT
from app.inventory.tasks import InventoryAdjustmentDelivery
from app.outbox.worker import DeliveryHandler, OutboxWorker
from app.shipments.service import KIND as SHIPMENT
from app.shipments.tasks import ShipmentDelivery
from app.sync.puller import Puller
from app.sync.reconcile import run_reconciliation
from app.trackstar.client import TrackstarClient
from app.webhooks.service import purge_events

log = structlog.get_logger(__name__)

HOUSEKEEPING_INTERVAL = timedelta(hours=1)


def delivery_handlers() -> Mapping[str, DeliveryHandler]:
    return {
        SHIPMENT: ShipmentDelivery(),
        INVENTORY_ADJUSTMENT: InventoryAdjustmentDelivery(),
    }


def build_outbox_worker(
    *,
    database: Database,
    client: TrackstarClient,
    box: SecretBox,
    settings: Settings,
) -> OutboxWorker:
    return OutboxWorker(
        database=database,
        client=client,
        box=box,
        settings=settings,
        handlers=delivery_handlers(),
    )


async def run_housekeeping(
    database: Database, settings: Settings, stop: asyncio.Event
) -> None:
    """Forget webhook events past their retention, once an hour."""
    while not stop.is_set():
        try:
            async with database.transaction() as session:
                removed = await purge_events(
                    session, older_than=utcnow() - settings.webhook_event_retention
                )
            if removed:
                log.info("webhooks.events_purged", count=removed)
        except Exception as error:
            log.error("housekeeping.failed", exc_info=error)
        try:
            await asyncio.wait_for(
                stop.wait(), timeout=HOUSEKEEPING_INTERVAL.total_seconds()
            )
        except TimeoutError:
            pass


async def run_background(
    *,
    database: Database,
    client: TrackstarClient,
    box: SecretBox,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Everything this process does in the background, until `stop` is set."""
    jobs = [run_housekeeping(database, settings, stop)]
    if client.is_configured:
        worker = build_outbox_worker(
            database=database, client=client, box=box, settings=settings
        )
        puller = Puller(database=database, client=client, box=box, settings=settings)
        jobs.append(worker.run(stop))
        jobs.append(run_reconciliation(database, puller, settings, stop))
    else:
        log.warning(
            "worker.trackstar_not_configured",
            reason="TRACKSTAR_API_KEY is not set: shipments and inventory "
            "adjustments are queued but not sent, and nothing is pulled",
        )
    await asyncio.gather(*jobs)
