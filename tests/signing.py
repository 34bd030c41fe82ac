"""Sign deliveries as Svix does, with the `svix` package."""

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from svix.webhooks import Webhook

TEST_SECRET = "whsec_" + base64.b64encode(b"trackstar-fulfillment-tests!").decode()
SAMPLES = Path(__file__).resolve().parents[1] / "app" / "webhooks" / "samples"


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / f"{name}.json").read_bytes()


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(sample_bytes(name))
    return loaded


def signed_headers(
    body: bytes,
    *,
    secret: str = TEST_SECRET,
    message_id: str | None = None,
    timestamp: datetime | None = None,
    prefix: str = "svix",
) -> dict[str, str]:
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    timestamp = timestamp or datetime.now(UTC)
    signature = Webhook(secret).sign(message_id, timestamp, body.decode())
    return {
        "content-type": "application/json",
        f"{prefix}-id": message_id,
        f"{prefix}-timestamp": str(int(timestamp.timestamp())),
        f"{prefix}-signature": signature,
    }
