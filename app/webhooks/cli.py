"""`python -m app webhooks`: try the receiver without a Trackstar account."""

import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated

import httpx
import typer
from standardwebhooks.webhooks import Webhook

from app.cli import run_with_database, settings_or_exit
from app.core.db import Database
from app.core.secrets import DEVELOPMENT_WEBHOOK_SECRET, stored_development_secret
from app.core.settings import Settings

cli = typer.Typer(help="Work with Trackstar webhooks.", no_args_is_help=True)

SAMPLES = resources.files("app.webhooks") / "samples"


def sample_names() -> list[str]:
    return sorted(
        entry.name.removesuffix(".json")
        for entry in SAMPLES.iterdir()
        if entry.name.endswith(".json")
    )


def _signing_secret(settings: Settings) -> str:
    configured = settings.webhook_secrets()
    if configured:
        return configured[0]

    async def stored(database: Database) -> str | None:
        async with database.transaction() as session:
            return await stored_development_secret(
                session, name=DEVELOPMENT_WEBHOOK_SECRET
            )

    secret = run_with_database(settings, stored)
    if secret is None:
        typer.echo(
            "error: no TRACKSTAR_WEBHOOK_SECRET is set and the service has not "
            "generated a development secret yet; start it once with "
            "`python -m app serve`",
            err=True,
        )
        raise typer.Exit(code=2)
    return secret


@cli.command()
def simulate(
    event: Annotated[
        str,
        typer.Argument(help=f"A sample event, or 'all': {', '.join(sample_names())}."),
    ] = "cart-order.created",
    url: Annotated[
        str, typer.Option(help="The receiver to post to.")
    ] = "http://127.0.0.1:8000/webhooks/trackstar",
) -> None:
    """Sign a sample Trackstar event as Svix does and post it to a running service."""
    names = sample_names() if event == "all" else [event]
    unknown = [name for name in names if name not in sample_names()]
    if unknown:
        typer.echo(f"error: no sample named {unknown[0]!r}", err=True)
        raise typer.Exit(code=2)
    signer = Webhook(_signing_secret(settings_or_exit()))
    with httpx.Client(timeout=15) as client:
        for name in names:
            body = (SAMPLES / f"{name}.json").read_bytes()
            message_id = f"msg_{uuid.uuid4().hex}"
            now = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "svix-id": message_id,
                "svix-timestamp": str(int(now.timestamp())),
                "svix-signature": signer.sign(message_id, now, body.decode()),
            }
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                typer.echo(f"error: could not reach {url}: {error}", err=True)
                raise typer.Exit(code=1) from None
            typer.echo(f"{name}: {response.status_code} {response.text}")
