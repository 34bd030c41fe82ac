"""The Svix check on raw bytes: every way a delivery can fail to be authentic."""

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from app.webhooks.verification import (
    RejectionKind,
    SignatureRejected,
    VerifiedDelivery,
    WebhookVerifier,
)
from tests.signing import TEST_SECRET, signed_headers

NOW = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
BODY = '{"event_type": "cart-order.created", "city": "京都市", "name": "Zoë"}'.encode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-endpoint-secret-value").decode()


def verifier(*secrets: str, now: datetime = NOW) -> WebhookVerifier:
    return WebhookVerifier(list(secrets) or [TEST_SECRET], clock=lambda: now)


def rejection(headers: dict[str, str], body: bytes = BODY, **kwargs) -> RejectionKind:
    with pytest.raises(SignatureRejected) as caught:
        verifier(**kwargs).verify(body, headers)
    return caught.value.kind


def test_public_standard_webhooks_vector_verifies():
    at = datetime.fromtimestamp(1614265330, tz=UTC)
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    checker = WebhookVerifier(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], clock=lambda: at
    )

    delivery = checker.verify(b'{"test": 2432232314}', headers)

    assert delivery == VerifiedDelivery(
        message_id="msg_p5jXN8AQM9LWM0D4loKWxJek", signed_at=at
    )


def test_public_vector_with_one_byte_changed_is_rejected():
    at = datetime.fromtimestamp(1614265330, tz=UTC)
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    checker = WebhookVerifier(
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], clock=lambda: at
    )

    with pytest.raises(SignatureRejected) as caught:
        checker.verify(b'{"test":2432232314}', headers)

    assert caught.value.kind is RejectionKind.SIGNATURE_MISMATCH


def test_svix_signed_non_ascii_body_verifies_on_raw_bytes():
    headers = signed_headers(BODY, timestamp=NOW, message_id="msg_1")

    delivery = verifier().verify(BODY, headers)

    assert delivery.message_id == "msg_1"
    assert delivery.signed_at == NOW


def test_reserialised_body_does_not_verify():
    headers = signed_headers(BODY, timestamp=NOW)
    reserialised = BODY.replace(b": ", b":")

    assert rejection(headers, reserialised) is RejectionKind.SIGNATURE_MISMATCH


def test_webhook_header_spelling_verifies():
    headers = signed_headers(BODY, timestamp=NOW, prefix="webhook")

    assert verifier().verify(BODY, headers).signed_at == NOW


def test_svix_headers_win_when_both_spellings_are_present():
    good = signed_headers(BODY, timestamp=NOW, message_id="msg_svix")
    bad = signed_headers(
        b"other", timestamp=NOW, message_id="msg_hook", prefix="webhook"
    )

    delivery = verifier().verify(BODY, good | bad)

    assert delivery.message_id == "msg_svix"


def test_header_names_are_case_insensitive():
    headers = {k.upper(): v for k, v in signed_headers(BODY, timestamp=NOW).items()}

    assert verifier().verify(BODY, headers).signed_at == NOW


@pytest.mark.parametrize("missing", ["svix-id", "svix-timestamp", "svix-signature"])
def test_missing_header_is_rejected(missing):
    headers = signed_headers(BODY, timestamp=NOW)
    headers[missing] = ""

    assert rejection(headers) is RejectionKind.MISSING_HEADERS


def test_no_signature_headers_at_all_is_rejected():
    assert (
        rejection({"content-type": "application/json"}) is RejectionKind.MISSING_HEADERS
    )


MALFORMED = RejectionKind.MALFORMED_HEADERS


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("v1", MALFORMED),
        ("garbage", MALFORMED),
        ("v1,not*base64!", MALFORMED),
        ("v1,YWJj=", RejectionKind.SIGNATURE_MISMATCH),
        ("v1,a,b", MALFORMED),
        ("v2," + base64.b64encode(b"x" * 32).decode(), MALFORMED),
        ("v1,", RejectionKind.SIGNATURE_MISMATCH),
        (" ", RejectionKind.MISSING_HEADERS),
    ],
)
def test_malformed_signature_header_is_rejected_not_crashed(signature, expected):
    headers = signed_headers(BODY, timestamp=NOW) | {"svix-signature": signature}

    assert rejection(headers) is expected


def test_extra_spaces_and_bad_entries_beside_a_good_signature_still_verify():
    headers = signed_headers(BODY, timestamp=NOW)
    good = headers["svix-signature"]
    headers["svix-signature"] = f"v1,broken  v1a,x {good} v1,@@@"

    assert verifier().verify(BODY, headers).signed_at == NOW


@pytest.mark.parametrize(
    "timestamp", ["abc", "1614265330.5", "-5", "1e9", "", "99999999999999"]
)
def test_non_integer_timestamp_is_rejected(timestamp):
    headers = signed_headers(BODY, timestamp=NOW) | {"svix-timestamp": timestamp}
    expected = MALFORMED if timestamp else RejectionKind.MISSING_HEADERS

    assert rejection(headers) is expected


@pytest.mark.parametrize("message_id", ["has space", "x" * 256, "tab\there", "é"])
def test_unusable_message_id_is_rejected(message_id):
    headers = signed_headers(BODY, timestamp=NOW) | {"svix-id": message_id}

    assert rejection(headers) is RejectionKind.MALFORMED_HEADERS


@pytest.mark.parametrize(
    "offset", [timedelta(minutes=-5, seconds=-1), timedelta(minutes=5, seconds=1)]
)
def test_timestamp_outside_five_minutes_is_rejected(offset):
    headers = signed_headers(BODY, timestamp=NOW + offset)

    assert rejection(headers) is RejectionKind.TIMESTAMP_OUT_OF_RANGE


@pytest.mark.parametrize("offset", [timedelta(minutes=-5), timedelta(minutes=5)])
def test_timestamp_at_the_edge_of_the_window_is_accepted(offset):
    headers = signed_headers(BODY, timestamp=NOW + offset)

    assert verifier().verify(BODY, headers).signed_at == NOW + offset


def test_replay_with_the_timestamp_removed_is_rejected():
    headers = signed_headers(BODY, timestamp=NOW)
    del headers["svix-timestamp"]

    assert rejection(headers) is RejectionKind.MISSING_HEADERS


def test_replay_with_a_fresh_timestamp_but_old_signature_is_rejected():
    old = signed_headers(BODY, timestamp=NOW - timedelta(hours=1))
    old["svix-timestamp"] = str(int(NOW.timestamp()))

    assert rejection(old) is RejectionKind.SIGNATURE_MISMATCH


def test_wrong_secret_is_rejected():
    headers = signed_headers(BODY, timestamp=NOW, secret=OTHER_SECRET)

    assert rejection(headers) is RejectionKind.SIGNATURE_MISMATCH


def test_body_that_is_not_utf8_is_rejected():
    body = b'{"name": "\xff\xfe"}'
    content = b"msg_1." + str(int(NOW.timestamp())).encode() + b"." + body
    key = base64.b64decode(TEST_SECRET.removeprefix("whsec_"))
    mac = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    headers = {
        "svix-id": "msg_1",
        "svix-timestamp": str(int(NOW.timestamp())),
        "svix-signature": f"v1,{mac}",
    }

    assert rejection(headers, body) is RejectionKind.BODY_NOT_UTF8


def test_rotation_accepts_a_delivery_signed_with_either_secret():
    checker = verifier(TEST_SECRET, OTHER_SECRET)
    old = signed_headers(BODY, timestamp=NOW, secret=TEST_SECRET)
    new = signed_headers(BODY, timestamp=NOW, secret=OTHER_SECRET)

    assert checker.verify(BODY, old).signed_at == NOW
    assert checker.verify(BODY, new).signed_at == NOW


def test_rotation_header_with_several_signatures_needs_only_one_match():
    signed = signed_headers(BODY, timestamp=NOW, secret=OTHER_SECRET)
    stale = signed_headers(BODY, timestamp=NOW, secret=TEST_SECRET)
    signed["svix-signature"] = f"{stale['svix-signature']} {signed['svix-signature']}"

    assert verifier(OTHER_SECRET).verify(BODY, signed).signed_at == NOW


def test_verifier_needs_a_secret():
    with pytest.raises(ValueError, match="signing secret"):
        WebhookVerifier([])
