"""Sync state: requests for pulls, leases, progress per page, watermarks."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import insert_for
from app.core.models import utcnow
from app.core.timestamps import format_timestamp
from app.sync.models import SyncState
from app.sync.resources import Resource


@dataclass(frozen=True)
class PullPlan:
    """What one pull asks Trackstar for; the query is repeated on every page."""

    connection_id: str
    resource: Resource
    started_at: datetime
    query: dict[str, str]
    page_token: str | None
    pages_done: int
    records_done: int
    resumed: bool


async def ensure_states(
    session: AsyncSession, connection_id: str, resources: list[Resource]
) -> None:
    statement = insert_for(session, SyncState).values(
        [
            {
                "connection_id": connection_id,
                "resource": resource.value,
                "records_pulled": 0,
                "requested_full": False,
                "run_pages": 0,
                "run_records": 0,
            }
            for resource in resources
        ]
    )
    await session.execute(statement.on_conflict_do_nothing())


async def request_pull(
    session: AsyncSession,
    *,
    connection_id: str,
    resources: list[Resource],
    since: datetime | None = None,
) -> None:
    """Ask for a pull: a full one, or of records changed since `since`."""
    await ensure_states(session, connection_id, resources)
    await session.execute(
        update(SyncState)
        .where(
            SyncState.connection_id == connection_id,
            SyncState.resource.in_([r.value for r in resources]),
        )
        .values(
            requested_at=utcnow(), requested_full=since is None, requested_since=since
        )
    )


def build_query(
    resource: Resource,
    *,
    since: datetime | None,
    until: datetime,
    orders_window: timedelta,
    page_size: int,
) -> dict[str, str]:
    """Filters of one pull, bounded on both sides (Trackstar's quickest form).

    Incremental pulls select on `trackstar_updated_date`, which Trackstar bumps
    on every change to its copy, including records it only just picked up.
    A full pull takes every product and warehouse, and orders updated within
    `orders_window` (the default depth of a new connection's first sync).
    """
    query = {"limit": str(page_size)}
    if since is not None:
        query["trackstar_updated_date[gte]"] = format_timestamp(since)
        query["trackstar_updated_date[lte]"] = format_timestamp(until)
    elif resource is Resource.ORDERS:
        query["updated_date[gte]"] = format_timestamp(until - orders_window)
        query["updated_date[lte]"] = format_timestamp(until)
    return query


async def claim_pull(
    session: AsyncSession,
    *,
    connection_id: str,
    resource: Resource,
    worker_id: str,
    lease: timedelta,
    since: datetime | None,
    full: bool,
    overlap: timedelta,
    orders_window: timedelta,
    page_size: int,
) -> PullPlan | None:
    """Lease the resource's pull and say what to fetch; None if another has it.

    An unfinished pull is resumed from its last committed page, whatever was
    asked. Otherwise: `full`, or `since`, or incremental from the watermark
    minus `overlap` (full when there is no watermark yet).
    """
    await ensure_states(session, connection_id, [resource])
    now = utcnow()
    claimed = await session.execute(
        update(SyncState)
        .where(
            SyncState.connection_id == connection_id,
            SyncState.resource == resource.value,
            or_(SyncState.lease_expires_at.is_(None), SyncState.lease_expires_at < now),
        )
        .values(leased_by=worker_id, lease_expires_at=now + lease)
    )
    if not getattr(claimed, "rowcount", 0):
        return None
    state = await session.get(
        SyncState, (connection_id, resource.value), populate_existing=True
    )
    assert state is not None
    if state.run_started_at is not None and state.run_query is not None:
        return PullPlan(
            connection_id=connection_id,
            resource=resource,
            started_at=state.run_started_at,
            query=dict(state.run_query),
            page_token=state.run_page_token,
            pages_done=state.run_pages,
            records_done=state.run_records,
            resumed=True,
        )
    if not full and since is None and state.requested_at is not None:
        full, since = state.requested_full, state.requested_since
    if not full and since is None and state.watermark is not None:
        since = state.watermark - overlap
    query = build_query(
        resource,
        since=None if full else since,
        until=now,
        orders_window=orders_window,
        page_size=page_size,
    )
    state.run_started_at = now
    state.run_query = query
    state.run_page_token = None
    state.run_pages = 0
    state.run_records = 0
    return PullPlan(
        connection_id=connection_id,
        resource=resource,
        started_at=now,
        query=query,
        page_token=None,
        pages_done=0,
        records_done=0,
        resumed=False,
    )


def _owned(plan: PullPlan, worker_id: str) -> Any:
    return and_(
        SyncState.connection_id == plan.connection_id,
        SyncState.resource == plan.resource.value,
        SyncState.leased_by == worker_id,
    )


async def record_page(
    session: AsyncSession,
    plan: PullPlan,
    *,
    worker_id: str,
    next_token: str | None,
    records: int,
    lease: timedelta,
) -> bool:
    """Commit a page's progress with its records; False if the lease was lost."""
    result = await session.execute(
        update(SyncState)
        .where(_owned(plan, worker_id))
        .values(
            run_page_token=next_token,
            run_pages=SyncState.run_pages + 1,
            run_records=SyncState.run_records + records,
            records_pulled=SyncState.records_pulled + records,
            lease_expires_at=utcnow() + lease,
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def finish_pull(session: AsyncSession, plan: PullPlan, *, worker_id: str) -> None:
    """The last page is in: advance the watermark, satisfy older requests."""
    state = await session.get(SyncState, (plan.connection_id, plan.resource.value))
    if state is None or state.leased_by != worker_id:
        return
    state.watermark = max(state.watermark or plan.started_at, plan.started_at)
    state.last_success_at = utcnow()
    state.last_error = None
    state.last_error_at = None
    if state.requested_at is not None and state.requested_at <= plan.started_at:
        state.requested_at = None
        state.requested_full = False
        state.requested_since = None
    _clear_run(state)


async def fail_pull(
    session: AsyncSession,
    plan: PullPlan,
    *,
    worker_id: str,
    error: str,
    restart: bool,
) -> None:
    """Note the error and let go of the lease. The run is kept for resuming,
    unless `restart` (its page token is refused): then the next pull starts
    the query again."""
    state = await session.get(
        SyncState, (plan.connection_id, plan.resource.value), populate_existing=True
    )
    if state is None or state.leased_by != worker_id:
        return
    state.last_error = error
    state.last_error_at = utcnow()
    if restart:
        _clear_run(state)
    state.leased_by = None
    state.lease_expires_at = None


def _clear_run(state: SyncState) -> None:
    state.run_started_at = None
    state.run_query = None
    state.run_page_token = None
    state.run_pages = 0
    state.run_records = 0
    state.leased_by = None
    state.lease_expires_at = None


async def states_of(session: AsyncSession, connection_id: str) -> list[SyncState]:
    statement = (
        select(SyncState)
        .where(SyncState.connection_id == connection_id)
        .order_by(SyncState.resource)
    )
    return list((await session.scalars(statement)).all())


async def due_pulls(
    session: AsyncSession,
    *,
    now: datetime,
    interval: timedelta,
    retry_delay: timedelta,
) -> list[tuple[str, Resource]]:
    """Pulls to run now: requested, unfinished, or not run for `interval`;
    one that just failed waits `retry_delay`."""
    statement = select(SyncState).where(
        or_(
            SyncState.requested_at.is_not(None),
            SyncState.run_started_at.is_not(None),
            SyncState.last_success_at.is_(None),
            SyncState.last_success_at <= now - interval,
        ),
        or_(SyncState.lease_expires_at.is_(None), SyncState.lease_expires_at < now),
        or_(
            SyncState.last_error_at.is_(None),
            SyncState.last_error_at < now - retry_delay,
        ),
    )
    states = (await session.scalars(statement)).all()
    return [(state.connection_id, Resource(state.resource)) for state in states]
