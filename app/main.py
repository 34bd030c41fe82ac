"""The FastAPI application: routers, error handlers and the lifespan."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.connections.routes import router as connections_router
from app.core.db import Database, create_engine
from app.core.errors import install_error_handlers
from app.core.health import router as health_router
from app.core.heap import settle_after_startup
from app.core.logging import configure_logging
from app.core.middleware import RequestContextMiddleware
from app.core.secrets import SecretBox, resolve_secrets
from app.core.settings import Settings, load_settings
from app.inventory.routes import router as inventory_router
from app.orders.routes import router as orders_router
from app.products.routes import router as products_router
from app.shipments.routes import router as shipments_router
from app.trackstar.client import TrackstarClient
from app.warehouses.routes import router as warehouses_router
from app.webhooks.batching import DeliveryRecorder
from app.webhooks.routes import receiver as webhook_receiver
from app.webhooks.routes import router as webhook_events_router
from app.webhooks.verification import WebhookVerifier
from app.worker import run_background

log = structlog.get_logger(__name__)


def create_served_app() -> FastAPI:
    """The application as `python -m app serve` runs it (the uvicorn factory)."""
    return create_app(settle_heap=True)


def create_app(
    settings: Settings | None = None,
    *,
    trackstar_transport: httpx.AsyncBaseTransport | None = None,
    settle_heap: bool = False,
) -> FastAPI:
    """The application; `trackstar_transport` replaces the network in tests.

    `settle_heap` tunes the garbage collector once start-up is done (see
    `app.core.heap`); only for a process that runs this one application.
    """
    settings = settings or load_settings()
    assert settings.log_format is not None
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(create_engine(settings))
        client = TrackstarClient.from_settings(settings, transport=trackstar_transport)
        stop = asyncio.Event()
        background: asyncio.Task[None] | None = None
        try:
            secrets = await resolve_secrets(database, settings)
            box = SecretBox(secrets.secret_keys)
            app.state.database = database
            app.state.secret_box = box
            app.state.trackstar = client
            app.state.webhook_verifier = WebhookVerifier(
                secrets.webhook_secrets, tolerance=settings.webhook_tolerance
            )
            app.state.delivery_recorder = DeliveryRecorder(database)
            if settings.run_worker:
                background = asyncio.create_task(
                    run_background(
                        database=database,
                        client=client,
                        box=box,
                        settings=settings,
                        stop=stop,
                    )
                )
            if settle_heap:
                settle_after_startup()
            yield
        finally:
            stop.set()
            if background is not None:
                await background
            await client.aclose()
            await database.dispose()

    app = FastAPI(
        title="trackstar-fulfillment",
        summary="Trackstar cart orders, products and warehouses for warehouse systems.",
        version="0.1.0",
        lifespan=lifespan,
        # A trailing slash answers 404, not a redirect: Svix counts a redirect
        # as a failed delivery, and a client should learn the right URL.
        redirect_slashes=False,
    )
    app.state.settings = settings
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            allow_credentials=False,
        )
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(health_router)
    app.include_router(webhook_receiver)
    app.include_router(orders_router)
    app.include_router(products_router)
    app.include_router(warehouses_router)
    app.include_router(shipments_router)
    app.include_router(inventory_router)
    app.include_router(connections_router)
    app.include_router(webhook_events_router)
    return app
