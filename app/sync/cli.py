"""`python -m app sync RESOURCE`: pull from Trackstar now, with progress."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

import structlog
import typer
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from app.cli import run_with_database, settings_or_exit
from app.connections import service as connections
from app.core.db import Database
from app.core.secrets import SecretBox, resolve_secrets
from app.core.timestamps import parse_timestamp
from app.sync.puller import PullBusy, Puller, PullProgress
from app.sync.resources import Resource
from app.trackstar.client import TrackstarClient
from app.trackstar.errors import TrackstarError

log = structlog.get_logger(__name__)


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--since") from None


class _Reporter:
    """A progress bar on a terminal, a log line per page otherwise."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[tuple[str, str], TaskID] = {}

    def __call__(self, state: PullProgress) -> None:
        if self.progress is None:
            log.info(
                "sync.page",
                connection_id=state.connection_id,
                resource=state.resource.value,
                pages=state.pages,
                records=state.records,
            )
            return
        key = (state.connection_id, state.resource.value)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(
                f"{state.resource.value} of {state.connection_id}",
                total=None,
                pages=0,
            )
        self.progress.update(
            self.tasks[key], completed=state.records, pages=state.pages
        )


@contextmanager
def _reporter() -> Iterator[_Reporter]:
    if not sys.stderr.isatty():
        yield _Reporter(None)
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} records, {task.fields[pages]} pages"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        yield _Reporter(progress)


def sync(
    resource: Annotated[Resource, typer.Argument(help="What to pull.")],
    connection: Annotated[
        list[str] | None,
        typer.Option("--connection", help="Only this connection (repeatable)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only records Trackstar changed since this ISO 8601 time; "
            "without it, a full pull (orders: the last SYNC_ORDERS_BACKFILL)."
        ),
    ] = None,
) -> None:
    """Pull products, warehouses or orders from Trackstar into the database.

    A pull stopped half-way resumes from its last stored page when run again.
    """
    settings = settings_or_exit()
    since_at = _since(since)

    async def work(database: Database) -> int:
        secrets = await resolve_secrets(database, settings)
        async with database.transaction() as session:
            known = [c.id for c in await connections.list_connections(session)]
        targets = connection or known
        unknown = sorted(set(targets) - set(known))
        if unknown:
            typer.echo(f"error: unknown connection {unknown[0]!r}", err=True)
            return 2
        failures = 0
        async with TrackstarClient.from_settings(settings) as client:
            with _reporter() as reporter:
                puller = Puller(
                    database=database,
                    client=client,
                    box=SecretBox(secrets.secret_keys),
                    settings=settings,
                    on_page=reporter,
                )
                for connection_id in targets:
                    try:
                        done = await puller.pull(
                            connection_id,
                            resource,
                            since=since_at,
                            full=since_at is None,
                        )
                    except (PullBusy, TrackstarError) as error:
                        failures += 1
                        typer.echo(f"{connection_id}: {error}", err=True)
                        continue
                    typer.echo(
                        f"{connection_id}: {done.records} {resource.value} in "
                        f"{done.pages} pages ({done.stale} older than stored, "
                        f"{done.invalid} invalid)"
                    )
        return 1 if failures else 0

    if not settings.trackstar_api_key:
        typer.echo("error: TRACKSTAR_API_KEY is not set", err=True)
        raise typer.Exit(code=2)
    raise typer.Exit(code=run_with_database(settings, work))
