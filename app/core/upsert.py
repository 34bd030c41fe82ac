"""Versioned upserts: a record is written only if it is not older than the row.

Webhooks and API pulls deliver the same records in any order, so every write of
an order, product or warehouse goes through `upsert_versioned`. The version is
the cart's `updated_date`, then Trackstar's `trackstar_updated_date` (missing
counts as oldest). An equal version is applied again: it is the same snapshot,
or a later copy of it, and applying it is harmless.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, func, literal, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from app.core.db import dialect_insert
from app.core.models import Base, UTCDateTime

RecordKey = tuple[str, str]
KEY_COLUMNS = ("connection_id", "id")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class StoreResult:
    """Keys written, and keys skipped because the stored copy is newer."""

    applied: set[RecordKey] = field(default_factory=set)
    stale: set[RecordKey] = field(default_factory=set)


def _version(row: Mapping[str, Any]) -> tuple[datetime, datetime]:
    return row["updated_date"], row.get("trackstar_updated_date") or EPOCH


def is_not_older(table: FromClause, excluded: Any) -> ColumnElement[bool]:
    """SQL: the incoming row's version is at least the stored row's version."""
    epoch = literal(EPOCH, UTCDateTime)
    stored_tracked = func.coalesce(table.c.trackstar_updated_date, epoch)
    incoming_tracked = func.coalesce(excluded.trackstar_updated_date, epoch)
    return or_(
        table.c.updated_date < excluded.updated_date,
        and_(
            table.c.updated_date == excluded.updated_date,
            stored_tracked <= incoming_tracked,
        ),
    )


def collapse_duplicates(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per key, the newest version winning (the later one on a tie),
    sorted by key so concurrent batches lock rows in the same order."""
    newest: dict[RecordKey, Mapping[str, Any]] = {}
    for row in rows:
        key = (row["connection_id"], row["id"])
        kept = newest.get(key)
        if kept is None or _version(row) >= _version(kept):
            newest[key] = row
    return [dict(newest[key]) for key in sorted(newest)]


@cache
def _upsert_statement(dialect: str, entity: type[Base]) -> ReturningInsert[Any]:
    """The versioned upsert of `entity`'s table, built once per dialect.

    Statements are immutable and take their rows as parameters, so one object
    serves every call; building it (a proxy for each of the table's columns
    in `excluded`) cost more than executing it.
    """
    table = entity.__table__
    statement = dialect_insert(dialect, entity)
    excluded = statement.excluded
    updates = {
        column.name: excluded[column.name]
        for column in table.columns
        if column.name not in KEY_COLUMNS
    }
    return statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_=updates,
        where=is_not_older(table, excluded),
    ).returning(table.c.connection_id, table.c.id)


async def upsert_versioned(
    session: AsyncSession, entity: type[Base], rows: Sequence[Mapping[str, Any]]
) -> set[RecordKey]:
    """Insert or update rows keyed by (connection_id, id); return the keys written.

    A key missing from the result was stale: the stored row is newer.
    """
    unique_rows = collapse_duplicates(rows)
    if not unique_rows:
        return set()
    upsert = _upsert_statement(session.get_bind().dialect.name, entity)
    # executemany: SQLAlchemy sends the rows as batched multi-row statements
    # ("insertmanyvalues") within the drivers' bound-parameter limits.
    # One row (a webhook's record) goes as a plain execution, skipping the
    # batching machinery.
    parameters = unique_rows[0] if len(unique_rows) == 1 else unique_rows
    result = await session.execute(upsert, parameters)
    return {(row.connection_id, row.id) for row in result}
