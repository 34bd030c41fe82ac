"""`python -m app`: serve, migrate, and the operator commands of each domain."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
import uvicorn

from app.core import migrations
from app.core.db import Database, create_engine
from app.core.logging import configure_logging
from app.core.settings import Settings, SettingsError, load_settings

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


def run_with_database(
    settings: Settings, work: Callable[[Database], Awaitable[T]]
) -> T:
    """Migrate, then run `work` with a database that is closed afterwards."""
    migrations.upgrade(settings.database_url)

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
) -> None:
    """Apply pending migrations, then serve the API and the webhook receiver."""
    settings = settings_or_exit()
    migrations.upgrade(settings.database_url)
    uvicorn.run(
        "app.main:create_app",
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
    migrations.upgrade(settings.database_url, revision)
    typer.echo(f"database is at {revision}")


def register_commands() -> None:
    # Domain command groups import this module's helpers, so they are added here.
    from app.auth.cli import cli as api_keys_cli
    from app.webhooks.cli import cli as webhooks_cli

    cli.add_typer(api_keys_cli, name="api-keys")
    cli.add_typer(webhooks_cli, name="webhooks")


register_commands()
