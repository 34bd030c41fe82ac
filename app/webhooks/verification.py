"""Svix signature verification over the raw request bytes.

The HMAC itself comes from the `standardwebhooks` package (Svix's own
verifier); this module adds what the service needs around it: both header
spellings, several secrets for rotation, an injectable clock, and one error
type whose `kind` separates a stale timestamp from a wrong signature, so clock
drift shows up in logs as itself.
"""

import base64
import binascii
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from standardwebhooks.webhooks import Webhook

from app.core.models import utcnow

HEADER_SETS = (
    ("svix-id", "svix-timestamp", "svix-signature"),
    ("webhook-id", "webhook-timestamp", "webhook-signature"),
)
_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,255}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


class RejectionKind(StrEnum):
    MISSING_HEADERS = "missing_headers"
    MALFORMED_HEADERS = "malformed_headers"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    BODY_NOT_UTF8 = "body_not_utf8"
    SIGNATURE_MISMATCH = "signature_mismatch"


_DETAILS = {
    RejectionKind.MISSING_HEADERS: "The svix-id, svix-timestamp and "
    "svix-signature headers are required.",
    RejectionKind.MALFORMED_HEADERS: "The signature headers are malformed.",
    RejectionKind.TIMESTAMP_OUT_OF_RANGE: "The signature timestamp is outside "
    "the allowed window.",
    RejectionKind.BODY_NOT_UTF8: "The body is not valid UTF-8.",
    RejectionKind.SIGNATURE_MISMATCH: "No signature matches the body.",
}


class SignatureRejected(Exception):
    """The delivery is not proven authentic; nothing of it may be stored."""

    def __init__(self, kind: RejectionKind) -> None:
        super().__init__(_DETAILS[kind])
        self.kind = kind
        self.detail = _DETAILS[kind]


@dataclass(frozen=True)
class VerifiedDelivery:
    message_id: str
    signed_at: datetime


class WebhookVerifier:
    def __init__(
        self,
        secrets: Sequence[str],
        *,
        tolerance: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not secrets:
            raise ValueError("at least one signing secret is required")
        self._signers = [Webhook(secret) for secret in secrets]
        self._tolerance = tolerance
        self._clock = clock

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedDelivery:
        """Check the delivery; raise `SignatureRejected` unless it is authentic."""
        message_id, timestamp, signature_header = _pick_headers(headers)
        if not _MESSAGE_ID.match(message_id) or not _TIMESTAMP.match(timestamp):
            raise SignatureRejected(RejectionKind.MALFORMED_HEADERS)
        signed_at = datetime.fromtimestamp(int(timestamp), tz=UTC)
        if abs(self._clock() - signed_at) > self._tolerance:
            raise SignatureRejected(RejectionKind.TIMESTAMP_OUT_OF_RANGE)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureRejected(RejectionKind.BODY_NOT_UTF8) from None

        offered = _offered_signatures(signature_header)
        if not offered:
            raise SignatureRejected(RejectionKind.MALFORMED_HEADERS)
        for signer in self._signers:
            expected = _signature_bytes(signer.sign(message_id, signed_at, text))
            if any(hmac.compare_digest(expected, each) for each in offered):
                return VerifiedDelivery(message_id=message_id, signed_at=signed_at)
        raise SignatureRejected(RejectionKind.SIGNATURE_MISMATCH)


def _pick_headers(headers: Mapping[str, str]) -> tuple[str, str, str]:
    lowered = {name.lower(): value for name, value in headers.items()}
    for id_name, timestamp_name, signature_name in HEADER_SETS:
        if id_name in lowered:
            values = (
                lowered.get(id_name, ""),
                lowered.get(timestamp_name, ""),
                lowered.get(signature_name, ""),
            )
            if not all(value.strip() for value in values):
                raise SignatureRejected(RejectionKind.MISSING_HEADERS)
            return values[0].strip(), values[1].strip(), values[2]
    raise SignatureRejected(RejectionKind.MISSING_HEADERS)


def _offered_signatures(header: str) -> list[bytes]:
    """The `v1` signatures in the header; malformed entries are skipped."""
    signatures = []
    for entry in header.split(" "):
        version, separator, value = entry.partition(",")
        if version != "v1" or not separator:
            continue
        try:
            signatures.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return signatures


def _signature_bytes(versioned: str) -> bytes:
    return base64.b64decode(versioned.partition(",")[2])
