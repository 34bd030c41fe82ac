"""Liveness and readiness probes."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.core.db import Database, is_database_unavailable
from app.core.migrations import current_revision, head_revision

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    migration: str | None
    expected_migration: str | None


async def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
async def readyz(database: Annotated[Database, Depends(_database)]) -> JSONResponse:
    """The database answers and its schema is at the latest migration."""
    expected = head_revision()
    try:
        async with database.engine.connect() as connection:
            revision = await current_revision(connection)
    except Exception as error:
        if not is_database_unavailable(error):
            raise
        body = Readiness(
            status="unavailable",
            database="unreachable",
            migration=None,
            expected_migration=expected,
        )
        return JSONResponse(body.model_dump(), status_code=503)
    ready = revision == expected
    body = Readiness(
        status="ready" if ready else "migrations pending",
        database="ok",
        migration=revision,
        expected_migration=expected,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
