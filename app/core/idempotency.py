"""`Idempotency-Key` on our own write endpoints: the same key and body return
the first result; the same key with another body is refused."""

import hashlib
import json
from typing import Any

from app.core.errors import Conflict


class IdempotencyKeyReused(Conflict):
    pass


def fingerprint(payload: Any) -> str:
    """A stable hash of a request: key order and spacing do not matter."""
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_replay(stored_fingerprint: str, request_fingerprint: str) -> None:
    if stored_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with a different request."
        )
