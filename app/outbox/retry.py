"""When to try a failed message again, and when to give up."""

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.trackstar.errors import TrackstarError, TrackstarInProgress

# A 409 means our own earlier request with this key is still running at
# Trackstar; after this many, something is stuck and a person should look.
MAX_IN_PROGRESS_ATTEMPTS = 8


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: timedelta
    max_delay: timedelta
    max_age: timedelta
    random: Callable[[], float] = random.random

    def backoff(self, attempts: int) -> timedelta:
        """Exponential in the attempt count, capped, with jitter in [½, 1]."""
        exponent = min(max(attempts - 1, 0), 30)
        ceiling: timedelta = min(self.base_delay * (2**exponent), self.max_delay)
        return ceiling * (0.5 + self.random() / 2)


@dataclass(frozen=True)
class RetryDecision:
    give_up: bool
    next_attempt_at: datetime | None
    reason: str


def decide(
    error: TrackstarError,
    *,
    attempts: int,
    queued_at: datetime,
    now: datetime,
    policy: RetryPolicy,
) -> RetryDecision:
    if not error.retryable:
        return RetryDecision(True, None, "final error")
    if isinstance(error, TrackstarInProgress) and attempts >= MAX_IN_PROGRESS_ATTEMPTS:
        return RetryDecision(True, None, "still in progress at Trackstar")
    delay = policy.backoff(attempts)
    if error.retry_after is not None:
        # Trackstar said how long; a little jitter spreads the herd.
        delay = timedelta(seconds=error.retry_after) * (1 + policy.random() / 10)
    next_attempt_at = now + delay
    if next_attempt_at - queued_at > policy.max_age:
        return RetryDecision(True, None, f"gave up after {attempts} attempts")
    return RetryDecision(False, next_attempt_at, "retryable error")
