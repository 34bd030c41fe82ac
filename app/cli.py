"""`python -m app`: serve, migrate, and the operator commands of each domain."""

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.core import migrations
from app.core.db import Database, create_engine
from app.core.heap import settle_after_startup
from app.core.logging import configure_logging
from app.core.secrets import SecretBox, resolve_secrets
from app.core.settings import Settings, SettingsError, load_settings
from app.trackstar.client import TrackstarClient
from app.worker import run_background

T = TypeVar("T")

cli = typer.Typer(
    name="app",
    help="trackstar-fulfillment: Trackstar webhooks in, warehouse updates out.",
    no_args_is_help=True,
    add_completion=False,
)


def settings_or_exit() -> Settings:
    """Settings for a command; a bad value ends it with the message and exit 2."""
    try:
        settings = load_settings()
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    assert settings.log_format is not None
    configure_logging(settings.log_level, settings.log_format)
    return settings


def migrate_or_exit(settings: Settings, revision: str = "head") -> None:
    """Apply migrations; a database that cannot be reached ends the command
    with one line saying so (password hidden) and exit 1, not a traceback."""
    try:
        migrations.upgrade(settings.database_url, revision)
    except (OSError, TimeoutError, DBAPIError) as error:
        cause = error.orig if isinstance(error, DBAPIError) else error
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        where = make_url(settings.database_url).render_as_string(hide_password=True)
        typer.echo(
            f"error: cannot use the database at {where}: "
            f"{type(cause).__name__}: {reason[:300]}",
            err=True,
        )
        raise typer.Exit(code=1) from None


def run_with_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]]
) -> T:
    """Migrate, then run `work` with a database that is closed afterwards."""
    migrate_or_exit(settings)

    async def main() -> T:
        database = Database(create_engine(settings))
        try:
            return await work(database)
        finally:
            await database.dispose()

    return asyncio.run(main())


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Also deliver queued writes to Trackstar in this process.",
        ),
    ] = True,
) -> None:
    """Apply pending migrations, then serve the API and the webhook receiver."""
    settings = settings_or_exit()
    migrate_or_exit(settings)
    # The server processes build their settings from the environment.
    os.environ["RUN_WORKER"] = "true" if worker else "false"
    uvicorn.run(
        "app.main:create_served_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        server_header=False,
        proxy_headers=False,
    )


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Upgrade the database schema (safe to run from several replicas at once)."""
    settings = settings_or_exit()
    migrate_or_exit(settings, revision)
    typer.echo(f"database is at {revision}")


@cli.command("worker")
def run_worker() -> None:
    """Deliver queued shipments and inventory adjustments to Trackstar."""
    settings = settings_or_exit()

    async def work(database: Database) -> None:
        secrets = await resolve_secrets(database, settings)
        client = TrackstarClient.from_settings(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        settle_after_startup()
        try:
            await run_background(
                database=database,
                client=client,
                box=SecretBox(secrets.secret_keys),
                settings=settings,
                stop=stop,
            )
        finally:
            await client.aclose()

    try:
        run_with_database(settings, work)
    except SettingsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


def register_commands() -> None:
    # Domain command groups import this module's helpers, so they are added here.
    from app.auth.cli import cli as api_keys_cli
    from app.connections.cli import cli as connections_cli
    from app.sync.cli import sync
    from app.webhooks.cli import cli as webhooks_cli

    cli.command("sync")(sync)
    cli.add_typer(api_keys_cli, name="api-keys")
    cli.add_typer(connections_cli, name="connections")
    cli.add_typer(webhooks_cli, name="webhooks")


register_commands()
