"""The FastAPI application: routers, error handlers and the lifespan."""

import base64
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

from app.core.db import Database, create_engine
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.settings import Environment, Settings, SettingsError, load_settings
from app.orders.routes import router as orders_router
from app.products.routes import router as products_router
from app.warehouses.routes import router as warehouses_router
from app.webhooks import service as webhooks_service
from app.webhooks.routes import receiver as webhook_receiver
from app.webhooks.routes import router as webhook_events_router
from app.webhooks.verification import WebhookVerifier

log = structlog.get_logger(__name__)


async def resolve_webhook_secrets(database: Database, settings: Settings) -> list[str]:
    """The configured signing secrets, or in development a generated one.

    The generated secret is kept in the database, so it survives restarts and
    `webhooks simulate` can sign with it.
    """
    configured = settings.webhook_secrets()
    if configured:
        return configured
    if settings.environment is not Environment.DEVELOPMENT:
        raise SettingsError(
            "TRACKSTAR_WEBHOOK_SECRET is empty; set the endpoint's whsec_ secret "
            "from Trackstar's dashboard (required outside development)"
        )
    candidate = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    async with database.transaction() as session:
        secret = await webhooks_service.development_secret(session, generate=candidate)
    log.warning(
        "webhooks.development_secret_in_use",
        generated_now=secret == candidate,
        hint="set TRACKSTAR_WEBHOOK_SECRET to the endpoint's signing secret from "
        "Trackstar's dashboard; `python -m app webhooks simulate` signs with the "
        "development secret",
    )
    return [secret]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    assert settings.log_format is not None
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(create_engine(settings))
        try:
            secrets_in_use = await resolve_webhook_secrets(database, settings)
            app.state.database = database
            app.state.webhook_verifier = WebhookVerifier(
                secrets_in_use, tolerance=settings.webhook_tolerance
            )
            yield
        finally:
            await database.dispose()

    app = FastAPI(
        title="trackstar-fulfillment",
        summary="Trackstar cart orders, products and warehouses for warehouse systems.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(webhook_receiver)
    app.include_router(orders_router)
    app.include_router(products_router)
    app.include_router(warehouses_router)
    app.include_router(webhook_events_router)
    return app
