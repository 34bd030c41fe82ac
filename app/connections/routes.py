from typing import Annotated

from fastapi import APIRouter, Path

from app.auth.dependencies import require_admin
from app.connections import service
from app.connections.schemas import (
    ConnectionList,
    ConnectionRead,
    RecordCounts,
    ResourceSyncRead,
    SyncRequest,
)
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody
from app.core.models import utcnow
from app.core.params import STRICT_QUERY
from app.sync.resources import Resource
from app.sync.service import request_pull
from app.trackstar.schemas import MAX_ID_LENGTH

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["connections"],
    dependencies=[require_admin, STRICT_QUERY],
)


def _read(item: service.ConnectionOverview) -> ConnectionRead:
    now = utcnow()
    return ConnectionRead(
        id=item.connection.id,
        integration_name=item.connection.integration_name,
        created_at=item.connection.created_at,
        suspended_at=item.connection.suspended_at,
        suspended_reason=item.connection.suspended_reason,
        counts=RecordCounts(**item.counts),
        sync=[
            ResourceSyncRead(
                resource=Resource(state.resource),
                watermark=state.watermark,
                last_success_at=state.last_success_at,
                last_error=state.last_error,
                last_error_at=state.last_error_at,
                records_pulled=state.records_pulled,
                requested_at=state.requested_at,
                running=state.lease_expires_at is not None
                and state.lease_expires_at > now,
                run_pages=state.run_pages,
                run_records=state.run_records,
            )
            for state in item.states
        ],
    )


@router.get("/connections")
async def list_connections(session: DbSession) -> ConnectionList:
    """Connections with record counts, and per resource the last pull,
    watermark and last error (admin keys only)."""
    return ConnectionList(
        data=[_read(item) for item in await service.overview(session)]
    )


@router.post(
    "/connections/{connection_id}/sync",
    status_code=202,
    responses={404: {"model": ErrorBody, "description": "No such connection"}},
)
async def request_sync(
    session: DbSession,
    connection_id: Annotated[str, Path(max_length=MAX_ID_LENGTH)],
    request: SyncRequest | None = None,
) -> ConnectionRead:
    """Ask the worker to pull from Trackstar now; all resources by default (admin)."""
    request = request or SyncRequest()
    found = await service.overview(session, connection_id)
    if not found:
        raise service.ConnectionNotFound(f"No connection with id {connection_id!r}.")
    await request_pull(
        session,
        connection_id=connection_id,
        resources=request.resources,
        since=request.since,
    )
    return _read((await service.overview(session, connection_id))[0])
