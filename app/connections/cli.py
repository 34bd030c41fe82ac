"""`python -m app connections`: the merchants' carts and their access tokens."""

from typing import Annotated

import typer

from app.cli import run_with_database, settings_or_exit
from app.connections import service
from app.connections.models import Connection
from app.core.db import Database
from app.core.errors import AppError
from app.core.secrets import SecretBox, resolve_secrets
from app.sync.resources import Resource
from app.sync.service import request_pull

cli = typer.Typer(
    help="Add, list and remove Trackstar connections.", no_args_is_help=True
)


async def _box(database: Database) -> SecretBox:
    secrets = await resolve_secrets(database, settings_or_exit())
    return SecretBox(secrets.secret_keys)


@cli.command()
def add(
    connection_id: Annotated[str, typer.Argument(help="Trackstar's connection id.")],
    access_token: Annotated[
        str,
        typer.Option(
            envvar="TRACKSTAR_ACCESS_TOKEN",
            prompt=True,
            hide_input=True,
            help="The connection's access token (or TRACKSTAR_ACCESS_TOKEN; "
            "prompted for when absent, so it stays out of shell history).",
        ),
    ],
    integration_name: Annotated[
        str | None, typer.Option(help="e.g. shopify, amazon, sandbox.")
    ] = None,
) -> None:
    """Add a connection or replace its token (stored encrypted with SECRET_KEY)."""

    async def work(database: Database) -> None:
        box = await _box(database)
        async with database.transaction() as session:
            await service.add_connection(
                session,
                box,
                connection_id=connection_id,
                access_token=access_token,
                integration_name=integration_name,
            )
            # Trackstar sends no webhooks for what a connection already has.
            await request_pull(
                session, connection_id=connection_id, resources=list(Resource)
            )

    run_with_database(settings_or_exit(), work)
    typer.echo(
        f"connection {connection_id} saved; the worker will pull its warehouses, "
        "products and recent orders"
    )


def _state(connection: Connection) -> str:
    if connection.suspended_at is None:
        return "active"
    return f"suspended: {connection.suspended_reason}"


@cli.command("list")
def list_connections() -> None:
    """List connections; tokens are never shown."""

    async def work(database: Database) -> list[str]:
        async with database.transaction() as session:
            connections = await service.list_connections(session)
        return [
            f"{c.id}\t{c.integration_name or '-'}\t"
            f"added {c.created_at:%Y-%m-%d %H:%M}\t{_state(c)}"
            for c in connections
        ]

    for line in run_with_database(settings_or_exit(), work):
        typer.echo(line)


@cli.command()
def remove(
    connection_id: Annotated[str, typer.Argument(help="Trackstar's connection id.")],
) -> None:
    """Remove a connection and its token; its queued writes then fail."""

    async def work(database: Database) -> None:
        async with database.transaction() as session:
            await service.remove_connection(session, connection_id=connection_id)

    try:
        run_with_database(settings_or_exit(), work)
    except AppError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"connection {connection_id} removed")


@cli.command("reencrypt")
def reencrypt() -> None:
    """Re-encrypt every stored token with the first SECRET_KEY (after rotation)."""

    async def work(database: Database) -> int:
        box = await _box(database)
        async with database.transaction() as session:
            return await service.reencrypt_tokens(session, box)

    count = run_with_database(settings_or_exit(), work)
    typer.echo(f"re-encrypted {count} token(s); older keys can now be removed")
