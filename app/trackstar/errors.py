"""Failures of calls to Trackstar, sorted into retryable and final.

    TrackstarError                 any failed call; `retryable` decides the outbox
    ├── TrackstarRetryable         try again later, with the same body and key
    │   ├── TrackstarUnreachable   connection errors, timeouts, 502/503/504
    │   ├── TrackstarServerError   other 5xx (not 501)
    │   ├── TrackstarRateLimited   429; `retry_after` says how long to wait
    │   └── TrackstarInProgress    409: the same Idempotency-Key is still running
    └── TrackstarFinal             no retry can fix it: dead-letter at once
        └── TrackstarUnauthorized  401: the connection's token is wrong

`outcome_unknown` is set when the request may have reached Trackstar (a read
timeout, a dropped connection, a 5xx): the write may or may not have happened.
"""

import math
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from app.core.models import utcnow

# Kept with a failed message; Trackstar's error bodies are small.
MAX_ERROR_BODY_CHARS = 4000
# No rate limit lasts longer; a longer wait is a bogus header. Unbounded, it
# would pause the token for good and overflow the retry time (timedelta).
MAX_RETRY_AFTER_S = 24 * 3600.0


class TrackstarError(Exception):
    retryable: ClassVar[bool] = False
    kind: ClassVar[str] = "final"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        origin: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.origin = origin
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body
        self.outcome_unknown = outcome_unknown


class TrackstarRetryable(TrackstarError):
    retryable = True
    kind = "retryable"


class TrackstarUnreachable(TrackstarRetryable):
    kind = "unreachable"


class TrackstarServerError(TrackstarRetryable):
    kind = "server_error"


class TrackstarRateLimited(TrackstarRetryable):
    kind = "rate_limited"


class TrackstarInProgress(TrackstarRetryable):
    kind = "in_progress"


class TrackstarFinal(TrackstarError):
    pass


class TrackstarUnauthorized(TrackstarFinal):
    kind = "unauthorized"


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    # `inf` and `nan` are not a number of seconds.
    return number if math.isfinite(number) and number >= 0 else None


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """How long Trackstar asks us to wait, from any documented header spelling.

    `retry-after` (seconds or an HTTP date) and `x-rate-limit-retry-after`: the
    larger if both are present; failing both, the time until
    `x-ratelimit-reset` / `x-rate-limit-reset` (epoch seconds). At most a day.
    """
    waits = [
        _number(headers.get("retry-after")),
        _number(headers.get("x-rate-limit-retry-after")),
    ]
    if waits[0] is None and headers.get("retry-after"):
        try:
            when = parsedate_to_datetime(headers["retry-after"])
            waits[0] = max(0.0, (when - utcnow()).total_seconds())
        except (TypeError, ValueError):
            pass
    known = [wait for wait in waits if wait is not None]
    if known:
        return min(max(known), MAX_RETRY_AFTER_S)
    reset = _number(
        headers.get("x-ratelimit-reset") or headers.get("x-rate-limit-reset")
    )
    if reset is not None:
        return min(max(0.0, reset - utcnow().timestamp()), MAX_RETRY_AFTER_S)
    return None


def _parse_body(response: httpx.Response) -> tuple[str, str | None, str]:
    text = response.text[:MAX_ERROR_BODY_CHARS]
    try:
        payload: Any = response.json()
    except ValueError:
        return text or response.reason_phrase, None, text
    if not isinstance(payload, dict):
        return text, None, text
    message = payload.get("error")
    origin = payload.get("origin")
    return (
        str(message) if message else response.reason_phrase,
        str(origin) if isinstance(origin, str) else None,
        text,
    )


def error_from_response(response: httpx.Response) -> TrackstarError:
    message, origin, body = _parse_body(response)
    status = response.status_code
    details = {
        "status_code": status,
        "origin": origin,
        "request_id": response.headers.get("x-request-id"),
        "body": body,
    }
    if status == 429:
        return TrackstarRateLimited(
            message, retry_after=retry_after_seconds(response.headers), **details
        )
    if status == 409:
        return TrackstarInProgress(message, **details)
    if status == 401:
        return TrackstarUnauthorized(message, **details)
    if status in (502, 503, 504):
        return TrackstarUnreachable(
            message,
            retry_after=retry_after_seconds(response.headers),
            outcome_unknown=True,
            **details,
        )
    if status >= 500 and status != 501:
        return TrackstarServerError(message, outcome_unknown=True, **details)
    return TrackstarFinal(message, **details)


def error_from_exception(error: httpx.HTTPError) -> TrackstarError:
    """A transport failure. Only a failure to connect proves nothing was sent."""
    never_sent = isinstance(
        error, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
    )
    return TrackstarUnreachable(
        f"{type(error).__name__} talking to Trackstar",
        outcome_unknown=not never_sent,
    )
