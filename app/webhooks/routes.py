import time
from typing import Annotated, ClassVar

import structlog
from fastapi import APIRouter, Path, Query, Request

from app.auth.dependencies import require_admin
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody, PayloadTooLarge, Unauthorized
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.webhooks import service
from app.webhooks.batching import DeliveryRecorder
from app.webhooks.models import EventStatus
from app.webhooks.schemas import (
    WebhookAck,
    WebhookEventDetail,
    WebhookEventPage,
    WebhookEventRead,
)
from app.webhooks.verification import SignatureRejected, WebhookVerifier

log = structlog.get_logger(__name__)

# No STRICT_QUERY here: a query string in the URL configured at Trackstar must
# not turn every delivery into a 4xx.
receiver = APIRouter(tags=["webhooks"])
router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["webhook events"],
    dependencies=[require_admin, STRICT_QUERY],
)


class InvalidSignature(Unauthorized):
    # Not a Bearer challenge: Trackstar authenticates by signature.
    headers: ClassVar[dict[str, str] | None] = None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body as received, refused once it grows past `limit` bytes.

    Content-Length is only used to refuse early; it is never trusted to accept.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"The body is larger than {limit} bytes.")
    return bytes(body)


@receiver.post(
    "/webhooks/trackstar",
    responses={
        401: {
            "model": ErrorBody,
            "description": "The Svix signature could not be verified",
        },
        413: {"model": ErrorBody, "description": "The body is over the size cap"},
        503: {
            "model": ErrorBody,
            "description": "The database is unavailable; Svix retries",
        },
    },
)
async def receive_trackstar_webhook(
    request: Request,
) -> WebhookAck:
    """Receive a Svix-signed Trackstar event; 2xx once it is stored durably."""
    started = time.perf_counter()
    # Read from the app's state, not through dependencies: FastAPI runs a
    # plain-function dependency in a worker thread, two thread hops per delivery.
    recorder: DeliveryRecorder = request.app.state.delivery_recorder
    verifier: WebhookVerifier = request.app.state.webhook_verifier
    limit = request.app.state.settings.webhook_max_body_bytes
    try:
        body = await _read_body(request, limit)
    except PayloadTooLarge:
        log.warning("webhook.too_large", limit_bytes=limit)
        raise
    try:
        delivery = verifier.verify(body, request.headers)
    except SignatureRejected as rejection:
        log.warning("webhook.rejected", kind=rejection.kind.value)
        raise InvalidSignature(rejection.detail) from None

    try:
        prepared = service.prepare_delivery(delivery, body)
    except Exception as error:
        # Parsing refuses bad input by itself; this is a bug, and the delivery
        # is kept as quarantined rather than lost.
        log.error(
            "webhook.processing_failed", message_id=delivery.message_id, exc_info=error
        )
        reason = f"processing failed: {type(error).__name__}"
        prepared = service.Delivery(
            verified=delivery,
            body=body,
            parsed=service.ParsedDelivery(quarantine_reason=reason),
        )
    received = await recorder.record(prepared)

    log.info(
        "webhook.received",
        message_id=delivery.message_id,
        event_id=received.event_id,
        event_type=received.event_type,
        connection_id=received.connection_id,
        record_id=received.record_id,
        outcome=received.status.value,
        # A quarantine reason quotes the value it refused, which may be an
        # address or an e-mail: it is kept with the event, not logged.
        reason=None if received.status is EventStatus.QUARANTINED else received.reason,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return WebhookAck(status=received.status, event_id=received.event_id)


@router.get("/webhook-events")
async def list_webhook_events(
    session: DbSession,
    status: EventStatus | None = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> WebhookEventPage:
    """List received webhook events, newest first, without payloads (admin)."""
    events, next_cursor = await service.list_events(
        session, status=status, limit=limit, cursor=cursor
    )
    data = [WebhookEventRead.model_validate(event) for event in events]
    return WebhookEventPage(data=data, next_cursor=next_cursor)


@router.get(
    "/webhook-events/{event_id}",
    responses={404: {"model": ErrorBody, "description": "No such webhook event"}},
)
async def get_webhook_event(
    session: DbSession, event_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> WebhookEventDetail:
    """Get one webhook event with its body exactly as delivered (admin)."""
    event = await service.get_event(session, event_id)
    return WebhookEventDetail.model_validate(event)
