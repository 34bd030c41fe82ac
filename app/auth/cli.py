"""`python -m app api-keys`: keys for warehouse systems."""

from typing import Annotated

import typer

from app.auth import service
from app.auth.models import ApiKey
from app.cli import run_with_database, settings_or_exit
from app.core.db import Database
from app.core.errors import AppError

cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@cli.command()
def create(
    name: Annotated[str, typer.Argument(help="Who the key is for.")],
    connection: Annotated[
        list[str] | None,
        typer.Option(
            "--connection",
            help="Limit the key to this connection (repeatable); default: all.",
        ),
    ] = None,
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="Allow connection management, retries and webhook events.",
        ),
    ] = False,
) -> None:
    """Create a key and print it once; only its hash is stored."""

    async def work(database: Database) -> str:
        async with database.transaction() as session:
            issued = await service.create_api_key(
                session, name=name, connection_ids=connection, is_admin=admin
            )
        return issued.key

    try:
        key = run_with_database(settings_or_exit(), work)
    except AppError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(key)
    typer.echo(
        "Store this key now; it cannot be shown again. "
        "Send it as `Authorization: Bearer <key>`.",
        err=True,
    )


def _describe(key: ApiKey) -> str:
    scope = ",".join(key.connection_ids) if key.connection_ids else "all connections"
    used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
    return "\t".join(
        [
            key.name,
            f"tsf_{key.prefix}_…",
            "admin" if key.is_admin else "read/write",
            scope,
            f"created {key.created_at:%Y-%m-%d %H:%M}",
            f"last used {used}",
            "revoked" if key.revoked_at else "active",
        ]
    )


@cli.command("list")
def list_keys() -> None:
    """List keys with when they were last used; never the keys themselves."""

    async def work(database: Database) -> list[str]:
        async with database.transaction() as session:
            keys = await service.list_api_keys(session)
        return [_describe(key) for key in keys]

    for line in run_with_database(settings_or_exit(), work):
        typer.echo(line)


@cli.command()
def revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key at once; requests with it answer 401 from then on."""

    async def work(database: Database) -> None:
        async with database.transaction() as session:
            await service.revoke_api_key(session, name=name)

    try:
        run_with_database(settings_or_exit(), work)
    except AppError as error:
        typer.echo(f"error: {error.detail}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"revoked {name}")
